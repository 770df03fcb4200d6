"""The terminal UI's contribution to the `lineage` command."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """`lineage tui` is added here once the terminal UI lands."""
