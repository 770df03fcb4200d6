"""Materialize: every node of a recorded loop checks out to exactly the tree the loop had;
a tampered object, a diff that does not apply, or a path that escapes stops it loudly."""

from __future__ import annotations

import hashlib
import os
import random

import orjson
import pytest

from lineage import Tracker
from lineage.store import Store
from lineage.trees import diff_trees, read_tree, tree_hash
from replay.errors import CheckoutError, PatchError, PathEscape, ReplayError
from replay.materialize import MANIFEST_FILE, Materializer, checkout, materialize, write_tree
from replay.patch import apply_diff, parse_diff, safe_path

WORDS = ["alpha", "beta", "gamma", "delta", "return x", "    pass", "", "# note", "x = 1", "tabs\tin", "ünïcödé", "trailing  "]


def _text(rng: random.Random, lines: int, *, crlf: bool = False, final_newline: bool = True) -> bytes:
    end = "\r\n" if crlf else "\n"
    body = end.join(rng.choice(WORDS) + (f" {rng.randint(0, 9)}" if rng.random() < 0.5 else "") for _ in range(lines))
    if lines and final_newline:
        body += end
    return body.encode()


def _mutate(rng: random.Random, tree: dict[str, bytes], gen: int) -> dict[str, bytes]:
    new = dict(tree)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        texts = [p for p, d in new.items() if b"\0" not in d]
        if op < 0.45 and texts:  # edit lines of a text file
            path = rng.choice(texts)
            lines = new[path].decode().split("\n")
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(lines) + 1)
                choice = rng.random()
                if choice < 0.4 and lines:
                    lines[min(i, len(lines) - 1)] = rng.choice(WORDS) + f" g{gen}"
                elif choice < 0.7:
                    lines.insert(i, f"inserted {gen}")
                elif len(lines) > 1:
                    del lines[min(i, len(lines) - 1)]
            new[path] = "\n".join(lines).encode()
        elif op < 0.6:  # add a text file (sometimes nested, without final newline, empty, CRLF)
            path = f"{rng.choice(['', 'src/', 'src/pkg/', 'docs/'])}f{gen}_{rng.randint(0, 99)}.txt"
            new[path] = _text(rng, rng.choice([0, 1, 5, 12]), crlf=rng.random() < 0.2, final_newline=rng.random() < 0.7)
        elif op < 0.72 and len(new) > 2:  # delete a file
            del new[rng.choice(sorted(new))]
        elif op < 0.85:  # add or change a binary file
            path = rng.choice(["model.bin", "assets/logo.png", f"blob{gen % 3}.dat"])
            new[path] = bytes([0, gen % 256]) + os.urandom(rng.randint(0, 40))
        elif op < 0.92:  # empty a text file, or fill an empty one
            path = rng.choice(texts) if texts else "empty.txt"
            new[path] = b"" if new.get(path) else b"now filled\n"
        else:  # drop the final newline of a file, or add one
            if texts:
                path = rng.choice(texts)
                data = new[path]
                new[path] = data[:-1] if data.endswith(b"\n") else data + b"\n"
    return new


def record_loop(store: Store, *, nodes: int = 60, seed: int = 7) -> dict[str, dict[str, bytes]]:
    """A loop with varied trees: additions, deletions, binaries, CRLF, no final newline,
    empty files, merges of two parents, nodes without a diff, and a few snapshots."""
    rng = random.Random(seed)
    trees: dict[str, dict[str, bytes]] = {}
    with Tracker(store, lineage="loop", actor="ai:coder") as t:
        root_tree = {"main.py": b"def f(x):\n    return x\n", "README": b"seed", "data/table.csv": b"a,b\n1,2\n"}
        with t.node("n0", label="seed", actor="human:ada") as n:
            n.code_diff(before={}, after=root_tree)
        trees["n0"] = root_tree
        for i in range(1, nodes):
            names = list(trees)
            first = rng.choice(names[-8:])
            parents = [first]
            if rng.random() < 0.15 and len(names) > 2:
                second = rng.choice([x for x in names if x != first])
                parents.append(second)
            node = f"n{i}"
            with t.node(node, parents=parents) as n:
                if rng.random() < 0.1:  # no code change at all
                    trees[node] = trees[first]
                    continue
                new = _mutate(rng, trees[first], i)
                if len(parents) == 2:  # a merge takes some files of the second parent
                    for path, data in trees[parents[1]].items():
                        if rng.random() < 0.3 and not any(path.startswith(p + "/") or p.startswith(path + "/") for p in new if p != path):
                            new[path] = data
                n.code_diff(before=trees[first], after=new, snapshot=rng.random() < 0.08)
                trees[node] = new
    return trees


