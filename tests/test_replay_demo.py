"""The bundled demo: every node re-executes and reproduces its recorded scores, except the
one labelled non-deterministic, which drifts (so users see what drift looks like)."""

from __future__ import annotations

import pytest

from lineage.query import run_query
from lineage.store import Store
from lineage.trees import tree_hash
from replay.materialize import Materializer

demo = pytest.importorskip("lineage.demo")


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> Store:
    path = tmp_path_factory.mktemp("demo") / "store"
    demo.build_demo(path)
    return Store.open(path)


def test_every_demo_node_checks_out_to_the_tree_the_loop_ran(demo_store, tmp_path):
    trees = demo.demo_trees()
    mat = Materializer(demo_store, demo.DEMO_LINEAGE)
    for node, tree in trees.items():
        assert mat.build(node).tree_hash == tree_hash(tree), node


def test_every_demo_node_reproduces_except_the_non_deterministic_one(demo_store):
    from replay.rerun import rerun

    nodes = run_query(demo_store, "SELECT node, payload->>'label' AS label FROM events WHERE kind = 'node_created' "
                                  "AND lineage = ? ORDER BY seq", [demo.DEMO_LINEAGE]).to_pylist()
    outcomes = {}
    for r in nodes:
        report = rerun(demo_store, r["node"], timeout=120)
        outcomes[r["node"]] = (report.outcome, r["label"], report.reason)
    drifted = {n: o for n, o in outcomes.items() if o[0] != "reproduced"}
    assert len(drifted) == 1, drifted
    ((node, (outcome, label, reason)),) = drifted.items()
    assert outcome == "drifted" and "non-deterministic" in label, (node, outcome, label, reason)
    recorded = run_query(demo_store, "SELECT node, payload->>'outcome' AS outcome FROM events WHERE kind = 'replay'").to_pylist()
    assert len(recorded) == len(nodes) and {r["node"]: r["outcome"] for r in recorded}[node] == "drifted"
