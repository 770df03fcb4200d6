"""Keeping the node index (migration m0004) up to date with the event log.

``catch_up`` folds every event after ``node_index_state.last_seq`` into the index tables,
in one transaction per chunk of the log, so a crash leaves the index at a consistent seq
and the next catch-up goes on from there. It is incremental: after the first run it only
reads the new tail of the log (Parquet row groups before it are skipped by their seq
statistics), which is what lets a live view keep up with a loop in milliseconds.

The counts follow the rules of the ``involvement`` projection (m0002), so the tree's
badges and the involvement tab agree (``tests/test_tui_service.py`` checks it on the demo):
a node's making is its events on its own branch, a selection counts for the node it chose,
``branch_created`` and ``replay`` events are not part of any node's making, and a
retracted event does not count (a retraction makes the index recount the nodes it touches).

Generation is the depth from a root: one more than the deepest parent, as in the
projections. Only parents created before a node are its edges; a parent that is missing
(loops such as OpenEvolve prune parents) is flagged ``missing_parent``, and a node whose
parents are all missing is generation 1 and shown as a root. ``parent`` is the first
known parent (where the node hangs in the tree); the others are in ``node_links``.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pyarrow as pa

from lineage.db import first_row
from lineage.segments import HEAD_SEQ_SQL

CHUNK = 2_000_000

_NODE_SCHEMA = pa.schema([
    ("lineage", pa.string()),
    ("node", pa.string()),
    ("branch", pa.string()),
    ("parent", pa.string()),
    ("parents", pa.list_(pa.string())),
    ("generation", pa.int32()),
    ("label", pa.string()),
    ("missing_parent", pa.bool_()),
    ("actor", pa.string()),
    ("created_seq", pa.int64()),
    ("created_at", pa.timestamp("us", tz="UTC")),
])

ACTIVITY_COLUMNS = (
    "events", "human", "ai", "system", "diffs", "human_diffs", "diff_lines", "human_lines",
    "human_hands_on", "last_seq",
)

# Retraction targets may be written without dashes; events carry dashed UUIDs.
_NORMAL_UUID = """CASE WHEN length(t) = 32
    THEN t[1:8] || '-' || t[9:12] || '-' || t[13:16] || '-' || t[17:20] || '-' || t[21:32] ELSE t END"""

# The autonomy level as the involvement projection defines it (m0002), on index columns.
LEVEL_SQL = """CASE WHEN {p}human = 0 AND {p}ai = 0 THEN NULL
    WHEN {p}human = 0 THEN 3
    WHEN {p}ai = 0 THEN 0
    WHEN coalesce({p}human_lines / nullif({p}diff_lines, 0), {p}human_diffs / nullif({p}diffs, 0), 0) >= 0.5 THEN 0
    WHEN {p}human_hands_on = 0 THEN 2
    ELSE 1 END"""


def _activity_sql(where: str) -> str:
    """Per (lineage, node, branch) counts over the events matching ``where``."""
    return f"""
        SELECT lineage, subject AS node, branch,
               count(*)::INTEGER AS events,
               count(*) FILTER (actor_kind = 'human')::INTEGER AS human,
               count(*) FILTER (actor_kind = 'ai')::INTEGER AS ai,
               count(*) FILTER (actor_kind = 'system')::INTEGER AS system,
               count(*) FILTER (kind = 'code_diff')::INTEGER AS diffs,
               count(*) FILTER (kind = 'code_diff' AND actor_kind = 'human')::INTEGER AS human_diffs,
               coalesce(sum(lines), 0)::BIGINT AS diff_lines,
               coalesce(sum(lines) FILTER (actor_kind = 'human'), 0)::BIGINT AS human_lines,
               count(*) FILTER (actor_kind = 'human'
                   AND kind NOT IN ('review', 'selection', 'annotation', 'node_created'))::INTEGER AS human_hands_on,
               max(seq) AS last_seq
        FROM (
            SELECT lineage, branch, kind, actor_kind, seq, event_id,
                   CASE WHEN kind = 'selection' THEN coalesce(payload->>'node', node) ELSE node END AS subject,
                   CASE WHEN kind = 'code_diff'
                        THEN coalesce(TRY_CAST(payload->>'lines_added' AS BIGINT), 0)
                           + coalesce(TRY_CAST(payload->>'lines_removed' AS BIGINT), 0) END AS lines
            FROM events
            WHERE kind NOT IN ('branch_created', 'replay', 'retraction') AND ({where})
        )
        WHERE subject IS NOT NULL
        GROUP BY lineage, subject, branch
    """


STANDING_RETRACTIONS = """(SELECT r.target FROM retracted_index r
    ANTI JOIN retracted_index x ON x.target = r.retraction)"""


def index_seq(con: duckdb.DuckDBPyConnection) -> int:
    row = first_row(con.execute("SELECT last_seq FROM node_index_state"))
    return row[0] if row else 0


def head_seq(con: duckdb.DuckDBPyConnection) -> int:
    row = first_row(con.execute(HEAD_SEQ_SQL))
    return row[0] if row else 0


def catch_up(
    con: duckdb.DuckDBPyConnection,
    *,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = CHUNK,
) -> int:
    """Fold all events after the index's seq into it; return the seq it is now at.

    ``con`` must be a writable connection (the store's writer). ``progress(done, head)``
    is called after each chunk.
    """
    last = index_seq(con)
    head = head_seq(con)
    while last < head:
        hi = min(head, last + chunk)
        con.execute("BEGIN")
        try:
            _fold(con, last, hi)
            con.execute("UPDATE node_index_state SET last_seq = ?", [hi])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        last = hi
        if progress:
            progress(last, head)
    return last


def _fold(con: duckdb.DuckDBPyConnection, lo: int, hi: int) -> None:
    _fold_nodes(con, lo, hi)
    _fold_activity(con, lo, hi)
    con.execute(
        """
        INSERT INTO score_index
        SELECT lineage, node, payload->>'metric', coalesce(payload->>'split', 'public'),
               CAST(payload->>'value' AS DOUBLE),
               coalesce(TRY_CAST(payload->>'higher_is_better' AS BOOLEAN), true), actor, event_id, seq
        FROM events
        WHERE seq > ? AND seq <= ? AND kind = 'score' AND node IS NOT NULL
          AND payload->>'metric' IS NOT NULL AND TRY_CAST(payload->>'value' AS DOUBLE) IS NOT NULL
        """,
        [lo, hi],
    )
    added = con.execute(
        f"""
        INSERT INTO retracted_index
        SELECT {_NORMAL_UUID}, event_id, seq
        FROM (SELECT lower(payload->>'event_id') AS t, event_id, seq FROM events
              WHERE seq > ? AND seq <= ? AND kind = 'retraction' AND payload->>'event_id' IS NOT NULL)
        RETURNING target
        """,
        [lo, hi],
    ).fetchall()
    if added:
        _recount(con, [r[0] for r in added], hi)


def _fold_nodes(con: duckdb.DuckDBPyConnection, lo: int, hi: int) -> None:
    new = con.sql(
        """
        SELECT seq, lineage, branch, node, actor, occurred_at, payload->>'label' AS label,
               coalesce(CAST(payload->'parents' AS VARCHAR[]), []::VARCHAR[]) AS parents
        FROM events
        WHERE seq > ? AND seq <= ? AND kind = 'node_created' AND node IS NOT NULL
        ORDER BY seq
        """,
        params=[lo, hi],
    ).to_arrow_table()
    if new.num_rows == 0:
        return
    lineages = new.column("lineage").to_pylist()
    nodes = new.column("node").to_pylist()
    parents_col = new.column("parents").to_pylist()
    seqs = new.column("seq").to_pylist()

    # What the index already knows about the nodes of this chunk and their parents.
    wanted = pa.table({
        "lineage": lineages + [lin for lin, ps in zip(lineages, parents_col, strict=True) for _ in ps],
        "node": nodes + [p for ps in parents_col for p in ps],
    })
    con.register("_wanted", wanted)
    try:
        known_rows = con.execute(
            "SELECT n.lineage, n.node, n.generation, n.created_seq IS NULL FROM node_index n "
            "SEMI JOIN (SELECT DISTINCT lineage, node FROM _wanted) w USING (lineage, node)"
        ).fetchall()
    finally:
        con.unregister("_wanted")
    generation: dict[tuple[str, str], int] = {(r[0], r[1]): r[2] for r in known_rows if not r[3]}
    placeholders = any(r[3] for r in known_rows)

    keep: list[int] = []
    gens: list[int] = []
    missing: list[bool] = []
    first_parent: list[str | None] = []
    links: list[tuple[str, str, str, int]] = []
    for i, (lin, node, parents) in enumerate(zip(lineages, nodes, parents_col, strict=True)):
        key = (lin, node)
        if key in generation:
            continue  # a node is created once; a repeated node_created changes nothing here
        # Only parents created before the node are edges (as in the projections): the
        # genealogy stays acyclic, and a parent named before it exists stays missing.
        known = list(dict.fromkeys(p for p in parents if (lin, p) in generation))
        gen = max(generation[(lin, p)] for p in known) + 1 if known else (1 if parents else 0)
        generation[key] = gen
        keep.append(i)
        gens.append(gen)
        first_parent.append(known[0] if known else None)
        missing.append(len(known) < len(set(parents)))
        links.extend((lin, p, node, seqs[i]) for p in known[1:])
    if not keep:
        return
    table = new.take(pa.array(keep, pa.int64()))
    out = pa.table({
        "lineage": table.column("lineage"),
        "node": table.column("node"),
        "branch": table.column("branch"),
        "parent": pa.array(first_parent, pa.string()),
        "parents": table.column("parents"),
        "generation": pa.array(gens, pa.int32()),
        "label": table.column("label"),
        "missing_parent": pa.array(missing, pa.bool_()),
        "actor": table.column("actor"),
        "created_seq": table.column("seq"),
        "created_at": table.column("occurred_at"),
    }).cast(_NODE_SCHEMA)
    con.register("_new_nodes", out)
    try:
        if placeholders:
            # Events arrived before this node_created: fill in the row that counts them.
            con.execute(
                """
                UPDATE node_index SET branch = n.branch, parent = n.parent, parents = n.parents,
                    generation = n.generation, label = n.label, missing_parent = n.missing_parent,
                    actor = n.actor, created_seq = n.created_seq, created_at = n.created_at
                FROM _new_nodes n
                WHERE node_index.created_seq IS NULL AND node_index.lineage = n.lineage AND node_index.node = n.node
                """
            )
        zeros = ", ".join("0" for _ in ACTIVITY_COLUMNS)
        con.execute(
            f"INSERT INTO node_index SELECT n.*, 0, {zeros}, NULL FROM _new_nodes n "
            "ANTI JOIN node_index i ON i.lineage = n.lineage AND i.node = n.node"
        )
        con.execute(
            """
            UPDATE node_index SET children = node_index.children + c.n
            FROM (SELECT lineage, parent AS node, count(*)::INTEGER AS n FROM _new_nodes
                  WHERE parent IS NOT NULL GROUP BY ALL) c
            WHERE node_index.lineage = c.lineage AND node_index.node = c.node
            """
        )
    finally:
        con.unregister("_new_nodes")
    if links:
        link_table = pa.table({
            "lineage": [x[0] for x in links], "parent": [x[1] for x in links],
            "node": [x[2] for x in links], "seq": pa.array([x[3] for x in links], pa.int64()),
        })
        con.register("_links", link_table)
        try:
            con.execute("INSERT INTO node_links SELECT * FROM _links")
        finally:
            con.unregister("_links")


def _fold_activity(con: duckdb.DuckDBPyConnection, lo: int, hi: int) -> None:
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _activity AS {_activity_sql('seq > $lo AND seq <= $hi')}",
        {"lo": lo, "hi": hi},
    )
    try:
        sets = ", ".join(
            f"{c} = greatest(node_index.{c}, d.{c})" if c == "last_seq" else f"{c} = node_index.{c} + d.{c}"
            for c in ACTIVITY_COLUMNS
        )
        con.execute(
            f"""
            UPDATE node_index SET {sets}
            FROM _activity d
            WHERE node_index.lineage = d.lineage AND node_index.node = d.node
              AND (node_index.branch = d.branch OR node_index.created_seq IS NULL)
            """
        )
        # Events about a node that has no node_created (yet): keep them counted and visible.
        cols = ", ".join(f"d.{c}" for c in ACTIVITY_COLUMNS)
        con.execute(
            f"""
            INSERT INTO node_index
            SELECT d.lineage, d.node, d.branch, NULL, NULL, 0, NULL, false, NULL, NULL, NULL, 0, {cols}, NULL
            FROM _activity d ANTI JOIN node_index i ON i.lineage = d.lineage AND i.node = d.node
            QUALIFY row_number() OVER (PARTITION BY d.lineage, d.node ORDER BY d.last_seq) = 1
            """
        )
        # The seq range of the events recorded on each node (whatever their kind).
        con.execute(
            """
            UPDATE node_index SET first_seq = coalesce(least(node_index.first_seq, r.lo), r.lo),
                                  last_seq = greatest(node_index.last_seq, r.hi)
            FROM (SELECT lineage, node, min(seq) AS lo, max(seq) AS hi FROM events
                  WHERE seq > $lo AND seq <= $hi AND node IS NOT NULL GROUP BY lineage, node) r
            WHERE node_index.lineage = r.lineage AND node_index.node = r.node
            """,
            {"lo": lo, "hi": hi},
        )
    finally:
        con.execute("DROP TABLE IF EXISTS _activity")


def _recount(con: duckdb.DuckDBPyConnection, targets: list[str], hi: int) -> None:
    """Recount, from their events up to ``hi``, every node an event retracted (or restored)
    belonged to."""
    con.register("_targets", pa.table({"event_id": pa.array(targets, pa.string())}))
    try:
        affected = con.execute(
            """
            SELECT DISTINCT lineage,
                   CASE WHEN kind = 'selection' THEN coalesce(payload->>'node', node) ELSE node END AS node
            FROM events WHERE event_id IN (SELECT event_id FROM _targets) OR
                              event_id IN (SELECT target FROM retracted_index WHERE retraction IN (SELECT event_id FROM _targets))
            """
        ).fetchall()
    finally:
        con.unregister("_targets")
    affected = [a for a in affected if a[1] is not None]
    if not affected:
        return
    keys = pa.table({"lineage": [a[0] for a in affected], "node": [a[1] for a in affected]})
    con.register("_affected", keys)
    try:
        where = (
            "(lineage, CASE WHEN kind = 'selection' THEN coalesce(payload->>'node', node) ELSE node END) "
            "IN (SELECT (lineage, node) FROM _affected) "
            f"AND event_id NOT IN {STANDING_RETRACTIONS} AND seq <= {int(hi)}"
        )
        con.execute(f"CREATE OR REPLACE TEMP TABLE _activity AS {_activity_sql(where)}")
        sets = ", ".join(f"{c} = coalesce(d.{c}, 0)" for c in ACTIVITY_COLUMNS if c != "last_seq")
        con.execute(
            f"""
            UPDATE node_index SET {sets}
            FROM (SELECT a.lineage, a.node, d.* EXCLUDE (lineage, node, branch)
                  FROM _affected a JOIN node_index i USING (lineage, node)
                  LEFT JOIN _activity d ON d.lineage = a.lineage AND d.node = a.node AND d.branch = i.branch) d
            WHERE node_index.lineage = d.lineage AND node_index.node = d.node
            """
        )
    finally:
        con.unregister("_affected")
        con.execute("DROP TABLE IF EXISTS _activity")