def test_every_node_of_a_recorded_loop_checks_out_to_the_loops_own_tree(store, tmp_path):
    trees = record_loop(store)
    mat = Materializer(store, "loop")
    merges = [n for n, rec in mat.index.nodes.items() if len(rec.parents) == 2]
    snapshots = [n for n in trees if any(d.payload.get("snapshot_object") for d in mat.index.events(n, "code_diff"))]
    binaries = {p for t in trees.values() for p, d in t.items() if b"\0" in d}
    assert merges and snapshots and binaries, "the generated loop should exercise merges, snapshots and binaries"
    for node, expected in trees.items():
        dest = tmp_path / "out" / node
        co = checkout(store, node, dest, materializer=mat)
        assert read_tree(dest) == expected, node
        assert co.tree_hash == tree_hash(expected)
        manifest = orjson.loads((dest / MANIFEST_FILE).read_bytes())
        assert manifest["node"] == node and manifest["tree"] == tree_hash(expected)
        assert [s["seq"] for s in manifest["chain"]] == sorted(s["seq"] for s in manifest["chain"])


def test_a_fresh_materializer_rebuilds_a_deep_node_without_the_cache(store):
    trees = record_loop(store, nodes=40, seed=3)
    for node in ("n39", "n20"):
        assert materialize(store, node) == trees[node]


def test_checkout_writes_a_manifest_of_datasets_and_checkpoints(store, tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,2\n")
    ckpt = tmp_path / "weights.bin"
    ckpt.write_bytes(b"\1\2\3")
    with Tracker(store, lineage="L", actor="ai:a") as t, t.node("n") as n:
        n.code_diff(before={}, after={"eval.csv": b"e\n", "run.py": b"print(1)\n"})
        n.dataset("train", role="train", path=data)
        n.dataset("eval", role="eval", uri="eval.csv", content_hash=hashlib.sha256(b"e\n").hexdigest())
        n.dataset("remote", role="heldout", uri="s3://bucket/heldout.parquet")
        n.checkpoint(ckpt, step=10)
    ckpt.write_bytes(b"changed")  # the checkpoint on disk no longer matches its recorded hash
    co = checkout(store, "n", tmp_path / "co")
    manifest = orjson.loads((tmp_path / "co" / MANIFEST_FILE).read_bytes())
    by_name = {d["name"]: d for d in manifest["datasets"]}
    assert by_name["train"]["present"] and by_name["train"]["intact"] is True
    assert by_name["eval"]["location"] == "tree:eval.csv" and by_name["eval"]["intact"] is True
    assert by_name["remote"]["present"] is False
    (cp,) = manifest["checkpoints"]
    assert cp["step"] == 10 and cp["present"] and cp["intact"] is False
    assert not co.artifacts_ok


def _first_parent_chain(mat: Materializer, node: str) -> list[str]:
    out, cur = [], node
    while cur:
        out.append(cur)
        if any(d.payload.get("snapshot_object") for d in mat.index.events(cur, "code_diff")):
            break
        parents = mat.index.node(cur).parents
        cur = parents[0] if parents else None
    return out


def test_a_tampered_diff_object_makes_checkout_fail_naming_node_and_event(store, tmp_path):
    trees = record_loop(store, nodes=30, seed=1)
    mat = Materializer(store, "loop")
    # a node deep in the loop, and a node with a diff on its first-parent chain
    deep = max(trees, key=lambda n: len(_first_parent_chain(mat, n)))
    chain = _first_parent_chain(mat, deep)
    victim = next(n for n in chain[1:] if mat.index.events(n, "code_diff")
                  and not any(d.payload.get("snapshot_object") for d in mat.index.events(n, "code_diff")))
    event = mat.index.events(victim, "code_diff")[0]
    path = store.objects.path(event.payload["diff_object"])
    path.write_bytes(path.read_bytes() + b" ")
    for node in (victim, deep):  # the error names the node whose event is bad, not the one asked for
        with pytest.raises(CheckoutError) as err:
            checkout(store, node, tmp_path / node)
        msg = str(err.value)
        assert f"node {victim}, event seq {event.seq} " in msg and "modified on disk" in msg, msg
        assert not (tmp_path / node).exists(), "nothing is written when the rebuild fails"


def test_a_tampered_binary_or_snapshot_object_fails_loudly(store, tmp_path):
    with Tracker(store, lineage="L", actor="ai:a") as t, t.node("a") as n:
        n.code_diff(before={}, after={"w.bin": b"\0weights", "x.py": b"x\n"}, snapshot=True)
    co = checkout(store, "a", tmp_path / "ok")
    assert co.files == 2
    blob = store.objects.path(hashlib.sha256(b"\0weights").hexdigest())
    blob.write_bytes(b"\0WEIGHTS")
    with pytest.raises(CheckoutError, match=r"node a, event seq 2 .*snapshot file w.bin.*modified on disk"):
        checkout(store, "a", tmp_path / "bad")


def test_a_missing_object_fails_loudly(store, tmp_path):
    with Tracker(store, lineage="L", actor="ai:a") as t, t.node("a") as n:
        ack = n.code_diff(before={}, after={"x.py": b"x\n"})
    diff = orjson.loads(store.query_arrow("SELECT payload::VARCHAR AS p FROM events WHERE seq = ?", [ack.seq]).column("p")[0].as_py())
    store.objects.path(diff["diff_object"]).unlink()
    with pytest.raises(CheckoutError, match=rf"node a, event seq {ack.seq} .*diff: object .* is not in"):
        checkout(store, "a", tmp_path / "x")


def test_a_diff_that_does_not_match_its_first_parent_stops_with_the_node_and_event(store, tmp_path):
    with Tracker(store, lineage="L", actor="ai:a") as t:
        with t.node("p1") as n:
            n.code_diff(before={}, after={"a.txt": b"one\n"})
        with t.node("p2") as n:
            n.code_diff(before={}, after={"a.txt": b"two\n"})
        with t.node("m", parents=["p1", "p2"]) as n:
            ack = n.code_diff(before={"a.txt": b"two\n"}, after={"a.txt": b"merged\n"})  # against the 2nd parent
    with pytest.raises(CheckoutError, match=rf"node m, event seq {ack.seq} .*base tree .*first parent p1"):
        checkout(store, "m", tmp_path / "x")


def test_a_text_diff_whose_context_does_not_match_is_not_fuzzed(store, tmp_path):
    with Tracker(store, lineage="L", actor="ai:a") as t:
        with t.node("a") as n:
            n.code_diff(before={}, after={"a.txt": b"1\n2\n3\n4\n"})
        with t.node("b", parents=["a"]) as n:
            # a hand-written diff whose context is one line off (patch would apply it with an offset)
            ack = n.code_diff("--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n 2\n-3\n+three\n")
    with pytest.raises(CheckoutError, match=rf"node b, event seq {ack.seq} .*does not apply at line 1: expected '2\\n', found '1\\n'"):
        checkout(store, "b", tmp_path / "x")


@pytest.mark.parametrize("bad", ["../evil.txt", "a/../../evil.txt", "/etc/evil", "a//b", "./a", "C:/x", "a\\..\\b"])
def test_diff_paths_that_escape_are_refused(store, tmp_path, bad):
    with pytest.raises(PathEscape):
        safe_path(bad)
    with Tracker(store, lineage="L", actor="ai:a") as t:
        with t.node("a") as n:
            n.code_diff(before={}, after={"ok.txt": b"ok\n"})
        with t.node("b", parents=["a"]) as n:
            ack = n.code_diff(f"--- /dev/null\n+++ b/{bad}\n@@ -0,0 +1 @@\n+pwned\n")
    with pytest.raises(CheckoutError, match=rf"node b, event seq {ack.seq} .*refused path"):
        checkout(store, "b", tmp_path / "x")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "x").exists()


