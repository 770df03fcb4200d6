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
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from lineage import involvement as involvement_mod
from lineage import signals as signals_mod
from lineage.errors import LineageError, ObjectMissing, StoreLocked
from lineage.node_index import LEVEL_SQL, STANDING_RETRACTIONS, catch_up
from lineage.objects import sha256_file
from lineage.query import run_query
from lineage.segments import HEAD_SEQ_SQL
from lineage.store import SharedReader, Store
from lineage.summary import summarize

LEVELS = involvement_mod.LEVELS
STAGES = involvement_mod.STAGES
SIGNALS = signals_mod.SIGNALS
SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}
# Files up to this size are re-hashed to check an artifact's integrity; bigger ones are
# only checked for presence and size, so opening a node never reads gigabytes.
HASH_LIMIT = 64 << 20
PAGE = 1000
# Above this many nodes, lineage-wide projections (signals for the tree's marks, the
# involvement and signals tabs, which DuckDB computes for the whole lineage) wait for an
# explicit request: on 1,000,000 nodes they take seconds and gigabytes.
LARGE_LINEAGE = 100_000
# Seconds the UI's read connection stays open after a read (see SharedReader).
READER_LINGER = 0.5


# -- the data the UI gets -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    split: str
    higher_is_better: bool

    @property
    def key(self) -> str:
        return f"{self.name}@{self.split}"


@dataclass(frozen=True, slots=True)
class LineageInfo:
    name: str
    nodes: int
    branches: tuple[str, ...]
    metric: Metric | None
    last_seq: int = 0


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node as the tree shows it."""

    lineage: str
    node: str
    branch: str | None
    label: str | None
    generation: int
    parent: str | None  # where it hangs in the tree (first known parent)
    parents: tuple[str, ...]  # as recorded, including missing ones
    missing_parent: bool
    children: int
    events: int
    human: int
    ai: int
    system: int
    level: int | None
    best: float | None
    created_seq: int | None
    links: int = 0  # children through a second (or later) parent
    created_us: int | None = None  # when the node was created, µs since the epoch (UTC)
    created_by: str | None = None
    first_seq: int | None = None  # the seqs of the events recorded on the node lie in first_seq..last_seq
    last_seq: int | None = None
    signals: tuple[str, ...] = ()
    severity: int = 0

    also_from: tuple[str, ...] = ()  # further known parents (merge, crossover), beyond ``parent``

    @property
    def other_parents(self) -> tuple[str, ...]:
        return self.also_from

    @property
    def created_at(self) -> datetime | None:
        # made when asked (the detail header), not for each of a page's 1,000 rows: a
        # zone-aware datetime costs ~6 µs to make, a third of building the row
        return None if self.created_us is None else _EPOCH + timedelta(microseconds=self.created_us)

    def share(self, kind: str) -> float | None:
        return getattr(self, kind) / self.events if self.events else None


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[NodeRow]
    total: int
    offset: int
    links: list[NodeRow] = field(default_factory=list)  # children through a second parent
    chain: bool = False  # rows are a run of only children: rows[i + 1] is the only child of rows[i]


@dataclass(frozen=True, slots=True)
class EventRow:
    seq: int
    event_id: str
    branch: str
    kind: str
    actor_kind: str
    actor: str
    actor_node: str | None
    occurred_at: datetime
    payload: dict
    summary: str
    caused_by: str | None
    retracted: bool = False


@dataclass(frozen=True, slots=True)
class NodeDetail:
    row: NodeRow
    created_at: datetime | None
    created_by: str | None
    known_parents: tuple[str, ...]
    missing_parents: tuple[str, ...]
    merged_children: tuple[str, ...]  # nodes that name this one as a further parent


@dataclass(frozen=True, slots=True)
class Opening:
    """The first screen, read in one burst: the lineages, the one to open (``lineage``),
    its first page of roots, the children of the first root that has any (``expanded``),
    and the header and events of the node the cursor starts on (the first root)."""
    lineages: list[LineageInfo]
    lineage: str | None = None
    roots: Page | None = None
    expanded: NodeRow | None = None
    children: Page | None = None
    detail: NodeDetail | None = None
    events: list[EventRow] | None = None


@dataclass(frozen=True, slots=True)
class DiffEntry:
    seq: int
    event_id: str
    actor: str
    paths: tuple[str, ...]
    lines_added: int
    lines_removed: int
    text: str | None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class ScoreRow:
    metric: str
    split: str
    value: float
    higher_is_better: bool
    actor: str
    seq: int
    event_id: str
    occurred_at: datetime
    latest: bool
    retracted: bool
    parent_value: float | None  # the first parent's latest value of the same metric and split


@dataclass(frozen=True, slots=True)
class ArtifactRow:
    artifact: str  # dataset | checkpoint | diff | snapshot
    name: str | None
    role: str | None
    uri: str | None
    content_hash: str | None
    bytes: int | None
    rows: int | None
    step: int | None
    actor: str
    seq: int
    integrity: str  # ok | modified | missing | unchecked | no-hash
    detail: str


@dataclass(frozen=True, slots=True)
class SignalRow:
    node: str
    signal: str
    severity: str
    metric: str | None
    detail: str
    evidence: tuple[EventRow, ...]
    seq: int


@dataclass(frozen=True, slots=True)
class GenerationStat:
    generation: int
    nodes: int
    best: float | None
    best_node: str | None
    human_share: float | None
    ai_share: float | None
    level3: int


@dataclass(frozen=True, slots=True)
class Changes:
    """What happened after a seq: the new head, new nodes, and nodes whose making changed."""

    seq: int
    new_nodes: list[NodeRow]
    touched: list[NodeRow]
    lineages_changed: bool


@dataclass(frozen=True, slots=True)
class Filter:
    """Search and filter criteria; empty fields do not filter."""

    text: str = ""  # node id or label (substring, case-insensitive)
    actor: str = ""  # an actor (ai:gpt-5) or an actor kind (human, ai, system)
    level: int | None = None
    signal: str = ""
    min_score: float | None = None

    @property
    def empty(self) -> bool:
        return not (self.text or self.actor or self.signal) and self.level is None and self.min_score is None


# -- a lock that lets reads run together and a write run alone ---------------------------------


class _ReadWriteLock:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


_NODE_COLUMNS = f"""n.lineage, n.node, n.branch, n.label, n.generation, n.parent,
    coalesce(n.parents, []::VARCHAR[]) AS parents, n.missing_parent, n.children, n.events, n.human, n.ai,
    n.system, ({LEVEL_SQL.format(p="n.")})::INTEGER AS level, n.created_seq, n.created_at, n.actor AS created_by,
    n.first_seq, n.last_seq,
    (SELECT count(*) FROM node_links l WHERE l.lineage = n.lineage AND l.parent = n.node)::INTEGER AS links,
    (SELECT list(l.parent ORDER BY l.seq) FROM node_links l WHERE l.lineage = n.lineage AND l.node = n.node) AS also_from"""


def _best_sql(rel: str) -> str:
    """The best non-retracted value of the lineage's metric for each node of ``rel``."""
    return f"""SELECT s.node, CASE WHEN bool_and(s.higher_is_better) THEN max(s.value) ELSE min(s.value) END AS best
        FROM score_index s SEMI JOIN {rel} r ON r.node = s.node
        WHERE s.lineage = $lineage AND s.metric = $metric AND s.split = $split
          AND s.event_id NOT IN {STANDING_RETRACTIONS}
        GROUP BY s.node"""


