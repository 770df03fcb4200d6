"""The `lineage` command.

Commands live in ``lineage/commands/`` (one module per area, each with ``register(cli)``).
Higher layers (``replay``, ``tui``) contribute theirs through the ``lineage.commands``
entry point group, so this core never imports upward.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from importlib.metadata import entry_points

import click

from lineage.errors import LineageError
from schemas.errors import SchemaError


class LineageGroup(click.Group):
    """Loads the higher layers' commands on first use (importing the core never imports
    upward), and turns the errors a user can meet into one clear line and exit code 2."""

    _plugins_loaded = False

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group="lineage.commands"):
            try:
                ep.load()(self)
            except ModuleNotFoundError as exc:  # a layer not installed: its commands are absent
                if exc.name and ep.value.startswith(exc.name.split(".")[0]):
                    continue
                raise

    def list_commands(self, ctx):
        self._load_plugins()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
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


def _load_commands() -> None:
    import lineage.commands as pkg

    for mod in sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")):
        importlib.import_module(f"{pkg.__name__}.{mod}").register(cli)


_load_commands()


def main() -> None:
    cli(prog_name="lineage")
