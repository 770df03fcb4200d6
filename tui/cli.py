"""`lineage tui`: the terminal UI's contribution to the `lineage` command.

Which store it opens: ``--store DIR``, else ``$LINEAGE_STORE``, else ``./.lineage``. When
no store was named and ``./.lineage`` does not exist, it builds the bundled demo there
first (the same place ``lineage demo`` puts it, so ``lineage log`` and ``lineage sql``
see it too) and opens that: ``pip install -e . && lineage tui`` lands in a real lineage.
A store that was named but does not exist is an error, not a demo: a typo in a path must
not quietly show other data.
"""

from __future__ import annotations

import os
from pathlib import Path

import click


def register(cli: click.Group) -> None:
    cli.add_command(tui)


def _history_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "lineage" / "sql_history.jsonl"


@click.command()
@click.option("--store", "store_dir", type=click.Path(file_okay=False), default=None,
              help="Store directory (default: $LINEAGE_STORE, else ./.lineage; the demo is built there if absent).")
@click.option("--lineage", "lineage_name", default=None, help="Lineage to open first (default: the most recent).")
@click.option("--no-live", is_flag=True, help="Do not watch the store for new events.")
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between checks for new events.")
def tui(store_dir: str | None, lineage_name: str | None, no_live: bool, poll: float) -> None:
    """Browse genealogies, inspect any node, replay and branch; live.

    \b
    Keys: ? help · / find · o go to node · * best · g generations · s SQL
          r replay · c checkout · b branch here · C compare · q quit
    """
    from lineage.commands._common import console
    from lineage.errors import LineageError
    from lineage.store import STORE_ENV, Store, resolve_store_path

    named = store_dir or os.environ.get(STORE_ENV)
    path = resolve_store_path(store_dir)
    banner = None
    if not Store(path).exists():
        if named:
            raise LineageError(f"no lineage store at {path}; check the path, or run `lineage tui` without "
                               "--store to open the demo")
        from lineage.demo import build_demo

        console.print(f"no store at {path}: building the demo lineage there (a real loop, about 10 s)…")
        with console.status("running the demo loop…") as status:
            build_demo(path, progress=lambda msg: status.update(msg))
        banner = f"This is the demo lineage, built in {path}. Record your own loop there with Tracker('{path}', …)."
    from tui.launch import create_app

    app = create_app(path, lineage=lineage_name, poll_interval=None if no_live else max(0.2, poll),
                     sql_history=_history_file(), banner=banner)
    app.run()
