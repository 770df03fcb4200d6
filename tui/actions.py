"""The UI's actions on the store, through the replay layer: replay, checkout, branch, compare.

Each function runs in a worker thread. Reads go under the service's shared lock and the
one write each action makes (a ``replay`` or ``branch_created`` event) under its exclusive
lock: DuckDB cannot mix read-only and writable connections within one process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lineage.service import LineageService

if TYPE_CHECKING:  # imported when first used: keeps `lineage tui` quick to start
    from replay.branch import Comparison
    from replay.materialize import Checkout
    from replay.rerun import Plan, ReplayReport


def plan_replay(service: LineageService, lineage: str, node: str) -> Plan:
    from replay import rerun

    with service.reading():
        return rerun.plan(service.store, node, lineage=lineage)


def run_replay(service: LineageService, p: Plan, *, timeout: float, on_progress: Callable[[str], None]) -> ReplayReport:
    """Run the planned commands in a fresh sandbox (the user has consented), then record
    the outcome as a ``replay`` event."""
    from replay import rerun

    with service.reading():
        report = rerun.execute(p, timeout=timeout, on_progress=on_progress)
    on_progress("recording the outcome")
    with service.exclusive():
        report.recorded = rerun.record_replay(p, report)
    return report


def checkout(service: LineageService, lineage: str, node: str, dest: str) -> Checkout:
    from replay import materialize

    with service.reading():
        return materialize.checkout(service.store, node, Path(dest).expanduser(), lineage=lineage)


def create_branch(service: LineageService, lineage: str, node: str, name: str, actor: str):
    from replay import branch as branch_mod

    with service.exclusive():
        return branch_mod.create_branch(service.store, node, name, actor=actor, lineage=lineage)


def compare(service: LineageService, lineage: str, a: str, b: str) -> Comparison:
    from replay import branch as branch_mod

    with service.reading():
        return branch_mod.compare(service.store, a, b, lineage=lineage)
