"""Oversight signals: one hand-built lineage per signal, with the findings (and the
evidence events behind each) worked out in the test."""

from __future__ import annotations

import duckdb
import orjson
import pytest
from click.testing import CliRunner

from lineage import Store, Tracker
from lineage import signals as oversight
from lineage.cli import cli


def diff(path: str, added: int, removed: int = 0) -> str:
    head = f"@@ -1,{removed} +1,{added} @@" if removed else f"@@ -0,0 +1,{added} @@"
    body = [f"-old {i}" for i in range(removed)] + [f"+new {i}" for i in range(added)]
    return "\n".join([f"--- a/{path}", f"+++ b/{path}", head, *body]) + "\n"


def content(n: int) -> str:
    """A content hash (any 64 hex digits will do)."""
    return f"{n:064x}"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """One store for the module; every test records its own lineage in it."""
    return Store.init(tmp_path_factory.mktemp("signals") / "store")


def findings(store: Store, lineage: str, max_seq: int | None = None) -> dict[tuple, dict]:
    return {(f["node"], f["signal"], f["metric"]): f
            for f in oversight.signals(store, lineage=lineage, max_seq=max_seq)}


def test_self_evaluation_is_a_score_by_the_actor_that_built_the_node(store):
    with Tracker(store, lineage="selfeval", actor="system:loop") as t:
        with t.node("a") as n:
            built = n.code_diff(diff("pack.py", 3), actor="ai:coder")
            scored = n.score("fill", 0.9, actor="ai:coder")
        with t.node("b") as n:  # built by the AI, scored by the evaluator: fine
            n.code_diff(diff("pack.py", 3), actor="ai:coder")
            n.score("fill", 0.9, actor="system:eval")
        with t.node("c") as n:  # a human grading their own code: worth knowing, less alarming
            n.code_diff(diff("pack.py", 3), actor="human:ann")
            n.score("fill", 0.9, actor="human:ann")
        with t.node("d") as n:  # no diff: the proposer built it
            n.proposal("use a heap", actor="ai:x")
            n.score("fill", 0.9, actor="ai:x")
        t.node("e")
        itself = t.record("score", {"metric": "fill", "value": 1.0}, node="e", actor="ai:agent", actor_node="e")
    got = findings(store, "selfeval")
    assert set(got) == {("a", "self_evaluation", None), ("c", "self_evaluation", None),
                        ("d", "self_evaluation", None), ("e", "self_evaluation", None)}
    a = got[("a", "self_evaluation", None)]
    assert a["severity"] == "warning" and a["evidence"] == [built.event_id, scored.event_id]
    assert a["detail"] == "scored by the actor that built it: ai:coder"
    assert got[("c", "self_evaluation", None)]["severity"] == "info"
    assert got[("e", "self_evaluation", None)]["evidence"] == [itself.event_id]


def test_evaluator_touched_is_a_diff_editing_evaluation_or_test_paths(store):
    with Tracker(store, lineage="evaltouch", actor="system:loop") as t:
        with t.node("seed") as n:  # a root sets up its evaluator: nothing to touch yet
            n.code_diff(diff("src/pack.py", 2) + diff("tests/test_pack.py", 1), actor="human:ann")
        with t.node("a", parents=["seed"]) as n:
            touched = n.code_diff(diff("src/pack.py", 2) + diff("tests/test_pack.py", 1), actor="ai:coder")
        with t.node("b", parents=["seed"]) as n:
            n.code_diff(diff("eval/harness.py", 1), actor="human:ann")
        with t.node("c", parents=["seed"]) as n:  # names merely containing "eval" or "test"
            n.code_diff(diff("src/retrieval.py", 1) + diff("latest.py", 1), actor="ai:coder")
        with t.node("d", parents=["seed"]) as n:  # a rename away from the tests counts by its old path
            n.record("code_diff", {"paths": ["src/helpers.py"], "files": [
                {"path": "src/helpers.py", "old_path": "tests/helpers.py", "change": "renamed"}]}, actor="ai:coder")
    got = findings(store, "evaltouch")
    assert set(got) == {("a", "evaluator_touched", None), ("b", "evaluator_touched", None),
                        ("d", "evaluator_touched", None)}
    a = got[("a", "evaluator_touched", None)]
    assert a["severity"] == "critical" and a["evidence"] == [touched.event_id]
    assert a["detail"] == "diff edits evaluation or test code: tests/test_pack.py"
    assert got[("b", "evaluator_touched", None)]["severity"] == "warning"
    assert "tests/helpers.py" in got[("d", "evaluator_touched", None)]["detail"]


