"""The query service the terminal UI talks to: plain Python and Arrow data, never DuckDB.

Every read goes through ``lineage.query.run_query`` (one read-only connection per query,
so a loop writing to the store is never held up for longer than a query runs; a short
burst of reads, such as the first screen, shares one: ``session``) or the
projection modules (``genealogy``, ``involvement``, ``signals``). The UI calls these
methods from worker threads; none of them touches the UI.

Browsing a 1,000,000-node lineage must feel instant, so the tree, its badges, the
per-generation charts and search read the node index (migration m0004, kept up to date
by ``refresh_index``) instead of the JSON event log. The detail of one node reads its own
events directly, and involvement and signals come from the projections, so the numbers
the UI shows are the ones ``lineage sql`` shows.

Threads. DuckDB refuses a read-write connection in a process that has a read-only one
open on the same file (and the reverse), so reads share a lock that the index refresh and
any write the UI triggers (``exclusive()``) take alone.

Layout: the row dataclasses the UI gets are in ``rows``; the connection, locking and
index plumbing in ``base``; the reads in ``tree`` (genealogy and search), ``detail`` (one
node) and ``analytics`` (whole-lineage views). Import everything from ``lineage.service``.
"""

from __future__ import annotations

from lineage.errors import StoreLocked
from lineage.service.analytics import LARGE_LINEAGE, SIGNALS, LineageAnalytics
from lineage.service.base import READER_LINGER as READER_LINGER
from lineage.service.base import ServiceBase
from lineage.service.detail import HASH_LIMIT as HASH_LIMIT
from lineage.service.detail import LEVELS, STAGES, NodeDetailReads
from lineage.service.rows import (
    ArtifactRow,
    Changes,
    DiffEntry,
    EventRow,
    Filter,
    GenerationStat,
    LineageInfo,
    Metric,
    NodeDetail,
    NodeRow,
    Opening,
    Page,
    ScoreRow,
    SignalRow,
    first_lineage,
)
from lineage.service.tree import PAGE as PAGE
from lineage.service.tree import SEVERITY_RANK as SEVERITY_RANK
from lineage.service.tree import TreeReads


class LineageService(TreeReads, NodeDetailReads, LineageAnalytics, ServiceBase):
    """Everything the UI reads, and the one place it asks the store to change."""


__all__ = [
    "ArtifactRow", "Changes", "DiffEntry", "EventRow", "Filter", "GenerationStat", "LARGE_LINEAGE", "LEVELS", "LineageInfo",
    "LineageService", "Metric", "first_lineage", "NodeDetail", "NodeRow", "Opening", "Page", "SIGNALS", "STAGES", "ScoreRow", "SignalRow",
    "StoreLocked",
]