def test_a_binary_path_that_escapes_is_refused(store, tmp_path):
    evil = store.objects.put(b"\0pwned")
    with Tracker(store, lineage="L", actor="ai:a") as t, t.node("a") as n:
        ack = n.record("code_diff", {"files": [{"path": "../evil.bin", "change": "binary", "object": evil}]})
    with pytest.raises(CheckoutError, match=rf"node a, event seq {ack.seq} .*'\.\.' escapes"):
        checkout(store, "a", tmp_path / "x")


def test_a_symlink_in_the_destination_pointing_outside_is_refused(store, tmp_path):
    with Tracker(store, lineage="L", actor="ai:a") as t, t.node("a") as n:
        n.code_diff(before={}, after={"src/app.py": b"print(1)\n", "config.txt": b"c\n"})
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "src").symlink_to(outside, target_is_directory=True)
    with pytest.raises(CheckoutError, match=r"'src' .* is a symlink .*outside the target directory"):
        checkout(store, "a", dest, force=True)
    assert list(outside.iterdir()) == []
    (dest / "src").unlink()
    (dest / "config.txt").symlink_to(outside / "stolen.txt")
    with pytest.raises(CheckoutError, match=r"'config.txt' .* is a symlink"):
        checkout(store, "a", dest, force=True)
    assert not (outside / "stolen.txt").exists()


def test_checkout_refuses_a_non_empty_directory_unless_forced(store, tmp_path):
    with Tracker(store, lineage="L", actor="ai:a") as t, t.node("a") as n:
        n.code_diff(before={}, after={"a.txt": b"new\n"})
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "a.txt").write_text("old\n")
    with pytest.raises(ReplayError, match="not empty"):
        checkout(store, "a", dest)
    checkout(store, "a", dest, force=True)
    assert (dest / "a.txt").read_text() == "new\n"


