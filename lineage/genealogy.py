"""The genealogy of a lineage: nodes, their parents, and the tree a person reads.

Everything here reads the SQL projections the store's DuckDB file defines (see
``lineage/migrations/m0002_projections.py`` and docs/sql.md), so the Python API, the
CLI and any DuckDB client agree by construction. ``max_seq`` reads the genealogy as it
stood after that event (``None``: now).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from lineage.errors import LineageError
from lineage.store import Store

NOW = 2**63 - 1


def cut(max_seq: int | None) -> int:
    """The cut-off seq the ``*_at`` macros take."""
    return NOW if max_seq is None else int(max_seq)


def plain(value: Any) -> Any:
    """A value as JSON can carry it (timestamps as ISO 8601 text)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def records(table: pa.Table, *, maps: Iterable[str] = ()) -> list[dict]:
    """Rows of an Arrow table as dicts; the named MAP columns as dicts."""
    rows = table.to_pylist()
    for name in maps:
        for row in rows:
            if name in row and isinstance(row[name], list):
                row[name] = dict(row[name])
    return rows


# -- queries ------------------------------------------------------------------------------


def nodes(store: Store, *, lineage: str | None = None, branch: str | None = None,
          max_seq: int | None = None) -> list[dict]:
    """One dict per node (the columns of the ``nodes`` view), in creation order."""
    table = store.query_arrow(
        "SELECT * FROM nodes_at($cut) WHERE ($lineage IS NULL OR lineage = $lineage) "
        "AND ($branch IS NULL OR branch = $branch) ORDER BY lineage, created_seq",
        {"cut": cut(max_seq), "lineage": lineage, "branch": branch},
    )
    return records(table, maps=("scores", "best_scores"))


def node(store: Store, node_id: str, *, lineage: str | None = None, max_seq: int | None = None) -> dict:
    """The ``nodes`` row of one node; an error naming the node when it is unknown or ambiguous."""
    table = store.query_arrow(
        "SELECT * FROM nodes_at($cut) WHERE node = $node AND ($lineage IS NULL OR lineage = $lineage)",
        {"cut": cut(max_seq), "node": node_id, "lineage": lineage},
    )
    found = records(table, maps=("scores", "best_scores"))
    if not found:
        where = f" in lineage {lineage!r}" if lineage else ""
        raise LineageError(f"no node {node_id!r}{where} in the store at {store.root}; "
                           "`lineage tree` lists the nodes")
    if len(found) > 1:
        names = ", ".join(sorted(n["lineage"] for n in found))
        raise LineageError(f"node {node_id!r} exists in several lineages ({names}); name one with --lineage")
    return found[0]


def edges(store: Store, *, lineage: str | None = None, max_seq: int | None = None) -> list[dict]:
    table = store.query_arrow(
        "SELECT * FROM edges_at($cut) WHERE $lineage IS NULL OR lineage = $lineage ORDER BY lineage, seq, position",
        {"cut": cut(max_seq), "lineage": lineage},
    )
    return table.to_pylist()


def ancestors(store: Store, node_id: str, *, lineage: str | None = None, max_seq: int | None = None) -> list[dict]:
    """Every ancestor of a node (all parents, transitively) with its shortest distance."""
    table = store.query_arrow(
        "SELECT * FROM ancestors($node, lineage_name := $lineage, max_seq := $cut) ORDER BY distance, node",
        {"node": node_id, "lineage": lineage, "cut": cut(max_seq)},
    )
    return table.to_pylist()


def descendants(store: Store, node_id: str, *, lineage: str | None = None, max_seq: int | None = None) -> list[dict]:
    table = store.query_arrow(
        "SELECT * FROM descendants($node, lineage_name := $lineage, max_seq := $cut) ORDER BY distance, node",
        {"node": node_id, "lineage": lineage, "cut": cut(max_seq)},
    )
    return table.to_pylist()


def path(store: Store, a: str, b: str, *, lineage: str | None = None, max_seq: int | None = None) -> list[dict]:
    """The shortest way from ``a`` to ``b``: up to their nearest common ancestor, then down."""
    table = store.query_arrow(
        "SELECT * FROM lineage_path($a, $b, lineage_name := $lineage, max_seq := $cut) ORDER BY step",
        {"a": a, "b": b, "lineage": lineage, "cut": cut(max_seq)},
    )
    return table.to_pylist()


def best_path(store: Store, lineage: str, metric: str, *, split: str | None = None,
              max_seq: int | None = None) -> list[dict]:
    """From a root to the node with the best latest ``metric``, through best-scoring parents."""
    table = store.query_arrow(
        "SELECT * FROM best_path($lineage, $metric, split_name := $split, max_seq := $cut) ORDER BY step",
        {"lineage": lineage, "metric": metric, "split": split, "cut": cut(max_seq)},
    )
    return table.to_pylist()