def _rows_sql(where: str, *, order: str = "n.created_seq", limit: str = "") -> str:
    """Node rows matching ``where``, with ``total``: how many match in all (before the limit)."""
    return f"""
        WITH page AS (
            SELECT {_NODE_COLUMNS}, count(*) OVER () AS total FROM node_index n
            WHERE n.lineage = $lineage AND ({where})
            ORDER BY {order} {limit}
        ),
        best AS ({_best_sql("page")})
        SELECT page.*, best.best FROM page LEFT JOIN best USING (node) ORDER BY {order.replace("n.", "page.")}
    """


class LineageService:
    """Everything the UI reads, and the one place it asks the store to change."""

    def __init__(self, store: Store | str | os.PathLike, *, index_lock_timeout: float = 5.0):
        self.store = store if isinstance(store, Store) else Store.open(store)
        self.index_lock_timeout = index_lock_timeout
        self._lock = _ReadWriteLock()
        self._local = threading.local()  # the connection of a ``session`` on this thread
        # Reads come in bursts (a key press, a poll): they share a connection that lingers a
        # little; it closes at once when another process waits for the file.
        self._reader = SharedReader(self.store, linger=READER_LINGER)
        self._metrics: dict[str, Metric | None] = {}
        self._signals: dict[str, tuple[int, dict[str, list[dict]]]] = {}
        self._index_seq = 0
        self._sizes: dict[str, int] = {}

    @property
    def path(self) -> Path:
        return self.store.root

    # -- plumbing ------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence | dict | None = None) -> pa.Table:
        con = getattr(self._local, "con", None)
        if con is not None:
            return run_query(self.store, sql, params, con=con)
        with self._lock.read(), self._reader.cursor() as con:
            return run_query(self.store, sql, params, con=con)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Run this thread's reads on one cursor until the block ends (the first screen's
        burst). Other processes cannot write while it is open: keep the block to a burst
        of reads, never around waiting for a person."""
        if getattr(self._local, "con", None) is not None:
            yield  # already in one
            return
        with self._lock.read(), self._reader.cursor() as con:
            self._local.con = con
            try:
                yield
            finally:
                self._local.con = None

    def _rows(self, sql: str, params: Sequence | dict | None = None) -> list[dict]:
        return self._query(sql, params).to_pylist()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Let the caller read the store directly (the replay layer does) alongside this
        service's reads, but never while a write of this process is under way."""
        with self._lock.read():
            yield

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold off every read of this service while the caller writes to the store
        (replay, branch): DuckDB cannot mix read-only and writable connections in one process."""
        with self._lock.write():
            self._reader.close()
            yield

    # -- freshness -------------------------------------------------------------------------

    def latest_seq(self) -> int:
        """The seq of the newest event in the store (0 for an empty store)."""
        return self._rows(HEAD_SEQ_SQL)[0]["seq"]

    def heads(self) -> tuple[int, int]:
        """(newest seq in the store, seq the node index is at), in one query."""
        try:
            row = self._rows(f"SELECT ({HEAD_SEQ_SQL}) AS head, "
                             "(SELECT last_seq FROM node_index_state) AS indexed")[0]
        except LineageError:
            return self.latest_seq(), 0
        return row["head"], row["indexed"] or 0

    def index_seq(self) -> int:
        try:
            return self._rows("SELECT last_seq FROM node_index_state")[0]["last_seq"]
        except LineageError:
            return 0  # a store made before the index existed: refresh_index adds it

    def refresh_index(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Fold new events into the node index; returns the seq it is at.

        Needs the store's write lock for as long as the fold takes (milliseconds for a
        live loop's new events). If a writer holds the store longer than
        ``index_lock_timeout``, the index stays where it was and StoreLocked is raised.
        """
        with self._lock.write(), self.store.writer(lock_timeout=self.index_lock_timeout) as w:  # closes our reader
            self._index_seq = catch_up(w.con, progress=progress)
        return self._index_seq

    # -- lineages, branches, metrics ------------------------------------------------------

    def lineages(self) -> list[LineageInfo]:
        rows = self._rows(
            "SELECT lineage, count(*) FILTER (WHERE created_seq IS NOT NULL) AS nodes, "
            "list(DISTINCT branch ORDER BY branch) FILTER (WHERE branch IS NOT NULL) AS branches, "
            "max(last_seq) AS last_seq FROM node_index GROUP BY lineage ORDER BY lineage"
        )
        self._sizes.update({r["lineage"]: r["nodes"] for r in rows})
        return [LineageInfo(r["lineage"], r["nodes"], tuple(_main_first(r["branches"] or [])),
                            self.primary_metric(r["lineage"]), r["last_seq"] or 0) for r in rows]

    def opening(self, prefer: str | None = None) -> Opening:
        """Everything the first screen shows, on one connection (see ``Opening``).

        The lineage opened is ``prefer`` when the store has it, else the one written to
        last. Reads what the tree and the detail pane would read one by one."""
        with self.session():
            lineages = self.lineages()
            name = first_lineage(lineages, prefer)
            if name is None:
                return Opening(lineages)
            roots = self.roots(name)
            if not roots.rows:
                return Opening(lineages, name, roots)
            first = roots.rows[0]
            expanded = next((r for r in roots.rows if r.children > 0 or r.links > 0), None)
            children = None
            if expanded is not None:
                children = self.children(name, expanded.node, links=expanded.links > 0)
            within = (first.first_seq, first.last_seq) if first.last_seq is not None else None
            return Opening(lineages, name, roots, expanded, children, self.node_detail(name, first.node, first),
                           self.node_events(name, first.node, within=within))

    def branches(self, lineage: str) -> list[str]:
        rows = self._rows(
            "SELECT DISTINCT branch FROM node_index WHERE lineage = ? AND branch IS NOT NULL "
            "UNION SELECT DISTINCT branch FROM events WHERE lineage = ? AND kind = 'branch_created'",
            [lineage, lineage],
        )
        return _main_first(sorted(r["branch"] for r in rows))

    def primary_metric(self, lineage: str) -> Metric | None:
        """The metric the tree shows: the one scored most often on a public split."""
        if lineage not in self._metrics:
            # Among the metrics scored on a public split, the one by which the latest
            # promoted node is best (a loop promotes by its own metric), then the most scored.
            rows = self._rows(
                f"""WITH m AS (
                        SELECT metric, split, bool_and(higher_is_better) AS hib, count(*) AS n FROM score_index
                        WHERE lineage = $lineage AND NOT list_contains(setting_list('heldout_splits'), split)
                          AND NOT list_contains(setting_list('train_splits'), split)
                        GROUP BY metric, split),
                    promoted AS (
                        SELECT coalesce(payload->>'node', node) AS node, payload->>'reason' AS reason FROM events
                        WHERE lineage = $lineage AND kind = 'selection' AND payload->>'purpose' IN ('best', 'promote')
                        ORDER BY seq DESC LIMIT 1),
                    best AS (
                        SELECT s.metric, s.split,
                               CASE WHEN m.hib THEN max(s.value) ELSE min(s.value) END AS top,
                               CASE WHEN m.hib THEN max(s.value) FILTER (WHERE s.node IN (SELECT node FROM promoted))
                                    ELSE min(s.value) FILTER (WHERE s.node IN (SELECT node FROM promoted)) END AS mine
                        FROM score_index s JOIN m USING (metric, split)
                        WHERE s.lineage = $lineage AND s.event_id NOT IN {STANDING_RETRACTIONS}
                        GROUP BY s.metric, s.split, m.hib)
                    SELECT m.metric, m.split, m.hib FROM m LEFT JOIN best b USING (metric, split)
                    ORDER BY coalesce(b.mine = b.top, false) DESC,
                             coalesce(contains(lower((SELECT reason FROM promoted)), lower(m.metric)), false) DESC,
                             m.split = 'public' DESC, m.n DESC, m.metric, m.split
                    LIMIT 1""",
                {"lineage": lineage},
            )
            self._metrics[lineage] = Metric(rows[0]["metric"], rows[0]["split"], rows[0]["hib"]) if rows else None
        return self._metrics[lineage]

    def metrics(self, lineage: str) -> list[Metric]:
        rows = self._rows(
            "SELECT metric, split, bool_and(higher_is_better) AS hib FROM score_index WHERE lineage = ? "
            "GROUP BY ALL ORDER BY metric, split", [lineage])
        return [Metric(r["metric"], r["split"], r["hib"]) for r in rows]

    # -- the tree ----------------------------------------------------------------------------

    def _params(self, lineage: str, metric: Metric | None, **extra: Any) -> dict:
        metric = metric or self.primary_metric(lineage)
        return {"lineage": lineage, "metric": metric.name if metric else "", "split": metric.split if metric else "",
                **extra}

    def _node_rows(self, table: pa.Table) -> list[NodeRow]:
        """NodeRows from ``_rows_sql`` results, built column-wise (a page of 1,000 rows is
        read on every expand: row dicts cost twice as much)."""
        if table.num_rows == 0:
            return []
        c = table.set_column(table.schema.get_field_index("created_at"), "created_at",
                             table.column("created_at").cast(pa.int64())).to_pydict()
        rows = [
            NodeRow(lineage, node, branch, label, generation, parent, tuple(parents), missing, children, events,
                    human, ai, system, level, best, created_seq, links, created_at, created_by, first_seq, last_seq,
                    also_from=tuple(also_from) if also_from else ())
            for (lineage, node, branch, label, generation, parent, parents, missing, children, events, human, ai,
                 system, level, best, created_seq, links, created_at, created_by, first_seq, last_seq, also_from)
            in zip(c["lineage"], c["node"], c["branch"], c["label"], c["generation"], c["parent"], c["parents"],
                   c["missing_parent"], c["children"], c["events"], c["human"], c["ai"], c["system"], c["level"],
                   c["best"], c["created_seq"], c["links"], c["created_at"], c["created_by"], c["first_seq"],
                   c["last_seq"], c["also_from"], strict=True)
        ]
        if self._signals.get(table.column("lineage")[0].as_py()):
            rows = [self._with_signals(r) for r in rows]
        return rows

    def _page(self, sql: str, params: dict) -> tuple[list[NodeRow], int]:
        """The rows of a ``_rows_sql`` query and how many match in all."""
        table = self._query(sql, params)
        return self._node_rows(table), (table.column("total")[0].as_py() if table.num_rows else 0)

    def _with_signals(self, row: NodeRow) -> NodeRow:
        cached = self._signals.get(row.lineage)
        if not cached:
            return row
        found = cached[1].get(row.node)
        if not found:
            return row
        names = tuple(dict.fromkeys(f["signal"] for f in found))
        return replace(row, signals=names, severity=max(SEVERITY_RANK.get(f["severity"], 1) for f in found))

    def roots(self, lineage: str, branch: str | None = None, *, metric: Metric | None = None,
              offset: int = 0, limit: int = PAGE) -> Page:
        """The top of the tree: nodes with no known parent. For a branch: the nodes where
        it leaves another branch (its fork points) and its own parentless nodes."""
        if branch is None:
            where = "n.parent IS NULL"
            params = self._params(lineage, metric)
        else:
            where = ("(n.branch = $branch AND n.parent IS NULL) OR n.node IN ("
                     "SELECT c.parent FROM node_index c LEFT JOIN node_index p ON p.lineage = c.lineage "
                     "AND p.node = c.parent WHERE c.lineage = $lineage AND c.branch = $branch "
                     "AND c.parent IS NOT NULL AND p.branch <> $branch) OR n.node IN ("
                     "SELECT node FROM events WHERE lineage = $lineage AND branch = $branch "
                     "AND kind = 'branch_created' AND node IS NOT NULL)")
            params = self._params(lineage, metric, branch=branch)
        rows, total = self._page(_rows_sql(where, limit=f"LIMIT {int(limit)} OFFSET {int(offset)}"), params)
        return Page(rows, total, offset)

    def children(self, lineage: str, node: str, *, branch: str | None = None, metric: Metric | None = None,
                 offset: int = 0, limit: int = PAGE, flatten: bool = True, links: bool = True) -> Page:
        """A node's children in creation order, ``limit`` at a time; with the first page,
        the nodes that have this one as a further parent (``links``; pass False when the
        node's row says it has none, to save a query).

        ``flatten``: when the node has a single child, the page is the whole run of only
        children below it (up to ``limit``), so a long line of descent reads as a list
        instead of a staircase (``Page.chain``)."""
        where = "n.parent = $node" + (" AND n.branch = $branch" if branch else "")
        params = self._params(lineage, metric, node=node, **({"branch": branch} if branch else {}))
        rows, total = self._page(_rows_sql(where, limit=f"LIMIT {int(limit)} OFFSET {int(offset)}"), params)
        linked: list[NodeRow] = []
        if offset == 0 and links:
            link_where = "n.node IN (SELECT node FROM node_links WHERE lineage = $lineage AND parent = $node)"
            if branch:
                link_where += " AND n.branch = $branch"
            linked = self._page(_rows_sql(link_where, limit=f"LIMIT {PAGE}"), params)[0]
        if flatten and offset == 0 and total == 1 and rows[0].children > 0:
            run = self._chain(lineage, node, branch, limit)
            if len(run) > 1:
                found = {r.node: r for r in self.nodes(lineage, run, metric=metric)}
                return Page([found[n] for n in run if n in found], 1, 0, linked, chain=True)
        return Page(rows, total, offset, linked)

    def _chain(self, lineage: str, node: str, branch: str | None, cap: int) -> list[str]:
        """The run of only children below ``node``: each the single child of the one before,
        ending at a node with no child, several children, or children through merges."""
        on_branch = " AND {t}.branch = $branch" if branch else ""
        rows = self._rows(
            f"""WITH RECURSIVE run(node, depth) AS (
                    SELECT $node::VARCHAR, 0
                    UNION ALL
                    SELECT c.node, r.depth + 1
                    FROM run r JOIN node_index c ON c.lineage = $lineage AND c.parent = r.node{on_branch.format(t="c")}
                    WHERE r.depth < $cap
                      AND (SELECT count(*) FROM node_index k WHERE k.lineage = $lineage
                           AND k.parent = r.node{on_branch.format(t="k")}) = 1
                      AND (r.depth = 0 OR NOT EXISTS (SELECT 1 FROM node_links l
                           WHERE l.lineage = $lineage AND l.parent = r.node))
                )
                SELECT node FROM run WHERE depth > 0 ORDER BY depth""",
            {"lineage": lineage, "node": node, "cap": int(cap), **({"branch": branch} if branch else {})},
        )
        return [r["node"] for r in rows]

    def nodes(self, lineage: str, ids: Sequence[str], *, metric: Metric | None = None) -> list[NodeRow]:
        if not ids:
            return []
        return self._page(_rows_sql("n.node IN (SELECT unnest($ids))"), self._params(lineage, metric, ids=list(ids)))[0]

    def node(self, lineage: str, node: str, *, metric: Metric | None = None) -> NodeRow | None:
        found = self.nodes(lineage, [node], metric=metric)
        return found[0] if found else None

    def path_to(self, lineage: str, node: str) -> list[str]:
        """The tree path from a root down to ``node`` (through first known parents)."""
        path = [node]
        seen = {node}
        current = node
        while True:
            rows = self._rows("SELECT parent FROM node_index WHERE lineage = ? AND node = ?", [lineage, current])
            if not rows or rows[0]["parent"] is None or rows[0]["parent"] in seen:
                break
            current = rows[0]["parent"]
            seen.add(current)
            path.append(current)
        return list(reversed(path))

    def best_node(self, lineage: str, branch: str | None = None, *, metric: Metric | None = None) -> NodeRow | None:
        """The node with the best value of the lineage's metric (ties: the earliest)."""
        metric = metric or self.primary_metric(lineage)
        if metric is None:
            return None
        order = "DESC" if metric.higher_is_better else "ASC"
        rows = self._rows(
            f"""SELECT s.node FROM score_index s JOIN node_index n USING (lineage, node)
                WHERE s.lineage = $lineage AND s.metric = $metric AND s.split = $split
                  AND ($branch IS NULL OR n.branch = $branch) AND s.event_id NOT IN {STANDING_RETRACTIONS}
                ORDER BY s.value {order}, s.seq LIMIT 1""",
            self._params(lineage, metric, branch=branch),
        )
        return self.node(lineage, rows[0]["node"], metric=metric) if rows else None

    def resolve(self, lineage: str, text: str) -> NodeRow | None:
        """A node by exact id, else by exact label, else by id or label prefix."""
        text = text.strip()
        if not text:
            return None
        rows = self._rows(
            """SELECT node FROM node_index WHERE lineage = $lineage AND created_seq IS NOT NULL
               AND (node = $t OR label = $t OR starts_with(node, $t) OR starts_with(lower(label), lower($t)))
               ORDER BY node = $t DESC, label = $t DESC, created_seq LIMIT 1""",
            {"lineage": lineage, "t": text},
        )
        return self.node(lineage, rows[0]["node"]) if rows else None

    def find(self, lineage: str, flt: Filter, *, branch: str | None = None, limit: int = 500,
             metric: Metric | None = None) -> tuple[list[NodeRow], int]:
        """Nodes matching every given criterion (creation order), and how many match in all."""
        where = ["n.created_seq IS NOT NULL"]
        params = self._params(lineage, metric)
        if branch:
            where.append("n.branch = $branch")
            params["branch"] = branch
        if flt.text:
            where.append("(contains(lower(n.node), lower($text)) OR contains(lower(coalesce(n.label, '')), lower($text)))")
            params["text"] = flt.text.strip()
        if flt.actor:
            actor = flt.actor.strip()
            if actor.rstrip(":") in ("human", "ai", "system"):
                where.append(f"n.{actor.rstrip(':')} > 0")
            else:
                where.append("n.node IN (SELECT node FROM events WHERE lineage = $lineage AND actor = $actor)")
                params["actor"] = actor
        if flt.level is not None:
            where.append(f"({LEVEL_SQL.format(p='n.')}) = $level")
            params["level"] = int(flt.level)
        if flt.min_score is not None:
            if not params["metric"]:
                return [], 0
            where.append(f"n.node IN (SELECT node FROM ({_best_sql('node_index')}) WHERE "
                         "CASE WHEN $hib THEN best >= $min ELSE best <= $min END)")
            params["min"] = float(flt.min_score)
            params["hib"] = (metric or self.primary_metric(lineage)).higher_is_better
        if flt.signal:
            flagged = self.signal_map(lineage)
            ids = [n for n, found in flagged.items() if any(f["signal"] == flt.signal for f in found)]
            where.append("n.node IN (SELECT unnest($ids))")
            params["ids"] = ids
        cond = " AND ".join(f"({w})" for w in where)
        return self._page(_rows_sql(cond, limit=f"LIMIT {int(limit)}"), params)

    # -- live --------------------------------------------------------------------------------

    def changes_since(self, lineage: str, seq: int, *, metric: Metric | None = None) -> Changes:
        """New nodes and nodes whose making changed after ``seq`` (read from the index, so
        call ``refresh_index`` first)."""
        params = self._params(lineage, metric, seq=seq)
        new = self._page(_rows_sql("n.created_seq > $seq"), params)[0]
        touched = self._page(_rows_sql("n.last_seq > $seq AND NOT (n.created_seq > $seq)"), params)[0]
        head = self.latest_seq()
        lineage_new = self._rows("SELECT count(*) AS n FROM node_index WHERE lineage <> ? AND created_seq > ?",
                                 [lineage, seq])[0]["n"]
        return Changes(head, new, touched, lineage_new > 0)

    # -- one node --------------------------------------------------------------------------------

    def node_detail(self, lineage: str, node: str, row: NodeRow | None = None) -> NodeDetail | None:
        """The header of a node: its row, which parents exist, which nodes merged it in.
        Given the row, costs a query only for a node with missing parents or merge children."""
        row = row or self.node(lineage, node)
        if row is None:
            return None
        parents = list(dict.fromkeys(row.parents))
        if row.missing_parent and parents:
            earlier = {r["node"] for r in self._rows(
                "SELECT node FROM node_index WHERE lineage = $lineage AND node IN (SELECT unnest($p)) "
                "AND created_seq < $seq", {"lineage": lineage, "p": parents, "seq": row.created_seq or 0})}
        else:
            earlier = set(parents)
        merged: tuple[str, ...] = ()
        if row.links:
            merged = tuple(r["node"] for r in self._rows(
                "SELECT node FROM node_links WHERE lineage = ? AND parent = ? ORDER BY seq", [lineage, node]))
        known = tuple(p for p in parents if p in earlier)
        missing = tuple(p for p in parents if p not in earlier)
        return NodeDetail(row, row.created_at, row.created_by, known, missing, merged)

    def node_events(self, lineage: str, node: str, *, within: tuple[int | None, int | None] | None = None,
                    limit: int = 5000) -> list[EventRow]:
        """The events recorded on a node, and selections that chose it, oldest first.
        ``within``: the node's (first_seq, last_seq) from its row; the scan then skips the
        rest of the log."""
        lo, hi = within if within else (None, None)
        rows = self._rows(
            f"""WITH e AS (
                    SELECT seq, event_id, branch, kind, actor_kind, actor, actor_node, occurred_at,
                           payload::VARCHAR AS payload, caused_by
                    FROM events WHERE lineage = $lineage AND node = $node
                      AND seq >= coalesce($lo, 0) AND seq <= coalesce($hi, 9223372036854775807)
                    UNION ALL
                    SELECT seq, event_id, branch, kind, actor_kind, actor, actor_node, occurred_at,
                           payload::VARCHAR AS payload, caused_by
                    FROM events WHERE lineage = $lineage AND kind = 'selection' AND node IS DISTINCT FROM $node
                      AND payload->>'node' = $node
                )
                SELECT e.*, e.event_id IN {STANDING_RETRACTIONS} AS retracted FROM e ORDER BY seq LIMIT {int(limit)}""",
            {"lineage": lineage, "node": node, "lo": lo, "hi": hi},
        )
        return [_event_row(r) for r in rows]

    def events_by_id(self, ids: Sequence[str]) -> list[EventRow]:
        if not ids:
            return []
        rows = self._rows(
            f"""SELECT seq, event_id, branch, kind, actor_kind, actor, actor_node, occurred_at, payload::VARCHAR AS payload,
                       caused_by, event_id IN {STANDING_RETRACTIONS} AS retracted
                FROM events WHERE event_id IN (SELECT unnest($ids)) ORDER BY seq""",
            {"ids": list(ids)},
        )
        return [_event_row(r) for r in rows]

    def node_diffs(self, lineage: str, node: str, *, within: tuple[int | None, int | None] | None = None
                   ) -> list[DiffEntry]:
        """The node's code diffs, with their text from the object store (checked against its hash)."""
        out = []
        for e in self.node_events(lineage, node, within=within):
            if e.kind != "code_diff" or e.retracted:
                continue
            p = e.payload
            digest = p.get("diff_object")
            text, problem = None, None
            if digest:
                try:
                    text = self.store.objects.verified(digest).decode("utf-8", errors="replace")
                except ObjectMissing as exc:
                    problem = str(exc)
            else:
                problem = "this diff was recorded without its text (no diff_object)"
            out.append(DiffEntry(e.seq, e.event_id, e.actor, tuple(p.get("paths") or ()), int(p.get("lines_added") or 0),
                                 int(p.get("lines_removed") or 0), text, problem))
        return out

    def node_scores(self, lineage: str, node: str) -> list[ScoreRow]:
        rows = self._rows(
            f"""WITH s AS (
                    SELECT node, metric, split, value, higher_is_better, actor, seq, event_id,
                           event_id IN {STANDING_RETRACTIONS} AS retracted
                    FROM score_index WHERE lineage = $lineage AND node IN ($node, (SELECT parent FROM node_index
                        WHERE lineage = $lineage AND node = $node))
                ),
                mine AS (SELECT * FROM s WHERE node = $node),
                parent AS (SELECT metric, split, arg_max(value, seq) AS value FROM s
                           WHERE node <> $node AND NOT retracted GROUP BY ALL)
                SELECT m.*, p.value AS parent_value,
                       m.seq = max(m.seq) FILTER (WHERE NOT m.retracted) OVER (PARTITION BY m.metric, m.split) AS latest,
                       e.occurred_at
                FROM mine m LEFT JOIN parent p USING (metric, split)
                JOIN events e ON e.event_id = m.event_id AND e.seq = m.seq
                ORDER BY m.metric, m.split, m.seq""",
            {"lineage": lineage, "node": node},
        )
        return [ScoreRow(r["metric"], r["split"], r["value"], r["higher_is_better"], r["actor"], r["seq"],
                         r["event_id"], r["occurred_at"], bool(r["latest"]), r["retracted"], r["parent_value"])
                for r in rows]

    def node_artifacts(self, lineage: str, node: str, *, within: tuple[int | None, int | None] | None = None
                       ) -> list[ArtifactRow]:
        """Datasets, checkpoints, diffs and snapshots of a node, each with its integrity:
        ``ok`` (the bytes still hash to the recorded hash), ``modified``, ``missing``,
        ``unchecked`` (a remote URI, or a file too large to re-hash here) or ``no-hash``."""
        out = []
        for e in self.node_events(lineage, node, within=within):
            if e.retracted:
                continue
            p = e.payload
            if e.kind == "dataset":
                out.append(self._artifact("dataset", p.get("name"), p.get("role"), p.get("uri"), p.get("content_hash"),
                                          p.get("bytes"), p.get("rows"), None, e))
            elif e.kind == "checkpoint":
                out.append(self._artifact("checkpoint", p.get("name"), None, p.get("uri"), p.get("content_hash"),
                                          p.get("bytes"), None, p.get("step"), e))
            elif e.kind == "code_diff":
                if p.get("diff_object"):
                    out.append(self._artifact("diff", ", ".join(p.get("paths") or [])[:80] or None, None, None,
                                              p["diff_object"], None, None, None, e))
                if p.get("snapshot_object"):
                    out.append(self._artifact("snapshot", None, None, None, p["snapshot_object"], None, None, None, e))
        return out

    def _artifact(self, artifact, name, role, uri, digest, size, rows, step, e: EventRow) -> ArtifactRow:
        integrity, detail = _integrity(self.store, uri, digest, size)
        return ArtifactRow(artifact, name, role, uri, digest, size, rows, step, e.actor, e.seq, integrity, detail)

    def node_involvement(self, lineage: str, node: str) -> dict | None:
        """The ``involvement`` row of a node (shares, stages, level, self-built, recursion
        depth), plus ``stage_counts``: for each stage, its events by actor kind."""
        with self._lock.read():
            rows = involvement_mod.nodes(self.store, lineage=lineage, node_id=node)
        if not rows:
            return None
        from schemas.payloads import STAGE  # pydantic models: not loaded for the first screen

        row = rows[0]
        counts: dict[str, dict[str, int]] = {s: {"human": 0, "ai": 0, "system": 0} for s in STAGES}
        for e in self.node_events(lineage, node):
            stage = STAGE.get(e.kind)
            if stage and not e.retracted and e.actor_kind in counts[stage]:
                counts[stage][e.actor_kind] += 1
        row["stage_counts"] = counts
        row["level_text"] = LEVELS.get(row.get("autonomy_level"), "level unknown: no human or AI event")
        return row

    def node_signals(self, lineage: str, node: str) -> list[SignalRow]:
        with self._lock.read():
            found = signals_mod.signals(self.store, lineage=lineage, node_id=node)
        evidence = {e.event_id: e for e in self.events_by_id([i for f in found for i in f["evidence"]])}
        return [SignalRow(f["node"], f["signal"], f["severity"], f["metric"], f["detail"],
                          tuple(evidence[i] for i in f["evidence"] if i in evidence), f["seq"]) for f in found]

    # -- the whole lineage -------------------------------------------------------------------------

    def signal_map(self, lineage: str, *, refresh: bool = False) -> dict[str, list[dict]]:
        """Every finding of a lineage by node (cached per seq: it reads the whole lineage)."""
        seq = self.latest_seq()
        cached = self._signals.get(lineage)
        if cached and (cached[0] == seq or not refresh):
            return cached[1]
        with self._lock.read():
            found = signals_mod.signals(self.store, lineage=lineage)
        by_node: dict[str, list[dict]] = {}
        for f in found:
            by_node.setdefault(f["node"], []).append(f)
        self._signals[lineage] = (seq, by_node)
        return by_node

    def signals_known(self, lineage: str) -> bool:
        return lineage in self._signals

    def is_large(self, lineage: str) -> bool:
        """Whether lineage-wide projections are too costly to compute without being asked."""
        info = self._sizes.get(lineage)
        if info is None:
            info = self._rows("SELECT count(*) AS n FROM node_index WHERE lineage = ?", [lineage])[0]["n"]
            self._sizes[lineage] = info
        return info > LARGE_LINEAGE

    def generation_stats(self, lineage: str, branch: str | None = None, *,
                         metric: Metric | None = None) -> list[GenerationStat]:
        """Per generation: nodes, the best value of the metric (and where), human and AI shares."""
        params = self._params(lineage, metric, branch=branch)
        hib = (metric or self.primary_metric(lineage) or Metric("", "", True)).higher_is_better
        rows = self._rows(
            f"""WITH n AS (SELECT * FROM node_index WHERE lineage = $lineage AND created_seq IS NOT NULL
                           AND ($branch IS NULL OR branch = $branch)),
                g AS (SELECT generation, count(*) AS nodes, sum(human)::DOUBLE AS human, sum(ai)::DOUBLE AS ai,
                             sum(events)::DOUBLE AS events,
                             count(*) FILTER (WHERE ({LEVEL_SQL.format(p="")}) = 3) AS level3
                      FROM n GROUP BY generation),
                b AS (SELECT n.generation, {"arg_max" if hib else "arg_min"}(s.node, s.value) AS best_node,
                             {"max" if hib else "min"}(s.value) AS best
                      FROM score_index s JOIN n USING (lineage, node)
                      WHERE s.metric = $metric AND s.split = $split AND s.event_id NOT IN {STANDING_RETRACTIONS}
                      GROUP BY n.generation)
                SELECT g.*, b.best, b.best_node FROM g LEFT JOIN b USING (generation) ORDER BY generation""",
            params,
        )
        return [GenerationStat(r["generation"], r["nodes"], r["best"], r["best_node"],
                               r["human"] / r["events"] if r["events"] else None,
                               r["ai"] / r["events"] if r["events"] else None, r["level3"]) for r in rows]

    def compare_branches(self, lineage: str, a: str, b: str, *, metric: Metric | None = None) -> dict:
        """Two branches side by side: nodes, best value (and node), human share, fork point."""
        out = {}
        for br in (a, b):
            stats = self.generation_stats(lineage, br, metric=metric)
            best = self.best_node(lineage, br, metric=metric)
            rows = self._rows(
                "SELECT count(*) AS nodes, sum(human)::DOUBLE AS human, sum(events)::DOUBLE AS events, max(generation) AS depth "
                "FROM node_index WHERE lineage = ? AND branch = ? AND created_seq IS NOT NULL", [lineage, br])[0]
            fork = self._rows(
                "SELECT node, payload->>'from_branch' AS from_branch FROM events WHERE lineage = ? AND branch = ? "
                "AND kind = 'branch_created' ORDER BY seq LIMIT 1", [lineage, br])
            out[br] = {
                "nodes": rows["nodes"], "depth": rows["depth"],
                "human_share": rows["human"] / rows["events"] if rows["events"] else None,
                "best": best.best if best else None, "best_node": best.node if best else None,
                "fork": fork[0]["node"] if fork else None, "from_branch": fork[0]["from_branch"] if fork else None,
                "generations": stats,
            }
        return out

    # -- SQL -----------------------------------------------------------------------------------------

    def sql(self, query: str, *, limit: int = 10_000) -> pa.Table:
        """A read-only query, as ``lineage sql`` runs it (QueryError / ReadOnlyViolation on refusal)."""
        return self._query_limited(query, limit)

    def _query_limited(self, query: str, limit: int) -> pa.Table:
        with self._lock.read():
            return run_query(self.store, query, limit=limit)


