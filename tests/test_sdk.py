"""The SDK a loop uses: a Tracker, a context manager per node, one method per kind of fact."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import orjson
import pytest

from lineage import Store, Tracker
from lineage.trees import tree_hash
from lineage.verify import verify
from schemas import Draft, SchemaError, prepare

DIFF = """\
--- a/pack.py
+++ b/pack.py
@@ -1,3 +1,4 @@
 def pack(items, size):
-    bins = []
+    bins: list = []
+    items = sorted(items, reverse=True)
     return bins
"""


def events(store: Store, where: str = "TRUE") -> list[dict]:
    table = store.query_arrow(f"SELECT seq, node, kind, actor, actor_kind, actor_node, branch, payload::VARCHAR AS payload FROM events WHERE {where} ORDER BY seq")
    out = table.to_pylist()
    for e in out:
        e["payload"] = orjson.loads(e["payload"])
    return out


def test_a_loop_records_a_node_in_five_lines(tmp_path):
    with Tracker(tmp_path / "store", lineage="packing", actor="ai:gpt-5") as t:  # noqa: SIM117 - as a loop writes it
        with t.node("gen1", label="try best-fit") as n:
            n.proposal("sort items first", rationale="first-fit decreasing")
            n.code_diff(DIFF)
            n.score("fill", 0.93, split="eval", actor="system:evaluator")
    store = Store.open(tmp_path / "store")
    got = events(store)
    assert [(e["seq"], e["node"], e["kind"], e["actor"]) for e in got] == [
        (1, "gen1", "node_created", "ai:gpt-5"),
        (2, "gen1", "proposal", "ai:gpt-5"),
        (3, "gen1", "code_diff", "ai:gpt-5"),
        (4, "gen1", "score", "system:evaluator"),
    ]
    assert got[0]["payload"] == {"parents": [], "label": "try best-fit"}
    assert got[3]["payload"]["value"] == 0.93 and got[3]["payload"]["split"] == "eval"
    assert verify(store).ok


def test_every_recording_method_returns_the_store_acknowledgement(store):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t, t.node("a") as n:
        ack = n.annotate("first lesson", topic="lesson")
    assert ack.seq == 2 and len(ack.hash) == 64


# -- actors ---------------------------------------------------------------------------------------


def test_recording_without_any_actor_is_an_error_and_stores_nothing(store):
    with Tracker(store, lineage="packing") as t:
        with pytest.raises(SchemaError, match="actor is required"):
            t.node("a")
        with pytest.raises(SchemaError, match="actor is required"):
            t.record("annotation", {"text": "x"}, node="a")
    assert store.count() == 0


def test_a_node_default_actor_covers_that_node_only(store):
    with Tracker(store, lineage="packing") as t:
        n = t.node("a", actor="human:alice")
        n.proposal("idea")  # the node's actor applies
        with pytest.raises(SchemaError, match="actor is required"):
            t.record("proposal", {"idea": "x"}, node="a")  # the tracker has none
        with pytest.raises(SchemaError, match="actor is required"):
            t.node("b").proposal("y")
    assert [e["actor"] for e in events(store)] == ["human:alice", "human:alice"]


def test_a_malformed_default_actor_is_refused_when_the_tracker_is_made(store):
    with pytest.raises(SchemaError, match="'bob' is not an actor"):
        Tracker(store, lineage="packing", actor="bob")


def test_explicit_defaults_apply_node_over_tracker_and_an_explicit_actor_over_both(store):
    with Tracker(store, lineage="packing", actor="ai:researcher") as t:
        with t.node("a") as a:
            a.proposal("tracker default")
        with t.node("b", actor="human:alice") as b:
            b.proposal("node default")
            b.review("approve", actor="human:bob")
        with t.node("c", actor="ai:gen-b", actor_node="b") as c:
            c.code_diff(DIFF)
    got = [(e["node"], e["kind"], e["actor"], e["actor_kind"], e["actor_node"]) for e in events(store)]
    assert got == [
        ("a", "node_created", "ai:researcher", "ai", None),
        ("a", "proposal", "ai:researcher", "ai", None),
        ("b", "node_created", "human:alice", "human", None),
        ("b", "proposal", "human:alice", "human", None),
        ("b", "review", "human:bob", "human", None),
        ("c", "node_created", "ai:gen-b", "ai", "b"),
        ("c", "code_diff", "ai:gen-b", "ai", "b"),
    ]


# -- generations ---------------------------------------------------------------------------------


def test_generation_is_derived_from_the_parents(store):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t:
        root = t.node("root")
        a = t.node("a", parents=["root"])
        b = t.node("b", parents=["a"])
        side = t.node("side", parents=["root"])
        merged = t.node("merged", parents=["b", "side"])
    assert [n.generation for n in (root, a, b, side, merged)] == [0, 1, 2, 1, 3]
    created = {e["node"]: e["payload"]["parents"] for e in events(store, "kind = 'node_created'")}
    assert created["merged"] == ["b", "side"]


def test_a_node_whose_parent_is_unknown_is_still_recorded(store):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t:
        orphan = t.node("orphan", parents=["pruned-by-openevolve"])
    assert orphan.generation == 1
    assert events(store)[0]["payload"]["parents"] == ["pruned-by-openevolve"]


# -- code diffs -----------------------------------------------------------------------------------


def test_code_diff_from_a_unified_diff_keeps_the_text_as_an_object(store):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t, t.node("a") as n:
        n.code_diff(DIFF)
    payload = events(store, "kind = 'code_diff'")[0]["payload"]
    assert payload["paths"] == ["pack.py"]
    assert (payload["lines_added"], payload["lines_removed"]) == (2, 1)
    assert payload["diff_object"] == hashlib.sha256(DIFF.encode()).hexdigest()
    assert store.objects.verified(payload["diff_object"]).decode() == DIFF


def test_a_broken_diff_is_refused(store):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t:
        n = t.node("a")
        with pytest.raises(ValueError, match="unified diff"):
            n.code_diff("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n-a\n")
    assert [e["kind"] for e in events(store)] == ["node_created"]


@pytest.mark.parametrize("text", ["gen4/", "@@ this is not a diff", "hello world"])
def test_text_that_is_not_a_diff_is_refused(store, text):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t:
        n = t.node("a")
        with pytest.raises(ValueError, match="unified diff"):
            n.code_diff(text)
    assert [e["kind"] for e in events(store)] == ["node_created"]


def test_code_diff_from_two_trees_records_the_diff_and_both_tree_hashes(store):
    before = {"pack.py": "def pack(x):\n    return x\n", "README": "packing\n", "old.py": "gone\n"}
    after = {"pack.py": "def pack(x):\n    return sorted(x)\n", "README": "packing\n", "new.py": "print('hi')\n"}
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t, t.node("a") as n:
        n.code_diff(before=before, after=after)
    payload = events(store, "kind = 'code_diff'")[0]["payload"]
    assert payload["base_tree"] == tree_hash({k: v.encode() for k, v in before.items()})
    assert payload["result_tree"] == tree_hash({k: v.encode() for k, v in after.items()})
    changes = {f["path"]: f["change"] for f in payload["files"]}
    assert changes == {"new.py": "added", "old.py": "deleted", "pack.py": "modified"}
    assert (payload["lines_added"], payload["lines_removed"]) == (2, 2)
    diff = store.objects.get_text(payload["diff_object"])
    assert "+    return sorted(x)" in diff and "-    return x" in diff


def test_code_diff_from_two_directories_matches_the_same_trees_as_mappings(store, tmp_path):
    old, new = tmp_path / "gen3", tmp_path / "gen4"
    for root, body in ((old, "return items"), (new, "return sorted(items)")):
        (root / "src").mkdir(parents=True)
        (root / "src" / "pack.py").write_text(f"def pack(items):\n    {body}\n")
        (root / "__pycache__").mkdir()
        (root / "__pycache__" / "junk.pyc").write_bytes(b"\0\1")
    (new / "weights.bin").write_bytes(b"\0\xff" * 10)
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t, t.node("gen4") as n:
        n.code_diff(before=old, after=new, snapshot=True)
    payload = events(store, "kind = 'code_diff'")[0]["payload"]
    assert payload["paths"] == ["src/pack.py", "weights.bin"]  # __pycache__ is not code
    assert payload["base_tree"] == tree_hash({"src/pack.py": b"def pack(items):\n    return items\n"})
    binary = next(f for f in payload["files"] if f["path"] == "weights.bin")
    assert binary["change"] == "binary"
    assert store.objects.get(binary["object"]) == b"\0\xff" * 10
    snapshot = orjson.loads(store.objects.get(payload["snapshot_object"]))
    assert set(snapshot) == {"src/pack.py", "weights.bin"}
    for digest in snapshot.values():
        assert store.objects.has(digest)


def test_code_diff_needs_a_diff_or_trees(store):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t, t.node("a") as n, pytest.raises(TypeError):
        n.code_diff()


# -- datasets, runs, checkpoints -----------------------------------------------------------------------


def test_dataset_and_checkpoint_hash_the_file(store, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"items": [3, 1, 2]}\n' * 50)
    weights = tmp_path / "ckpt.pt"
    weights.write_bytes(bytes(range(256)) * 8)
    with Tracker(store, lineage="packing", actor="system:trainer") as t, t.node("a") as n:
        n.dataset("bins", role="train", path=data, rows=50)
        n.checkpoint(weights, step=100)
    ds, ck = (e["payload"] for e in events(store, "kind IN ('dataset', 'checkpoint')"))
    assert ds["content_hash"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert (ds["bytes"], ds["rows"], ds["role"], ds["uri"]) == (data.stat().st_size, 50, "train", str(data))
    assert ck["content_hash"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (ck["bytes"], ck["step"], ck["uri"]) == (2048, 100, str(weights))


def test_a_dataset_needs_a_role(store):
    with Tracker(store, lineage="packing", actor="system:trainer") as t, t.node("a") as n, pytest.raises(SchemaError, match="payload.role"):
        n.dataset("bins", role="test")


def test_run_records_command_seed_environment_status_duration_and_cost(store):
    with Tracker(store, lineage="packing", actor="system:runner") as t, t.node("a") as n:
        n.run(["python", "eval.py", "--fast"], status="ok", seed=7, environment={"PYTHONHASHSEED": "0"},
              duration_s=1.25, cost={"tokens": 1500, "dollars": 0.03, "gpu_hours": 0.0}, exit_code=0)
    (payload,) = (e["payload"] for e in events(store, "kind = 'run'"))
    assert payload == {
        "command": ["python", "eval.py", "--fast"], "status": "ok", "seed": 7,
        "environment": {"PYTHONHASHSEED": "0"}, "duration_s": 1.25,
        "cost": {"tokens": 1500, "dollars": 0.03, "gpu_hours": 0.0}, "exit_code": 0,
    }


def test_a_nan_score_is_refused_naming_the_field(store):
    with Tracker(store, lineage="packing", actor="system:eval") as t, t.node("a") as n, pytest.raises(SchemaError, match="payload.value"):
        n.score("fill", float("nan"))
    assert [e["kind"] for e in events(store)] == ["node_created"]


def test_review_selection_and_branch(store):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t:
        with t.node("a") as a:
            a.review("approve", "ship it", actor="human:alice")
            a.select(purpose="parent", reason="highest fill")
        explore = t.branch_from("a", "explore", actor="human:alice")
        with explore.node("b", parents=["a"]) as b:
            b.proposal("go wild")
    got = [(e["branch"], e["node"], e["kind"]) for e in events(store)]
    assert got == [
        ("main", "a", "node_created"), ("main", "a", "review"), ("main", "a", "selection"),
        ("explore", "a", "branch_created"), ("explore", "b", "node_created"), ("explore", "b", "proposal"),
    ]
    assert events(store, "kind = 'selection'")[0]["payload"] == {"node": "a", "purpose": "parent", "reason": "highest fill"}


# -- group commit ------------------------------------------------------------------------------------


def test_a_batch_is_committed_together_at_its_end(store):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t:
        with t.batch():
            with t.node("a") as n:
                ids = [n.score("fill", i / 10) for i in range(10)]
            assert store.count() == 0
        assert all(isinstance(i, str) for i in ids)
    assert store.count() == 11
    assert verify(store).ok


def test_a_batch_with_an_invalid_event_stores_nothing(store):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t:
        t.node("kept")
        with pytest.raises(SchemaError, match="payload.value"), t.batch(), t.node("a") as n:
            n.score("fill", 0.5)
            n.score("fill", float("inf"))
        assert [e["node"] for e in events(store)] == ["kept"]
        t.node("after")
    assert [(e["seq"], e["node"]) for e in events(store)] == [(1, "kept"), (2, "after")]


def test_a_batch_abandoned_by_an_exception_in_the_loop_stores_nothing(store):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t, pytest.raises(RuntimeError), t.batch():
        t.record("annotation", {"text": "a"}, node="x")
        raise RuntimeError("evaluator crashed")
    assert store.count() == 0


# -- inbox mode ----------------------------------------------------------------------------------------


def test_inbox_mode_writes_validated_jsonl_and_leaves_the_log_alone(store):
    with Tracker(store, lineage="packing", actor="ai:worker-1", inbox=True) as t:
        with t.node("w1", parents=["root"]) as n:
            event_id = n.score("fill", 0.8)
        with t.batch():
            t.record("annotation", {"text": "batched"}, node="w1")
    assert isinstance(event_id, str)
    assert store.count() == 0
    (inbox_file,) = store.inbox.glob("*.jsonl")
    lines = [orjson.loads(line) for line in inbox_file.read_bytes().splitlines()]
    assert [line["kind"] for line in lines] == ["node_created", "score", "annotation"]
    assert lines[1]["event_id"] == event_id
    for line in lines:
        again = prepare(Draft(**line))  # each line is a valid event as it stands
        assert again.event_id == line["event_id"]
    assert lines[1]["payload"] == {"metric": "fill", "value": 0.8, "split": "public", "higher_is_better": True}


def test_an_inbox_producer_records_while_another_process_holds_the_database(store):
    """If the inbox path touched DuckDB it would block on the other process's lock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(store.db)!r})
            print("holding", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with Tracker(store, lineage="packing", actor="ai:worker-2", inbox=True) as t:
            for i in range(20):
                t.record("annotation", {"text": f"note {i}"}, node="w2")
        assert holder.poll() is None
    finally:
        holder.communicate("\n", timeout=30)
    (inbox_file,) = store.inbox.glob("*.jsonl")
    assert len(inbox_file.read_bytes().splitlines()) == 20


def test_inbox_mode_needs_an_existing_store(tmp_path):
    from lineage.errors import StoreNotFound

    with pytest.raises(StoreNotFound, match="lineage init"):
        Tracker(tmp_path / "none", lineage="packing", actor="ai:x", inbox=True)


# -- failures while building a node ------------------------------------------------------------------------


def test_an_exception_while_building_a_node_is_recorded_and_re_raised(store):
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t:
        with pytest.raises(ZeroDivisionError), t.node("doomed") as n:
            n.proposal("divide and conquer")
            1 / 0  # noqa: B018
        t.node("next")
    got = events(store)
    assert [(e["node"], e["kind"]) for e in got] == [
        ("doomed", "node_created"), ("doomed", "proposal"), ("doomed", "annotation"), ("next", "node_created"),
    ]
    failure = got[2]
    assert failure["actor"] == "system:lineage"
    assert failure["payload"]["topic"] == "failure"
    assert "ZeroDivisionError" in failure["payload"]["text"]
