"""Branches: fork at any node, list branches, compare two of them since their fork point.

A branch is the ``branch`` column of the events: ``branch_created`` (payload ``name``,
``from_node``, ``from_branch``; envelope ``branch`` = the new name, ``node`` = the fork
node) opens it, and every event recorded later with that branch (SDK ``Tracker(branch=)``
or ``branch_from``, ``lineage record --branch``, ingest) extends it. A branch that was
never created explicitly (``main``, or one an importer wrote) is a root branch.

What belongs to a side of a comparison: the events of the branches on that side of the
fork, i.e. the branch itself and, walking ``from_branch`` links up, every branch below
the branch both sides share; if one side *is* the shared branch, its events after the
other side's fork. Nothing of a branch ever counts for its parent, so a branch's events
never show up in the parent's numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from lineage.query import run_query
from lineage.store import Store, Stored
from replay.errors import ReplayError
from replay.materialize import _norm_id, resolve_lineage, standing_retractions
from schemas import DEFAULT_BRANCH, Draft, prepare

DECISIONS = ("proposal", "review", "selection")


# -- creating -----------------------------------------------------------------------------


def create_branch(store: Store, node: str, name: str, *, actor: str, lineage: str | None = None) -> Stored:
    """Record ``branch_created`` at ``node``: the fork. Later events with ``branch=name`` extend it."""
    lin = resolve_lineage(store, node, lineage)
    used = run_query(store, "SELECT count(*) AS n FROM events WHERE lineage = ? AND branch = ?", [lin, name]).column("n")[0].as_py()
    if used:
        raise ReplayError(f"branch {name!r} already exists in lineage {lin!r} ({used} events); pick another name")
    row = run_query(store, "SELECT branch FROM events WHERE lineage = ? AND node = ? AND kind = 'node_created' ORDER BY seq LIMIT 1",
                    [lin, node]).to_pylist()
    from_branch = row[0]["branch"] if row else DEFAULT_BRANCH
    draft = Draft(lineage=lin, branch=name, kind="branch_created", actor=actor, node=node,
                  payload={"name": name, "from_node": node, "from_branch": from_branch})
    with store.writer() as w:
        return w.append(prepare(draft))


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fork:
    branch: str
    from_branch: str | None
    from_node: str | None
    seq: int
    actor: str


def _forks(store: Store, lineage: str, max_seq: int | None = None) -> dict[str, Fork]:
    sql = ("SELECT seq, branch, node, actor, payload->>'from_branch' AS from_branch, payload->>'from_node' AS from_node "
           "FROM events WHERE lineage = ? AND kind = 'branch_created'")
    params: list[Any] = [lineage]
    if max_seq is not None:
        sql += " AND seq <= ?"
        params.append(max_seq)
    out: dict[str, Fork] = {}
    for r in run_query(store, sql + " ORDER BY seq", params).to_pylist():
        out.setdefault(r["branch"], Fork(r["branch"], r["from_branch"], r["from_node"] or r["node"], r["seq"], r["actor"]))
    return out


def _chain(forks: dict[str, Fork], branch: str) -> list[str]:
    out = [branch]
    while branch in forks and forks[branch].from_branch and forks[branch].from_branch not in out:
        branch = forks[branch].from_branch
        out.append(branch)
    return out


@dataclass
class Best:
    metric: str
    split: str
    value: float
    node: str | None
    higher_is_better: bool

    def __str__(self) -> str:
        return f"{self.metric}={self.value:.6g} ({self.split}) @{self.node}"


def _events(store: Store, lineage: str, branches: Iterable[str], *, after_seq: int = 0,
            max_seq: int | None = None) -> list[dict[str, Any]]:
    sql = ("SELECT seq, event_id, branch, node, kind, actor_kind, actor, actor_node, CAST(payload AS VARCHAR) AS payload "
           "FROM events WHERE lineage = ? AND branch IN (SELECT unnest(?::VARCHAR[])) AND seq > ?")
    params: list[Any] = [lineage, list(branches), after_seq]
    if max_seq is not None:
        sql += " AND seq <= ?"
        params.append(max_seq)
    rows = run_query(store, sql + " ORDER BY seq", params).to_pylist()
    # A retraction may sit on another branch than the event it retracts: honour all of the lineage's.
    retracted = _retracted(store, lineage, max_seq)
    out = []
    for r in rows:
        if _norm_id(r["event_id"]) in retracted or r["kind"] == "retraction":
            continue
        r["payload"] = orjson.loads(r["payload"])
        out.append(r)
    return out


def _retracted(store: Store, lineage: str, max_seq: int | None) -> set[str]:
    sql = "SELECT event_id, payload->>'event_id' AS target FROM events WHERE lineage = ? AND kind = 'retraction'"
    params: list[Any] = [lineage]
    if max_seq is not None:
        sql += " AND seq <= ?"
        params.append(max_seq)
    rows = run_query(store, sql, params).to_pylist()
    return standing_retractions((r["event_id"], r["target"] or "") for r in rows)


def best_scores(events: Iterable[dict[str, Any]]) -> list[Best]:
    """Best value per (metric, split), honouring higher_is_better."""
    best: dict[tuple[str, str], Best] = {}
    for e in events:
        if e["kind"] != "score":
            continue
        p = e["payload"]
        key = (p["metric"], p.get("split", "public"))
        hib = bool(p.get("higher_is_better", True))
        cur = best.get(key)
        v = float(p["value"])
        if cur is None or (v > cur.value if hib else v < cur.value):
            best[key] = Best(key[0], key[1], v, e["node"], hib)
    # public splits first: that is the score a loop optimizes
    return [best[k] for k in sorted(best, key=lambda k: (k[1] != "public", k))]


def _lines(p: dict[str, Any]) -> int:
    return int(p.get("lines_added") or 0) + int(p.get("lines_removed") or 0)


@dataclass
class Involvement:
    """Who did the work on one side: by event count, by diff lines, by decisions, and
    (from the involvement projection) the nodes' autonomy levels."""

    events: Counter = field(default_factory=Counter)
    diff_lines: Counter = field(default_factory=Counter)
    decisions: Counter = field(default_factory=Counter)
    levels: Counter = field(default_factory=Counter)  # autonomy level (0-3, None) -> nodes
    self_built: int = 0
    recursion_depth: int = 0

    @staticmethod
    def of_events(events: Iterable[dict[str, Any]]) -> Involvement:
        inv = Involvement()
        for e in events:
            k = e["actor_kind"]
            inv.events[k] += 1
            if e["kind"] == "code_diff":
                inv.diff_lines[k] += _lines(e["payload"])
            if e["kind"] in DECISIONS:
                inv.decisions[k] += 1
        return inv

    @staticmethod
    def of_projection(rows: Iterable[dict[str, Any]]) -> Involvement:
        inv = Involvement()
        for r in rows:
            for k in ("human", "ai", "system"):
                inv.events[k] += r[f"{k}_events"] or 0
                inv.diff_lines[k] += r[f"{k}_lines"] or 0
                inv.decisions[k] += r[f"{k}_decisions"] or 0
            inv.levels[r["autonomy_level"]] += 1
            inv.self_built += bool(r["self_built"])
            inv.recursion_depth = max(inv.recursion_depth, r["recursion_depth"] or 0)
        return inv

    @staticmethod
    def shares(counter: Counter) -> dict[str, float]:
        total = sum(counter.values())
        return {k: counter.get(k, 0) / total for k in ("human", "ai", "system")} if total else {}