# -- the tree a person reads ------------------------------------------------------------

_SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}


@dataclass
class TreeLine:
    """One node of a rendered genealogy, at its place under its first parent."""

    depth: int
    last: list[bool]  # for each level down to this one: is this the last child there
    row: dict
    also_from: list[str] = field(default_factory=list)  # further parents (crossover, merges)
    from_outside: list[str] = field(default_factory=list)  # parents not shown (another branch)


_TREE_SQL = """
SELECT n.lineage, n.branch, n.node, n.label, n.generation, n.parents, n.missing_parents,
       n.status, n.promoted, n.is_best, n.best_for, n.scores, n.created_seq,
       i.human_share, i.ai_share, i.system_share, i.autonomy_level, i.self_built, i.recursion_depth,
       coalesce(s.signals, []::VARCHAR[]) AS signals, coalesce(s.severity, 0) AS severity
FROM nodes_at($cut) n
LEFT JOIN involvement_at($cut) i USING (lineage, node)
LEFT JOIN (
    SELECT lineage, node, list(DISTINCT signal ORDER BY signal) AS signals,
           max(CASE severity WHEN 'critical' THEN 3 WHEN 'warning' THEN 2 ELSE 1 END) AS severity
    FROM signals_at($cut) GROUP BY lineage, node
) s USING (lineage, node)
WHERE ($lineage IS NULL OR n.lineage = $lineage) AND ($branch IS NULL OR n.branch = $branch)
ORDER BY n.lineage, n.created_seq
"""


def tree(store: Store, *, lineage: str | None = None, branch: str | None = None,
         max_seq: int | None = None) -> dict[str, list[TreeLine]]:
    """The genealogy of each lineage laid out as a tree, depth first in creation order.

    A node with several parents appears once, under its first shown parent, and names
    the others (``also_from``). With ``branch``, only that branch's nodes are shown; a node
    whose parents lie on another branch starts a tree of its own (``from_outside``).
    """
    table = store.query_arrow(_TREE_SQL, {"cut": cut(max_seq), "lineage": lineage, "branch": branch})
    by_lineage: dict[str, list[dict]] = {}
    for row in records(table, maps=("scores",)):
        by_lineage.setdefault(row["lineage"], []).append(row)
    return {name: _layout(rows) for name, rows in by_lineage.items()}


def _layout(rows: list[dict]) -> list[TreeLine]:
    shown = {r["node"]: r for r in rows}
    children: dict[str | None, list[dict]] = {}
    extra: dict[str, tuple[list[str], list[str]]] = {}
    for r in rows:
        missing = set(r["missing_parents"])
        known = [p for p in dict.fromkeys(r["parents"]) if p not in missing]
        inside = [p for p in known if p in shown]
        primary = inside[0] if inside else None
        extra[r["node"]] = (inside[1:], [p for p in known if p not in shown])
        children.setdefault(primary, []).append(r)
    lines: list[TreeLine] = []
    # Depth first without recursion: genealogies can be thousands of generations deep.
    stack: list[tuple[dict, int, list[bool]]] = []
    roots = children.get(None, [])
    for i, r in reversed(list(enumerate(roots))):
        stack.append((r, 0, [i == len(roots) - 1]))
    while stack:
        r, depth, last = stack.pop()
        also, outside = extra[r["node"]]
        lines.append(TreeLine(depth, last, r, also, outside))
        kids = children.get(r["node"], [])
        for i, k in reversed(list(enumerate(kids))):
            stack.append((k, depth + 1, [*last, i == len(kids) - 1]))
    return lines


def guides(line: TreeLine) -> str:
    """The box-drawing prefix of a tree line."""
    if line.depth == 0:
        return ""
    parts = ["    " if last else "│   " for last in line.last[1:-1]]
    parts.append("└── " if line.last[-1] else "├── ")
    return "".join(parts)


def score_text(scores: dict[str, float], limit: int = 3) -> str:
    """``acc=0.91 loss=0.2 acc@heldout=0.88``: public splits by bare metric name."""
    items = []
    for key in sorted(scores, key=lambda k: (not k.endswith("@public"), k)):
        name = key[: -len("@public")] if key.endswith("@public") else key
        items.append(f"{name}={scores[key]:.4g}")
    if len(items) > limit:
        items = [*items[:limit], "…"]
    return " ".join(items)


def severity_name(rank: int) -> str | None:
    return {v: k for k, v in _SEVERITY_RANK.items()}.get(rank)


__all__ = [
    "NOW", "TreeLine", "ancestors", "best_path", "cut", "descendants", "edges", "guides", "node",
    "nodes", "path", "plain", "records", "score_text", "severity_name", "tree",
]