def test_the_manifest_directory_cannot_be_claimed_by_the_tree(tmp_path):
    with pytest.raises(PathEscape):
        write_tree({"a": b"1", "a/b": b"2"}, tmp_path / "x")


def test_checkout_as_of_an_earlier_seq_sees_only_the_nodes_then(store, tmp_path):
    with Tracker(store, lineage="L", actor="ai:a") as t:
        with t.node("a") as n:
            ack = n.code_diff(before={}, after={"a.txt": b"1\n"})
        with t.node("b", parents=["a"]) as n:
            n.code_diff(before={"a.txt": b"1\n"}, after={"a.txt": b"2\n"})
    with pytest.raises(ReplayError, match="as of seq"):
        checkout(store, "b", tmp_path / "x", max_seq=ack.seq)
    co = checkout(store, "a", tmp_path / "y", max_seq=ack.seq)
    assert co.files == 1


def test_no_newline_at_end_of_file_and_empty_files_round_trip_through_the_applier():
    cases = [
        ({"a": b"x\ny\nz"}, {"a": b"x\nY\nz"}),
        ({"a": b"x\ny\nz"}, {"a": b"x\ny\nz\n"}),
        ({"a": b"x\ny\nz\n"}, {"a": b"x\ny\nz"}),
        ({"a": b"x"}, {"a": b""}),
        ({"a": b""}, {"a": b"x"}),
        ({}, {"a": b""}),
        ({"a": b""}, {}),
        ({"a": b"1\r\n2\r\n"}, {"a": b"1\r\n3\r\n"}),
        ({"a": b"".join(b"%d\n" % i for i in range(40))}, {"a": b"".join(b"%d\n" % i for i in range(40) if i % 7)}),
    ]
    for before, after in cases:
        diff, _ = diff_trees(before, after)
        changes, binary = apply_diff(before, parse_diff(diff))
        result = {k: v for k, v in ({**before, **changes}).items() if v is not None}
        assert result == after and binary == [], (before, after, diff)


def test_the_applier_refuses_added_files_that_exist_and_deletions_that_leave_lines():
    with pytest.raises(PatchError, match="already exists"):
        apply_diff({"a": b"x\n"}, parse_diff("--- /dev/null\n+++ b/a\n@@ -0,0 +1 @@\n+x\n"))
    with pytest.raises(PatchError, match="would remain"):
        apply_diff({"a": b"x\ny\n"}, parse_diff("--- a/a\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"))


def test_git_renames_apply(tmp_path):
    diff = ("diff --git a/old.py b/new.py\nsimilarity index 80%\nrename from old.py\nrename to new.py\n"
            "--- a/old.py\n+++ b/new.py\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n")
    changes, _ = apply_diff({"old.py": b"a\nb\n"}, parse_diff(diff))
    assert changes == {"old.py": None, "new.py": b"a\nc\n"}


def test_text_with_form_feeds_or_lone_carriage_returns_round_trips(store, tmp_path):
    with Tracker(store, lineage="L", actor="ai:a") as t:
        with t.node("a") as n:
            n.code_diff(before={}, after={"a.txt": b"x\x0cy\n"})
        with t.node("b", parents=["a"]) as n:
            n.code_diff(before={"a.txt": b"x\x0cy\n"}, after={"a.txt": b"x\x0cz\n"})
    assert materialize(store, "b") == {"a.txt": b"x\x0cz\n"}


def test_a_retracted_diff_is_skipped_and_its_correction_applies(store, tmp_path):
    with Tracker(store, lineage="L", actor="ai:a") as t, t.node("a") as n:
        wrong = n.code_diff(before={}, after={"x.py": b"wrong\n"})
        n.record("retraction", {"event_id": wrong.event_id, "reason": "recorded the wrong tree"}, actor="human:ada")
        n.code_diff(before={}, after={"x.py": b"right\n"})
    assert materialize(store, "a") == {"x.py": b"right\n"}


def test_a_merge_diffed_against_its_second_parent_names_it_as_base_node(store):
    with Tracker(store, lineage="L", actor="ai:a") as t:
        with t.node("p1") as n:
            n.code_diff(before={}, after={"a.txt": b"one\n"})
        with t.node("p2") as n:
            n.code_diff(before={}, after={"a.txt": b"two\n"})
        with t.node("m", parents=["p1", "p2"]) as n:
            n.code_diff(before={"a.txt": b"two\n"}, after={"a.txt": b"two\n", "b.txt": b"merged\n"}, base_node="p2")
    assert materialize(store, "m") == {"a.txt": b"two\n", "b.txt": b"merged\n"}
