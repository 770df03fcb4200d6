"""What the two adapters share: progress and the summary of an ``ImportSession``."""

from __future__ import annotations

from typing import Any


def progress_for(session: Any):
    """A ``(done, total)`` callback that advances the session's ``(n, description)`` one."""
    last = 0

    def progress(done: int, total: int) -> None:
        nonlocal last
        if done > last:
            session.advance(done - last)
            last = done

    return progress


def fill_summary(session: Any, summary: dict[str, Any], *, nodes: int) -> None:
    s = session.summary
    session.add_lineage(summary["lineage"])
    s.nodes += nodes
    added = summary.get("events_added", 0)
    s.events += added
    s.skipped += summary.get("events_skipped", 0)
    for kind, n in (summary.get("by_kind") or {}).items():
        s.by_kind[kind] = s.by_kind.get(kind, 0) + n
    if summary.get("models"):
        s.warnings.append("AI involvement by model (commits): "
                          + ", ".join(f"{k} {v}" for k, v in summary["models"].items()))
