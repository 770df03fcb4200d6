"""The `lineage` command.

Commands live in ``lineage/commands/`` (one module per area, each with ``register(cli)``).
Higher layers (``replay``, ``tui``) contribute theirs through the ``lineage.commands``
entry point group, so this core never imports upward.
"""

from __future__ import annotations

import importlib
import sys

import click

from lineage.errors import LineageError
from lineage.memory import keep_freed_memory
from schemas.errors import SchemaError

# The core's commands, by the module of lineage/commands/ that defines them. A module is
# imported when one of its commands is used: `lineage sql` or `lineage tui` then does not
# import what ingest needs (pydantic, the payload models: ~0.2 s of every start).
# tests/test_cli_core.py checks that this lists every command, and no other.
CORE_COMMANDS = {
    "attribute": "agents", "import-git": "agents", "import-workspace": "agents", "watch-workspace": "agents",
    "demo": "demo",
    "log": "events", "record": "events", "show": "events",
    "involvement": "genealogy", "signals": "genealogy", "tree": "genealogy",
    "import": "importers",
    "ingest": "ingest", "watch": "ingest",
    "sql": "sql",
    "init": "store", "schema": "store", "seal": "store", "verify": "store",
}


class LineageGroup(click.Group):
    """Loads commands on first use: the core's by module, the higher layers' through the
    ``lineage.commands`` entry points (importing the core never imports upward). Turns the
    errors a user can meet into one clear line and exit code 2."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()  # core modules, and entry points, already registered
        self._plugins_loaded = False

    def _load_core(self, module: str) -> None:
        if module not in self._loaded:
            self._loaded.add(module)
            importlib.import_module(f"lineage.commands.{module}").register(self)

    def _load_plugins(self, name: str | None = None) -> None:
        """The higher layers' commands: the entry point called ``name`` alone when there is
        one (`lineage tui` loads only the terminal UI's), else all of them."""
        from importlib.metadata import entry_points  # ~20 ms: only when a layer is asked for

        points = list(entry_points(group="lineage.commands"))
        named = [ep for ep in points if ep.name == name]
        for ep in named or points:
            if ep.name in self._loaded:
                continue
            self._loaded.add(ep.name)
            try:
                ep.load()(self)
            except ModuleNotFoundError as exc:  # a layer not installed: its commands are absent
                if exc.name and ep.value.startswith(exc.name.split(".")[0]):
                    continue
                raise
        self._plugins_loaded = self._plugins_loaded or not named

    def list_commands(self, ctx):
        for module in sorted(set(CORE_COMMANDS.values())):
            self._load_core(module)
        if not self._plugins_loaded:
            self._load_plugins()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        if name in CORE_COMMANDS:
            self._load_core(CORE_COMMANDS[name])
        command = super().get_command(ctx, name)
        if command is None and not self._plugins_loaded:
            self._load_plugins(name)
            command = super().get_command(ctx, name)
            if command is None and not self._plugins_loaded:
                self._load_plugins()
                command = super().get_command(ctx, name)
        return command

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (LineageError, SchemaError) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=LineageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lineage")
def cli() -> None:
    """lineage: the flight recorder for self-improving AI.

    Every proposal, diff, run, score, review and selection of a self-improvement loop is an
    immutable, hash-chained event. The store is --store DIR, else $LINEAGE_STORE, else ./.lineage.
    """


def main() -> None:
    keep_freed_memory()  # before any command loads pyarrow
    cli(prog_name="lineage")
