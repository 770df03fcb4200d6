"""The genealogy projections: nodes, edges, generations, ancestry macros, best path,
branches, retractions and time travel, each against an answer worked out by hand."""

from __future__ import annotations

import re

import duckdb
import pytest
from click.testing import CliRunner

from lineage import Store, Tracker, genealogy
from lineage.cli import cli

DIFF = "--- a/f.py\n+++ b/f.py\n@@ -1 +1 @@\n-a\n+b\n"


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> Store:
    """Lineage ``family``::

        r ── a ──┐
          └─ b ──┴─ c (crossover, parents a, b) ── d (second parent 'ghost' never recorded)
                     └───────── e (parents c and r: r is also a grandparent)
        o: its only parent 'ghost2' was never recorded
        p: names parent 'late', which is created after it

    Scores on ``acc`` (higher is better) and ``loss`` (lower is better)."""
    store = Store.init(tmp_path_factory.mktemp("genealogy") / "store")
    with Tracker(store, lineage="family", actor="ai:m") as t:
        with t.node("r", label="seed") as n:
            n.score("acc", 0.5)
            n.score("loss", 1.0, higher_is_better=False)
        with t.node("a", parents=["r"], label="sort first") as n:
            n.code_diff(DIFF)
            n.score("acc", 0.6)
            n.score("acc", 0.55)  # re-evaluated: latest 0.55, best 0.6
            n.score("loss", 0.4, higher_is_better=False)
        with t.node("b", parents=["r"]) as n:
            n.score("acc", 0.7)
            n.score("loss", 0.6, higher_is_better=False)
            n.review("reject", "too slow", actor="human:ann")
        with t.node("c", parents=["a", "b"]) as n:
            n.score("acc", 0.9)
            n.score("loss", 0.5, higher_is_better=False)
            n.select(purpose="best", actor="human:ann")
        with t.node("d", parents=["c", "ghost"]) as n:
            n.score("acc", 0.8)
            n.score("acc", 0.99, split="heldout")
            n.run(["python", "eval.py"], status="failed")
        t.node("e", parents=["c", "r"])
        t.node("o", parents=["ghost2"], status="failed")
        t.node("p", parents=["late"])
        t.node("late")
    return store


def rows(store: Store, sql: str, params=None) -> list[dict]:
    return genealogy.records(store.query_arrow(sql, params), maps=("scores", "best_scores"))


def test_nodes_carry_parents_generation_children_and_missing_parents(family):
    got = {n["node"]: n for n in rows(family, "SELECT * FROM nodes WHERE lineage = 'family'")}
    assert {k: v["generation"] for k, v in got.items()} == {
        "r": 0, "a": 1, "b": 1, "c": 2, "d": 3, "e": 3, "o": 1, "p": 1, "late": 0}
    assert got["c"]["parents"] == ["a", "b"] and got["e"]["parents"] == ["c", "r"]
    assert {k: v["children"] for k, v in got.items()} == {
        "r": 3, "a": 1, "b": 1, "c": 2, "d": 0, "e": 0, "o": 0, "p": 0, "late": 0}
    assert {k: v["missing_parents"] for k, v in got.items() if v["missing_parent"]} == {
        "d": ["ghost"], "o": ["ghost2"], "p": ["late"]}  # a parent created after its child is missing
    assert got["r"]["label"] == "seed" and got["r"]["branch"] == "main"


def test_edges_list_every_parent_with_its_position(family):
    got = {(e["parent"], e["child"], e["position"]) for e in rows(family, "SELECT * FROM edges WHERE lineage = 'family'")}
    assert got == {("r", "a", 1), ("r", "b", 1), ("a", "c", 1), ("b", "c", 2), ("c", "d", 1), ("c", "e", 1), ("r", "e", 2)}


def test_scores_status_and_best_flags(family):
    got = {n["node"]: n for n in rows(family, "SELECT * FROM nodes WHERE lineage = 'family'")}
    assert got["a"]["scores"] == {"acc@public": 0.55, "loss@public": 0.4}
    assert got["a"]["best_scores"] == {"acc@public": 0.6, "loss@public": 0.4}
    assert got["d"]["scores"] == {"acc@heldout": 0.99, "acc@public": 0.8}
    # best latest public value per metric in the lineage: acc 0.9 (c), loss 0.4 (a); held-out is not public
    assert {k: v["best_for"] for k, v in got.items() if v["is_best"]} == {"a": ["loss@public"], "c": ["acc@public"]}
    assert {k: v["status"] for k, v in got.items()} == {
        "r": "candidate", "a": "candidate", "b": "rejected", "c": "accepted", "d": "failed",
        "e": "candidate", "o": "failed", "p": "candidate", "late": "candidate"}
    assert got["c"]["promoted"] and got["c"]["times_selected"] == 1