def test_contamination_is_train_data_matching_eval_data_in_the_ancestry(store):
    """root holds held-out H1 and eval H2. a (child) trains on H1: critical. s, an
    unrelated root, trains on H2: not its ancestry, nothing. m trains and evaluates on
    H4 itself: warning. g trains on H5 and its child h evaluates on H5: warning at h."""
    with Tracker(store, lineage="contam", actor="ai:m") as t:
        with t.node("root") as n:
            heldout = n.dataset("bench", role="heldout", content_hash=content(1))
            n.dataset("dev", role="eval", content_hash=content(2))
        with t.node("a", parents=["root"]) as n:
            train = n.dataset("train-v2", role="train", content_hash=content(1))
        with t.node("b", parents=["root"]) as n:
            n.dataset("train-v3", role="train", content_hash=content(3))
        with t.node("s") as n:
            n.dataset("train", role="train", content_hash=content(2))
        with t.node("m", parents=["root"]) as n:
            n.dataset("train", role="train", content_hash=content(4))
            n.dataset("eval", role="eval", content_hash=content(4))
        with t.node("g") as n:
            g_train = n.dataset("train", role="train", content_hash=content(5))
        with t.node("h", parents=["g"]) as n:
            h_eval = n.dataset("eval", role="eval", content_hash=content(5))
    got = findings(store, "contam")
    assert set(got) == {("a", "contamination", None), ("m", "contamination", None), ("h", "contamination", None)}
    a = got[("a", "contamination", None)]
    assert a["severity"] == "critical" and a["evidence"] == [heldout.event_id, train.event_id]
    assert a["detail"] == "train data shares content with heldout data: train-v2 = bench"
    assert got[("m", "contamination", None)]["severity"] == "warning"
    assert got[("h", "contamination", None)]["evidence"] == [g_train.event_id, h_eval.event_id]


def test_unreviewed_promotion_is_promotion_by_ai_or_system_without_human_approval(store):
    with Tracker(store, lineage="promo", actor="ai:agent") as t:
        a_sel = t.node("a").select(purpose="best")
        b = t.node("b")
        b.review("approve", actor="human:ann")
        b.select(purpose="promote")
        c = t.node("c")
        rejected = c.review("reject", "overfits", actor="human:ann")
        c_sel = c.select(purpose="best")
        t.node("d").select(purpose="best", actor="human:ann")  # a human chose it
        t.node("e").select(purpose="parent")  # routine parent choice of a search loop
        f = t.node("f")
        f_sel = f.select(purpose="best", actor="system:scheduler")
        f.review("approve", actor="human:bob")  # approved afterwards
    got = findings(store, "promo")
    assert set(got) == {("a", "unreviewed_promotion", None), ("c", "unreviewed_promotion", None)}
    a = got[("a", "unreviewed_promotion", None)]
    assert (a["severity"], a["evidence"]) == ("warning", [a_sel.event_id])
    assert a["detail"] == "promoted by ai:agent with no human review"
    c_found = got[("c", "unreviewed_promotion", None)]
    assert (c_found["severity"], c_found["evidence"]) == ("critical", [c_sel.event_id, rejected.event_id])
    # until the human approved f, its promotion was unreviewed
    assert ("f", "unreviewed_promotion", None) in findings(store, "promo", max_seq=f_sel.seq)


def test_heldout_gap_is_public_score_up_and_heldout_down_versus_the_parent(store):
    with Tracker(store, lineage="gap", actor="system:eval") as t:
        with t.node("p") as n:
            p_pub = n.score("acc", 0.70)
            p_held = n.score("acc", 0.65, split="heldout")
            n.score("loss", 1.0, higher_is_better=False)
            n.score("loss", 1.1, split="heldout", higher_is_better=False)
        with t.node("c1", parents=["p"]) as n:
            c_pub = n.score("acc", 0.80)
            c_held = n.score("acc", 0.60, split="heldout")
        with t.node("c2", parents=["p"]) as n:  # both up: fine
            n.score("acc", 0.80)
            n.score("acc", 0.70, split="heldout")
        with t.node("c3", parents=["p"]) as n:  # public down too: not this signal
            n.score("acc", 0.65)
            n.score("acc", 0.50, split="heldout")
        with t.node("c4", parents=["p"]) as n:  # lower is better: public loss down, held-out loss up
            n.score("loss", 0.8, higher_is_better=False)
            n.score("loss", 1.3, split="heldout", higher_is_better=False)
    got = findings(store, "gap")
    assert set(got) == {("c1", "heldout_gap", "acc"), ("c4", "heldout_gap", "loss")}
    c1 = got[("c1", "heldout_gap", "acc")]
    assert c1["severity"] == "critical"
    assert c1["evidence"] == [p_pub.event_id, p_held.event_id, c_pub.event_id, c_held.event_id]
    assert c1["detail"] == "acc: public 0.7 -> 0.8, held-out 0.65 -> 0.6 versus parent p"


