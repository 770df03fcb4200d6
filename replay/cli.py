"""Replay's contribution to the `lineage` command (loaded through the lineage.commands entry point)."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Replay commands (replay, checkout, branch, compare) are added here as they land."""
