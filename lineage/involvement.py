"""Human versus AI involvement in each node, generation and lineage.

The measures are SQL (the ``involvement``, ``involvement_by_generation`` and
``involvement_by_lineage`` views; definitions in docs/sql.md). This module reads them
and renders the compact badge the tree shows: ``H40 A50 S10 L2 ↺1``, the shares of
human, AI and system events in the node's making, its autonomy level, and, for a
self-built node, the length of the self-built level-3 run ending at it.
"""

from __future__ import annotations

from lineage.genealogy import cut, node, records
from lineage.store import Store

STAGES = ("propose", "implement", "experiment", "validate", "learn", "choose")
LEVELS = {
    0: "L0 human-built: humans implement",
    1: "L1 human → AI assistant: AI implements, humans propose or evaluate",
    2: "L2 human → AI researcher: AI proposes, implements, evaluates; humans only review or select",
    3: "L3 AI → AI: no human event in its making",
}
PERFORMER_LETTER = {"human": "H", "ai": "A", "system": "S", "mixed": "M", "none": "·"}


def percent(share: float | None) -> str:
    return "–" if share is None else f"{round(share * 100):d}"


def level_text(level: int | None) -> str:
    return "L?" if level is None else f"L{level}"


def badge(row: dict) -> str:
    """``H40 A50 S10 L2``, then ``↺n`` for a self-built node (n: its recursion depth)."""
    text = (f"H{percent(row.get('human_share'))} A{percent(row.get('ai_share'))} "
            f"S{percent(row.get('system_share'))} {level_text(row.get('autonomy_level'))}")
    if row.get("self_built"):
        depth = row.get("recursion_depth") or 0
        text += f" ↺{depth}" if depth else " ↺"
    return text


def stages_text(row: dict) -> str:
    """Who performed each stage, one letter each, in loop order (P I E V L C): ``HA·S·H``."""
    return "".join(PERFORMER_LETTER.get(row.get(s) or "none", "?") for s in STAGES)


def nodes(store: Store, *, lineage: str | None = None, node_id: str | None = None,
          max_seq: int | None = None) -> list[dict]:
    """The ``involvement`` rows (one per node), in genealogy order."""
    table = store.query_arrow(
        "SELECT i.* FROM involvement_at($cut) i JOIN nodes_at($cut) n USING (lineage, node) "
        "WHERE ($lineage IS NULL OR i.lineage = $lineage) AND ($node IS NULL OR i.node = $node) "
        "ORDER BY i.lineage, n.created_seq",
        {"cut": cut(max_seq), "lineage": lineage, "node": node_id},
    )
    return records(table)


def generations(store: Store, *, lineage: str | None = None, max_seq: int | None = None) -> list[dict]:
    table = store.query_arrow(
        "SELECT * FROM involvement_by_generation_at($cut) WHERE $lineage IS NULL OR lineage = $lineage "
        "ORDER BY lineage, generation",
        {"cut": cut(max_seq), "lineage": lineage},
    )
    return records(table)


def lineages(store: Store, *, lineage: str | None = None, max_seq: int | None = None) -> list[dict]:
    table = store.query_arrow(
        "SELECT * FROM involvement_by_lineage_at($cut) WHERE $lineage IS NULL OR lineage = $lineage ORDER BY lineage",
        {"cut": cut(max_seq), "lineage": lineage},
    )
    return records(table)


def report(store: Store, node_id: str | None = None, *, lineage: str | None = None,
           max_seq: int | None = None) -> dict[str, list[dict]]:
    """Per node, per generation and per lineage. With ``node_id``: that node, and the
    roll-ups of its lineage (an unknown node is an error naming it)."""
    if node_id is not None:
        lineage = node(store, node_id, lineage=lineage, max_seq=max_seq)["lineage"]
    return {
        "nodes": nodes(store, lineage=lineage, node_id=node_id, max_seq=max_seq),
        "generations": generations(store, lineage=lineage, max_seq=max_seq),
        "lineages": lineages(store, lineage=lineage, max_seq=max_seq),
    }


__all__ = ["LEVELS", "STAGES", "badge", "generations", "level_text", "lineages", "nodes", "percent",
           "report", "stages_text"]