# -- helpers -------------------------------------------------------------------------------------


def first_lineage(lineages: list[LineageInfo], prefer: str | None = None) -> str | None:
    """The lineage to open: ``prefer`` when there is one by that name, else the one
    written to last."""
    if any(li.name == prefer for li in lineages):
        return prefer
    return max(lineages, key=lambda li: li.last_seq).name if lineages else None


def _main_first(branches: list[str]) -> list[str]:
    return sorted(branches, key=lambda b: (b != "main", b))


def _event_row(r: dict) -> EventRow:
    payload = orjson.loads(r["payload"]) if isinstance(r["payload"], str) else (r["payload"] or {})
    return EventRow(r["seq"], r["event_id"], r["branch"], r["kind"], r["actor_kind"], r["actor"], r["actor_node"],
                    r["occurred_at"], payload, summarize(r["kind"], payload), r["caused_by"], bool(r["retracted"]))


def _integrity(store: Store, uri: str | None, digest: str | None, size: int | None) -> tuple[str, str]:
    if digest and store.objects.has(digest):
        try:
            store.objects.verified(digest)
            return "ok", "object store: bytes match the recorded sha256"
        except ObjectMissing:
            return "modified", f"object {digest[:12]} no longer matches its hash; run `lineage verify`"
    local = _local_path(uri)
    if local is None:
        if digest:
            return ("unchecked", f"remote ({uri})") if uri else ("missing", f"object {digest[:12]} is not in the store")
        return "no-hash", "recorded without a content hash" + (f" ({uri})" if uri else "")
    if not local.exists():
        return "missing", f"{local} is gone"
    if not digest:
        return "no-hash", f"{local} exists; no content hash was recorded"
    actual = local.stat().st_size
    if size is not None and actual != size:
        return "modified", f"{local} is {actual} bytes, recorded {size}"
    if actual > HASH_LIMIT:
        return "unchecked", f"{local} present ({actual} bytes), too large to re-hash here"
    if sha256_file(local) != digest:
        return "modified", f"{local} no longer matches its recorded sha256"
    return "ok", f"{local}: bytes match the recorded sha256"


def _local_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    if uri.startswith("file://"):
        return Path(uri[7:])
    if "://" in uri:
        return None
    return Path(uri).expanduser()


__all__ = [
    "ArtifactRow", "Changes", "DiffEntry", "EventRow", "Filter", "GenerationStat", "LARGE_LINEAGE", "LEVELS", "LineageInfo",
    "LineageService", "Metric", "first_lineage", "NodeDetail", "NodeRow", "Opening", "Page", "SIGNALS", "STAGES", "ScoreRow", "SignalRow",
    "StoreLocked",
]