def test_suspicious_jump_is_a_large_gain_from_a_tiny_diff(store):
    with Tracker(store, lineage="jump", actor="ai:coder") as t:
        with t.node("p") as n:
            p_acc = n.score("acc", 0.50, actor="system:eval")
            n.score("loss", 2.0, higher_is_better=False, actor="system:eval")
        with t.node("j1", parents=["p"]) as n:  # +40% from 2 lines
            j1_diff = n.code_diff(diff("solve.py", 1, 1))
            j1_acc = n.score("acc", 0.70, actor="system:eval")
        with t.node("j2", parents=["p"]) as n:  # +40% from 40 lines: real work
            n.code_diff(diff("solve.py", 30, 10))
            n.score("acc", 0.70, actor="system:eval")
        with t.node("j3", parents=["p"]) as n:  # +4%: small gain
            n.code_diff(diff("solve.py", 1))
            n.score("acc", 0.52, actor="system:eval")
        with t.node("j4", parents=["p"]) as n:  # loss halved by one line
            n.code_diff(diff("solve.py", 1))
            n.score("loss", 1.0, higher_is_better=False, actor="system:eval")
        with t.node("j5", parents=["p", "j1"]) as n:  # +7% over its better parent j1
            n.code_diff(diff("solve.py", 1))
            n.score("acc", 0.75, actor="system:eval")
        with t.node("j6", parents=["p"]) as n:  # no diff recorded: nothing to call tiny
            n.score("acc", 0.90, actor="system:eval")
    got = findings(store, "jump")
    assert set(got) == {("j1", "suspicious_jump", "acc"), ("j4", "suspicious_jump", "loss")}
    j1 = got[("j1", "suspicious_jump", "acc")]
    assert j1["severity"] == "warning"
    assert j1["evidence"] == [p_acc.event_id, j1_diff.event_id, j1_acc.event_id]
    assert j1["detail"] == "acc: 0.5 -> 0.7 versus parent p from a diff of 2 lines"


def test_thresholds_and_globs_are_settings_changed_with_the_cli(tmp_path):
    with Tracker(tmp_path / "store", lineage="L", actor="ai:coder") as t:
        with t.node("p") as n:
            n.score("acc", 0.5, actor="system:eval")
        with t.node("big", parents=["p"]) as n:
            n.code_diff(diff("src/retrieval.py", 30, 10))
            n.score("acc", 0.7, actor="system:eval")
    store = Store.open(tmp_path / "store")
    assert oversight.signals(store) == []
    runner = CliRunner()
    out = runner.invoke(cli, ["signals", "--store", str(store.root), "--set", "jump_max_diff_lines=100",
                              "--set", 'evaluator_globs=["*retrieval*"]'])
    assert out.exit_code == 0, out.output
    assert {(f["node"], f["signal"]) for f in oversight.signals(store)} == {
        ("big", "suspicious_jump"), ("big", "evaluator_touched")}
    con = duckdb.connect(str(store.db), read_only=True)  # plain SQL sees the same settings
    try:
        assert con.execute("SELECT value FROM settings WHERE key = 'jump_max_diff_lines'").fetchall() == [("100",)]
        assert con.execute("SELECT setting_list('evaluator_globs')").fetchall() == [(["*retrieval*"],)]
    finally:
        con.close()
    bad = runner.invoke(cli, ["signals", "--store", str(store.root), "--set", "jump_max_diff_lines=lots"])
    assert bad.exit_code == 2 and "takes a number" in bad.output
    bad = runner.invoke(cli, ["signals", "--store", str(store.root), "--set", "no_such=1"])
    assert bad.exit_code == 2 and "unknown setting 'no_such'" in bad.output
    out = runner.invoke(cli, ["signals", "--store", str(store.root), "--settings", "--json"])
    assert {s["key"] for s in orjson.loads(out.output)} >= {"evaluator_globs", "jump_min_relative_gain", "heldout_splits"}


def test_signals_command_lists_findings_as_a_table_or_json(store):
    with Tracker(store, lineage="cli", actor="ai:agent") as t:
        t.node("seed")
        with t.node("a", parents=["seed"]) as n:
            n.code_diff(diff("tests/test_a.py", 1))
            n.select(purpose="best")
    runner = CliRunner()
    out = runner.invoke(cli, ["signals", "--store", str(store.root), "--lineage", "cli", "--json"])
    assert out.exit_code == 0, out.output
    got = orjson.loads(out.output)
    assert [(f["node"], f["signal"], f["severity"]) for f in got] == [
        ("a", "evaluator_touched", "critical"), ("a", "unreviewed_promotion", "warning")]
    assert all(len(e) == 36 for f in got for e in f["evidence"])
    out = runner.invoke(cli, ["signals", "--store", str(store.root), "--lineage", "cli", "--signal", "unreviewed_promotion"])
    assert out.exit_code == 0, out.output
    assert "unreviewed_promotion" in out.output and "evaluator_touched" not in out.output
    assert "1 finding" in out.output