def test_ancestors_and_descendants_follow_every_parent_at_the_shortest_distance(family):
    anc = {r["node"]: r["distance"] for r in rows(family, "SELECT * FROM ancestors('e', lineage_name := 'family')")}
    assert anc == {"c": 1, "r": 1, "a": 2, "b": 2}
    assert genealogy.ancestors(family, "d") == [
        {"lineage": "family", "node": "c", "distance": 1},
        {"lineage": "family", "node": "a", "distance": 2},
        {"lineage": "family", "node": "b", "distance": 2},
        {"lineage": "family", "node": "r", "distance": 3},
    ]
    desc = {r["node"]: r["distance"] for r in genealogy.descendants(family, "r", lineage="family")}
    assert desc == {"a": 1, "b": 1, "e": 1, "c": 2, "d": 3}
    assert genealogy.descendants(family, "d") == []


def test_lineage_path_goes_up_to_the_nearest_common_ancestor_then_down(family):
    def walk(a, b):
        return [(r["node"], r["direction"]) for r in genealogy.path(family, a, b, lineage="family")]

    assert walk("d", "r") == [("d", "start"), ("c", "up"), ("a", "up"), ("r", "up")]
    assert walk("r", "d") == [("r", "start"), ("a", "down"), ("c", "down"), ("d", "down")]
    assert walk("a", "b") == [("a", "start"), ("r", "up"), ("b", "down")]
    assert walk("e", "r") == [("e", "start"), ("r", "up")]  # the direct edge, not through c
    assert walk("d", "o") == []  # no common ancestor


def test_best_path_runs_from_a_root_to_the_champion_through_best_scoring_parents(family):
    acc = genealogy.best_path(family, "family", "acc")
    assert [(r["step"], r["node"], r["value"]) for r in acc] == [(0, "r", 0.5), (1, "b", 0.7), (2, "c", 0.9)]
    assert acc[1]["generation"] == 1 and acc[0]["label"] == "seed"
    loss = genealogy.best_path(family, "family", "loss")  # lower is better: a (0.4)
    assert [r["node"] for r in loss] == ["r", "a"]
    held = genealogy.best_path(family, "family", "acc", split="heldout")  # only d has one
    assert [r["node"] for r in held] == ["r", "a", "c", "d"]


def test_time_travel_macros_show_the_genealogy_as_of_an_event(family):
    (c,) = rows(family, "SELECT created_seq FROM nodes WHERE lineage = 'family' AND node = 'c'")
    before = {n["node"] for n in rows(family, "SELECT node FROM nodes_at(?) WHERE lineage = 'family'", [c["created_seq"] - 1])}
    assert before == {"r", "a", "b"}
    (b,) = rows(family, "SELECT * FROM nodes_at(?) WHERE lineage = 'family' AND node = 'b'", [c["created_seq"] - 1])
    assert b["status"] == "rejected" and b["children"] == 0
    assert rows(family, "SELECT * FROM ancestors('c', lineage_name := 'family', max_seq := ?)", [c["created_seq"] - 1]) == []


def test_branch_nodes_carry_their_branch_and_branch_events_do_not_leak(family):
    with Tracker(family, lineage="forked", actor="ai:m") as t:
        with t.node("a") as n:
            n.score("acc", 0.5)
        exp = t.branch_from("a", "exp", actor="human:ann")
        exp.record("score", {"metric": "acc", "value": 0.9}, node="a", actor="system:eval")  # a re-scored on exp
        with exp.node("x", parents=["a"]) as n:
            n.score("acc", 0.6)
        with t.node("m", parents=["a"]) as n:
            n.score("acc", 0.4)
    got = {n["node"]: n for n in genealogy.nodes(family, lineage="forked")}
    assert {k: v["branch"] for k, v in got.items()} == {"a": "main", "x": "exp", "m": "main"}
    assert got["a"]["scores"] == {"acc@public": 0.5}
    assert {n["node"] for n in genealogy.nodes(family, lineage="forked", branch="exp")} == {"x"}
    tree = genealogy.tree(family, lineage="forked", branch="exp")["forked"]
    assert [(ln.row["node"], ln.from_outside) for ln in tree] == [("x", ["a"])]


def test_retracted_events_do_not_count(family):
    with Tracker(family, lineage="retracted", actor="ai:m") as t:
        t.node("r")
        t.node("a")
        wrong = t.record("node_created", {"parents": ["r"]}, node="q")
        t.record("retraction", {"event_id": wrong.event_id, "reason": "wrong parent"}, actor="human:ann")
        t.record("node_created", {"parents": ["a"], "label": "fixed"}, node="q")
        with t.node("s", parents=["r"]) as n:
            bad = n.score("acc", 0.99)
            n.score("acc", 0.5, split="heldout")
        t.record("retraction", {"event_id": bad.event_id, "reason": "leaked"}, actor="human:ann")
    got = {n["node"]: n for n in genealogy.nodes(family, lineage="retracted")}
    assert got["q"]["parents"] == ["a"] and got["q"]["label"] == "fixed"
    assert got["s"]["scores"] == {"acc@heldout": 0.5}
    assert genealogy.descendants(family, "r", lineage="retracted") == [
        {"lineage": "retracted", "node": "s", "distance": 1}]
    assert rows(family, "SELECT event_id FROM effective_events WHERE event_id = ?", [bad.event_id]) == []


