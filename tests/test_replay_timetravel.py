"""Time travel: the projections as of seq N are the projections of a store that only ever
received the first N events (a property checked on random logs and cut points)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage import Tracker
from lineage.cli import cli
from lineage.query import run_query
from lineage.store import Store
from replay.errors import ReplayError
from replay.timetravel import as_of, resolve_as_of
from schemas import Draft, Prepared, prepare

PROJECTIONS = ("nodes", "scores", "involvement", "signals", "edges")
# Each example builds two real stores and queries every projection a few times (about 3 s):
# raise this for a deeper search, e.g. LINEAGE_PROPERTY_EXAMPLES=200.
EXAMPLES = int(os.environ.get("LINEAGE_PROPERTY_EXAMPLES", "8"))
ACTORS = ["human:ada", "human:bob", "ai:m1", "ai:m2", "system:eval"]
OPS = ["node", "node", "node", "score", "score", "proposal", "code_diff", "code_diff", "review", "selection",
       "dataset", "run", "annotation", "retraction", "branch"]
T0 = datetime(2025, 1, 1, tzinfo=UTC)

op = st.tuples(st.sampled_from(OPS), st.integers(0, 10_000), st.integers(0, 10_000), st.sampled_from(ACTORS))


def build_log(ops: list[tuple[str, int, int, str]]) -> list[Prepared]:
    """Turn random choices into a valid, varied event log (several lineages and branches,
    merges, self-built nodes, retractions, contamination, promotions)."""
    events: list[Prepared] = []
    nodes: dict[str, list[tuple[str, str]]] = {"A": [], "B": []}  # lineage -> (node, branch)
    branches = {"A": ["main"], "B": ["main"]}

    def add(lineage, kind, actor, payload, node=None, branch="main", actor_node=None):
        events.append(prepare(Draft(lineage=lineage, kind=kind, actor=actor, payload=payload, node=node, branch=branch,
                                    actor_node=actor_node, occurred_at=T0 + timedelta(seconds=len(events)))))

    for i, (kind, a, b, actor) in enumerate(ops):
        lineage = "A" if a % 4 else "B"
        known = nodes[lineage]
        if kind == "node" or not known:
            parents = []
            if known and a % 5:
                parents.append(known[a % len(known)][0])
                if b % 4 == 0 and len(known) > 1:
                    other = known[b % len(known)][0]
                    if other not in parents:
                        parents.append(other)
            branch = branches[lineage][b % len(branches[lineage])]
            node = f"{lineage.lower()}{i}"
            builder = known[b % len(known)][0] if known and actor.startswith("ai:") and b % 2 else None
            add(lineage, "node_created", actor, {"parents": parents, "label": f"node {i}"}, node, branch, builder)
            known.append((node, branch))
            continue
        node, branch = known[b % len(known)]
        if kind == "score":
            add(lineage, "score", actor, {"metric": ["acc", "loss"][a % 2], "value": (a % 97) / 10,
                                          "split": ["public", "heldout", "train"][b % 3],
                                          "higher_is_better": a % 2 == 0}, node, branch)
        elif kind == "proposal":
            add(lineage, "proposal", actor, {"idea": f"idea {a}"}, node, branch)
        elif kind == "code_diff":
            path = ["src/a.py", "tests/test_a.py", "eval/run.py", "README.md"][a % 4]
            add(lineage, "code_diff", actor, {"paths": [path], "files": [{"path": path, "lines_added": a % 7}],
                                              "lines_added": a % 7, "lines_removed": b % 3}, node, branch,
                known[a % len(known)][0] if actor.startswith("ai:") else None)
        elif kind == "review":
            add(lineage, "review", actor, {"verdict": ["approve", "reject", "comment"][a % 3]}, node, branch)
        elif kind == "selection":
            add(lineage, "selection", actor, {"node": node, "purpose": ["best", "parent", "promote"][a % 3]}, node, branch)
        elif kind == "dataset":
            digest = hashlib.sha256(str(a % 3).encode()).hexdigest()
            add(lineage, "dataset", actor, {"name": f"d{a % 3}", "role": ["train", "eval", "heldout"][b % 3],
                                            "content_hash": digest}, node, branch)
        elif kind == "run":
            add(lineage, "run", actor, {"command": ["python", "x.py"], "status": ["ok", "failed"][a % 2]}, node, branch)
        elif kind == "annotation":
            add(lineage, "annotation", actor, {"text": f"note {a}"}, node, branch)
        elif kind == "retraction" and events:
            target = events[a % len(events)]
            add(target.lineage, "retraction", actor, {"event_id": target.event_id, "reason": "wrong"}, target.node,
                target.branch)
        elif kind == "branch":
            name = f"br{i}"
            add(lineage, "branch_created", actor, {"name": name, "from_node": node, "from_branch": branch}, node, name)
            branches[lineage].append(name)
    return events


def _rows(table) -> list[bytes]:
    return sorted(orjson.dumps(r, default=str, option=orjson.OPT_NON_STR_KEYS) for r in table.to_pylist())


def _now_state(store: Store) -> dict[str, list[bytes]]:
    return {name: _rows(run_query(store, f"SELECT * FROM {name}")) for name in PROJECTIONS}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(ops=st.lists(op, min_size=1, max_size=45), cuts=st.lists(st.integers(0, 10_000), min_size=1, max_size=2))
def test_the_state_as_of_seq_n_is_the_state_of_a_store_given_only_the_first_n_events(ops, cuts):
    events = build_log(ops)
    root = Path(tempfile.mkdtemp(prefix="tt-"))
    try:
        full = Store.init(root / "full")
        with full.writer() as w:
            w.append_many(events)
        prefix = Store.init(root / "prefix")
        given_so_far = 0
        for n in sorted({c % (len(events) + 1) for c in cuts} | {len(events)}):
            with prefix.writer() as w:  # the fresh store receives events up to n, and no further
                w.append_many(events[given_so_far:n])
            given_so_far = n
            state = as_of(full, n, projections=PROJECTIONS)
            assert {name: _rows(t) for name, t in state.tables.items()} == _now_state(prefix), f"as of seq {n}"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_as_of_a_time_is_the_last_event_recorded_by_then(store):
    acks = []
    with Tracker(store, lineage="L", actor="ai:a") as t:
        for i in range(5):
            with t.node(f"n{i}", parents=[f"n{i - 1}"] if i else []) as n:
                acks.append(n.score("acc", i / 10, actor="system:eval"))
    rows = store.query_arrow("SELECT seq, recorded_at FROM events ORDER BY seq").to_pylist()
    for r in rows:
        expected = max(x["seq"] for x in rows if x["recorded_at"] <= r["recorded_at"])
        assert resolve_as_of(store, r["recorded_at"].isoformat()) == expected
    assert resolve_as_of(store, "2000-01-01T00:00:00Z") == 0
    assert resolve_as_of(store, "2999-01-01") == rows[-1]["seq"]
    third = as_of(store, acks[2].seq)
    assert sorted(third["nodes"].column("node").to_pylist()) == ["n0", "n1", "n2"]
    assert sorted(third["scores"].column("value").to_pylist()) == [0.0, 0.1, 0.2]
    with pytest.raises(ReplayError, match="has 10 events"):
        resolve_as_of(store, "11")
    with pytest.raises(ReplayError, match="ISO 8601"):
        resolve_as_of(store, "yesterday")


def test_the_cli_prints_the_projections_as_of_a_seq(store):
    with Tracker(store, lineage="L", actor="ai:a") as t:
        with t.node("first") as n:
            ack = n.score("acc", 0.25, actor="system:eval")
        with t.node("second", parents=["first"]) as n:
            n.score("acc", 0.75, actor="system:eval")
    runner = CliRunner()
    out = runner.invoke(cli, ["replay", "--as-of", str(ack.seq), "--store", str(store.root)])
    assert out.exit_code == 0, out.output
    assert f"as of seq {ack.seq}" in out.output and "first" in out.output and "second" not in out.output
    js = runner.invoke(cli, ["replay", "--as-of", str(ack.seq), "--json", "--store", str(store.root)])
    state = orjson.loads(js.stdout)
    assert [r["node"] for r in state["nodes"]] == ["first"] and [r["value"] for r in state["scores"]] == [0.25]
