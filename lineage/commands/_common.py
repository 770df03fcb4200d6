"""Options and output helpers shared by the command modules."""

from __future__ import annotations

import click
from rich.console import Console

from lineage.store import Store

store_option = click.option(
    "--store", "store_dir", type=click.Path(file_okay=False), default=None,
    help="Store directory (default: $LINEAGE_STORE, else ./.lineage).",
)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def open_store(store_dir: str | None) -> Store:
    return Store.open(store_dir)