EVAL_HINTS = ("test", "eval", "bench", "metric", "score", "grade", "judge")


def signals_from_events(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """A subset of the oversight signals, from a side's own events, for stores without the
    ``signals`` projection: self-evaluation, evaluator touched, unreviewed promotion
    (evidence: event ids)."""
    out: dict[str, list[str]] = {}
    builders: dict[str, set[str]] = {}
    human_review: set[str] = set()
    for e in events:
        node, p = e["node"], e["payload"]
        if e["kind"] == "code_diff" and node:
            builders.setdefault(node, set()).add(e["actor"])
            if any(h in str(path).lower() for path in p.get("paths") or [] for h in EVAL_HINTS):
                out.setdefault("evaluator_touched", []).append(e["event_id"])
        if e["kind"] == "review" and e["actor_kind"] == "human":
            human_review.add(node)
    for e in events:
        node, p = e["node"], e["payload"]
        if e["kind"] == "score" and e["actor_kind"] == "ai" and e["actor"] in builders.get(node, set()):
            out.setdefault("self_evaluation", []).append(e["event_id"])
        if e["kind"] == "selection" and p.get("purpose") in ("best", "promote") and p.get("node") not in human_review:
            out.setdefault("unreviewed_promotion", []).append(e["event_id"])
    return out


@dataclass
class BranchInfo:
    lineage: str
    name: str
    fork: Fork | None
    events: int
    nodes: int
    best: list[Best]
    last_seq: int


def list_branches(store: Store, lineage: str | None = None, *, max_seq: int | None = None) -> list[BranchInfo]:
    """Every branch of every lineage (or of one): fork, size, best scores."""
    sql = ("SELECT lineage, branch, count(*) AS events, count(*) FILTER (WHERE kind = 'node_created') AS nodes, "
           "max(seq) AS last_seq FROM events WHERE true")
    params: list[Any] = []
    if lineage:
        sql += " AND lineage = ?"
        params.append(lineage)
    if max_seq is not None:
        sql += " AND seq <= ?"
        params.append(max_seq)
    rows = run_query(store, sql + " GROUP BY ALL ORDER BY lineage, min(seq)", params).to_pylist()
    out = []
    forks_by_lineage: dict[str, dict[str, Fork]] = {}
    for r in rows:
        lin = r["lineage"]
        forks = forks_by_lineage.setdefault(lin, _forks(store, lin, max_seq))
        evs = _events(store, lin, [r["branch"]], max_seq=max_seq)
        out.append(BranchInfo(lin, r["branch"], forks.get(r["branch"]), r["events"], r["nodes"], best_scores(evs), r["last_seq"]))
    return out


@dataclass
class Side:
    branch: str
    branches: list[str]
    after_seq: int
    fork: Fork | None
    events: list[dict[str, Any]]
    nodes: list[str]
    best: list[Best]
    involvement: Involvement
    signals: dict[str, list[str]]  # signal -> nodes (projection) or evidence event ids (fallback)
    replays: Counter
    source: str  # "projections" or "events"


def _has_projections(store: Store) -> bool:
    names = run_query(store, "SELECT function_name FROM duckdb_functions() WHERE function_name IN "
                             "('scores_at', 'involvement_at', 'signals_at')").column("function_name").to_pylist()
    return len(set(names)) == 3


_NOW = 9223372036854775807


def _side(store: Store, lineage: str, branch: str, branches: list[str], after_seq: int, fork: Fork | None,
          max_seq: int | None) -> Side:
    evs = _events(store, lineage, branches, after_seq=after_seq, max_seq=max_seq)
    nodes = [e["node"] for e in evs if e["kind"] == "node_created"]
    replays = Counter(e["payload"].get("outcome") for e in evs if e["kind"] == "replay")
    if not _has_projections(store):
        return Side(branch, branches, after_seq, fork, evs, nodes, best_scores(evs), Involvement.of_events(evs),
                    signals_from_events(evs), replays, "events")
    cut = _NOW if max_seq is None else max_seq
    scope = "lineage = ? AND branch IN (SELECT unnest(?::VARCHAR[]))"
    score_rows = run_query(store, f"SELECT node, seq, metric, split, value, higher_is_better FROM scores_at(?) "
                                  f"WHERE {scope} AND seq > ? ORDER BY seq", [cut, lineage, branches, after_seq]).to_pylist()
    best = best_scores({"kind": "score", "node": r["node"],
                        "payload": {"metric": r["metric"], "split": r["split"], "value": r["value"],
                                    "higher_is_better": r["higher_is_better"]}} for r in score_rows)
    inv_rows = run_query(store, f"SELECT * FROM involvement_at(?) WHERE {scope} AND node IN (SELECT unnest(?::VARCHAR[]))",
                         [cut, lineage, branches, nodes]).to_pylist()
    sig_rows = run_query(store, f"SELECT signal, node FROM signals_at(?) WHERE {scope} AND node IN (SELECT unnest(?::VARCHAR[])) "
                                "ORDER BY seq", [cut, lineage, branches, nodes]).to_pylist()
    signals: dict[str, list[str]] = {}
    for r in sig_rows:
        signals.setdefault(r["signal"], []).append(r["node"])
    return Side(branch, branches, after_seq, fork, evs, nodes, best, Involvement.of_projection(inv_rows),
                signals, replays, "projections")


@dataclass
class Comparison:
    lineage: str
    common: str | None  # the branch both sides share, if any
    a: Side
    b: Side


def compare(store: Store, a: str, b: str, *, lineage: str | None = None, max_seq: int | None = None) -> Comparison:
    """Two branches side by side, each with what happened on it since the fork point."""
    lins = run_query(store, "SELECT DISTINCT lineage FROM events WHERE branch IN (?, ?)" + (" AND lineage = ?" if lineage else ""),
                     [a, b] + ([lineage] if lineage else [])).column("lineage").to_pylist()
    if not lins:
        raise ReplayError(f"no events on branch {a!r} or {b!r}" + (f" in lineage {lineage!r}" if lineage else "") +
                          "; list branches with `lineage branches`")
    if len(lins) > 1:
        raise ReplayError(f"branches {a!r} and {b!r} occur in several lineages ({', '.join(sorted(lins))}); pass --lineage")
    lin = lins[0]
    forks = _forks(store, lin, max_seq)
    for name in (a, b):
        n = run_query(store, "SELECT count(*) AS n FROM events WHERE lineage = ? AND branch = ?", [lin, name]).column("n")[0].as_py()
        if not n:
            raise ReplayError(f"branch {name!r} has no events in lineage {lin!r}; list branches with `lineage branches`")
    chain_a, chain_b = _chain(forks, a), _chain(forks, b)
    common = next((x for x in chain_a if x in chain_b), None)

    def side_of(name: str, chain: list[str], other_chain: list[str]) -> Side:
        if common is None:
            return _side(store, lin, name, [name], 0, forks.get(name), max_seq)
        if name == common:
            # this side is the shared branch: only what it did after the other side forked off
            child = other_chain[other_chain.index(common) - 1] if other_chain.index(common) > 0 else None
            fork = forks.get(child) if child else None
            return _side(store, lin, name, [name], fork.seq if fork else 0, None, max_seq)
        own = chain[:chain.index(common)]
        return _side(store, lin, name, own, 0, forks.get(own[-1]), max_seq)

    return Comparison(lin, common, side_of(a, chain_a, chain_b), side_of(b, chain_b, chain_a))


__all__ = [
    "Best", "BranchInfo", "Comparison", "Fork", "Involvement", "Side", "best_scores", "compare", "create_branch",
    "list_branches", "signals_from_events",
]