def test_artifacts_list_datasets_checkpoints_and_stored_objects(family, tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,2\n")
    with Tracker(family, lineage="stuff", actor="ai:m") as t:
        t.record("dataset", {"name": "shared", "role": "eval", "uri": "s3://b/eval"})  # lineage-level
        with t.node("a") as n:
            n.dataset("train", role="train", path=data, rows=1)
            n.checkpoint(uri="s3://b/ckpt", step=100)
            diff_ack = n.code_diff(after={"f.py": "x = 1\n"}, snapshot=True)
    store = family
    got = {(a["artifact"], a["node"]): a for a in rows(store, "SELECT * FROM artifacts WHERE lineage = 'stuff'")}
    assert set(got) == {("dataset", None), ("dataset", "a"), ("checkpoint", "a"), ("diff", "a"), ("snapshot", "a")}
    train = got[("dataset", "a")]
    assert (train["role"], train["rows"], train["bytes"]) == ("train", 1, data.stat().st_size)
    assert train["content_hash"] == store.query_arrow(
        "SELECT payload->>'content_hash' AS h FROM events WHERE lineage = 'stuff' AND kind = 'dataset' AND node = 'a'").column("h")[0].as_py()
    assert got[("checkpoint", "a")]["step"] == 100
    for kind in ("diff", "snapshot"):
        assert got[(kind, "a")]["event_id"] == diff_ack.event_id
        assert store.objects.has(got[(kind, "a")]["content_hash"])


def test_projections_read_sealed_parquet_segments_and_plain_duckdb_clients(tmp_path):
    with Tracker(tmp_path / "store", lineage="L", actor="ai:m") as t:
        with t.node("r") as n:
            n.score("acc", 0.5)
        with t.node("a", parents=["r"]) as n:
            n.score("acc", 0.7)
    store = Store.open(tmp_path / "store")
    before = genealogy.nodes(store)
    store.seal()
    with Tracker(store, lineage="L", actor="ai:m") as t, t.node("b", parents=["a"]) as n:  # hot, after the seal
        n.score("acc", 0.8)
    assert store.query_arrow("SELECT count(*) AS n FROM segments").column("n")[0].as_py() == 1
    after = {n["node"]: n for n in genealogy.nodes(store)}
    assert after["a"] == next(n for n in before if n["node"] == "a") | {"children": 1, "is_best": False, "best_for": []}
    assert after["b"]["generation"] == 2 and after["b"]["is_best"]
    con = duckdb.connect(str(store.db), read_only=True)  # any DuckDB client, nothing from lineage
    try:
        assert con.execute("SELECT node, generation FROM nodes ORDER BY generation").fetchall() == [("r", 0), ("a", 1), ("b", 2)]
        assert con.execute("SELECT node FROM ancestors('b') ORDER BY distance").fetchall() == [("a",), ("r",)]
        assert con.execute("SELECT count(*) FROM involvement").fetchall() == [(3,)]
        assert con.execute("SELECT count(*) FROM signals").fetchall() == [(0,)]
        assert con.execute("SELECT node FROM best_path('L', 'acc')").fetchall() == [("r",), ("a",), ("b",)]
    finally:
        con.close()


def test_tree_command_draws_the_genealogy_with_markers(family):
    out = CliRunner().invoke(cli, ["tree", "--store", str(family.root), "--lineage", "family"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "family  9 nodes, generations 0-3"
    drawn = [re.match(r"^([│├└─ ]*)(\S+)", ln).groups() for ln in lines[1:]]
    assert drawn == [
        ("", "r"), ("├── ", "a"), ("│   └── ", "c"), ("│       ├── ", "d"), ("│       └── ", "e"),
        ("└── ", "b"), ("", "o"), ("", "p"), ("", "late"),
    ]
    line = {node: text for (_, node), text in zip(drawn, lines[1:], strict=True)}
    assert "seed" in line["r"] and "acc=0.5 loss=1" in line["r"]
    assert "⊕ also from b" in line["c"] and "★" in line["c"] and "[accepted]" in line["c"]
    assert "H25 A75 S0 L2" in line["c"]  # the human only selected it
    assert "⊕ also from r" in line["e"] and "H0 A100 S0 L3" in line["e"]
    assert "✗ missing parent ghost" in line["d"] and "[failed]" in line["d"]
    assert "✗ missing parent late" in line["p"]

    out = CliRunner().invoke(cli, ["tree", "--store", str(family.root), "--lineage", "nope"])
    assert out.exit_code == 0 and "no nodes in lineage 'nope'" in out.output
