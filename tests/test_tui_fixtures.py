"""Stores the terminal UI tests run on (helpers and fixtures; no tests of its own).

``small_store``: a small lineage recorded with the Tracker, with fixed times and fixed
content, so snapshots are the same on every machine. It has what the UI must show: a
human root, AI successors, a run of only children, a crossover (two parents), a branch,
a node whose parent was pruned, public and held-out scores, a retracted score, a diff that
edits the tests, and a second lineage.

``demo_store``: the bundled demo (``lineage.demo.build_demo``), built once per session;
tests that write to a store use ``demo_copy``.
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta

import pytest

from lineage.store import Store
from lineage.tracker import Tracker

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


async def settle(pilot, rounds: int = 6) -> None:
    """Let the app come up, its workers finish and their messages land.

    In order: the first screen (read in a thread while Textual starts: on a busy machine
    that takes longer than any fixed pause), the lineage-wide facts (best node, signal
    marks: they start on a timer once a lineage is open), then the workers' loads, which
    can chain (roots, then a root's children)."""
    app = pilot.app
    deadline = time.monotonic() + 10
    await pilot.pause(0.05)
    while not getattr(app, "ready", True) and time.monotonic() < deadline:
        await pilot.pause(0.05)
    main = getattr(app, "_main", None)
    while main is not None and main.extras_pending and time.monotonic() < deadline:
        await pilot.pause(0.05)
    for _ in range(rounds):
        await app.workers.wait_for_complete()
        await pilot.pause(0.05)
        if not any(w.is_running for w in app.workers):
            await pilot.pause(0.05)
            if not any(w.is_running for w in app.workers):
                return

SOLVER = "def solve(xs):\n    return sorted(xs)\n"
TESTS = "from solver import solve\n\n\ndef test_sorted():\n    assert solve([2, 1]) == [1, 2]\n"


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self, minutes: int = 1) -> datetime:
        self.t += timedelta(minutes=minutes)
        return self.t


def build_small_store(path) -> Store:
    store = Store.init(path)
    clock = Clock()
    with Tracker(store, lineage="evo", actor="ai:coder") as t:
        rec = t.record

        def node(node_id, parents, label, actor, branch=None):
            rec("node_created", {"parents": parents, "label": label}, node=node_id, actor=actor,
                occurred_at=clock(), branch=branch)

        def diff(node_id, before, after, actor, branch=None):
            from lineage.trees import diff_trees

            text, files = diff_trees(before, after)
            digest = store.objects.put(text)
            rec("code_diff", {"diff_object": digest, "files": files, "paths": [f["path"] for f in files],
                              "lines_added": sum(f["lines_added"] for f in files),
                              "lines_removed": sum(f["lines_removed"] for f in files)},
                node=node_id, actor=actor, occurred_at=clock(), branch=branch)

        def score(node_id, value, split="public", actor="system:grader", branch=None):
            return rec("score", {"metric": "acc", "value": value, "split": split, "higher_is_better": True},
                       node=node_id, actor=actor, occurred_at=clock(), branch=branch)

        def run(node_id, branch=None):
            rec("run", {"command": ["python", "-m", "pytest"], "status": "ok", "duration_s": 1.5, "seed": 0},
                node=node_id, actor="system:runner", occurred_at=clock(), branch=branch)

        base = {"solver.py": SOLVER.encode()}
        v1 = {**base, "solver.py": SOLVER.replace("sorted(xs)", "sorted(xs, key=abs)").encode()}
        v2 = {**v1, "test_solver.py": TESTS.encode()}

        node("root", [], "seed program", "human:ada")
        rec("proposal", {"idea": "start from the library sort"}, node="root", actor="human:ada", occurred_at=clock())
        diff("root", {}, base, "human:ada")
        data = store.objects.put("1,2,3\n4,5,6\n")
        rec("dataset", {"name": "train-a", "role": "train", "uri": "data/train.csv", "content_hash": data,
                        "rows": 2, "bytes": 12}, node="root", actor="human:ada", occurred_at=clock())
        run("root")
        score("root", 0.50)
        score("root", 0.48, split="heldout")
        rec("review", {"verdict": "approve", "text": "good start"}, node="root", actor="human:bob", occurred_at=clock())

        node("n1", ["root"], "sort by magnitude", "ai:coder")
        rec("proposal", {"idea": "sort by absolute value"}, node="n1", actor="ai:coder", occurred_at=clock())
        diff("n1", base, v1, "ai:coder")
        run("n1")
        score("n1", 0.61)
        score("n1", 0.55, split="heldout")

        node("n2", ["n1"], "add a test", "ai:coder")
        diff("n2", v1, v2, "ai:coder")
        run("n2")
        score("n2", 0.64)
        score("n2", 0.52, split="heldout")
        rec("dataset", {"name": "eval-a", "role": "eval", "uri": "data/eval.csv", "content_hash": data, "rows": 2},
            node="n2", actor="ai:coder", occurred_at=clock())

        node("n3", ["n2"], "cache results", "ai:coder")
        run("n3")
        bad = score("n3", 0.99)
        rec("retraction", {"event_id": bad.event_id, "reason": "scored on the training set"}, node="n3",
            actor="human:ada", occurred_at=clock())
        score("n3", 0.66)

        node("n4", ["n1"], "try insertion sort", "ai:coder")
        score("n4", 0.58)
        node("n5", ["n3", "n4"], "crossover of n3 and n4", "ai:coder")
        score("n5", 0.71, actor="ai:coder")
        rec("selection", {"node": "n5", "purpose": "best", "reason": "best acc so far"}, node="n5",
            actor="system:loop", occurred_at=clock())

        explore = t.branch_from("n1", "explore", actor="human:ada")
        explore.record("node_created", {"parents": ["n1"], "label": "explore: radix sort"}, node="x1",
                       actor="human:ada", occurred_at=clock(), branch="explore")
        explore.record("score", {"metric": "acc", "value": 0.69, "split": "public", "higher_is_better": True},
                       node="x1", actor="system:grader", occurred_at=clock(), branch="explore")

        node("orphan", ["pruned-7"], "parent was pruned", "ai:coder")
        score("orphan", 0.40)

    with Tracker(store, lineage="tiny", actor="human:cy") as t:
        t.record("node_created", {"parents": [], "label": "only node"}, node="solo", occurred_at=clock())
        t.record("score", {"metric": "loss", "value": 1.25, "split": "public", "higher_is_better": False},
                 node="solo", actor="system:grader", occurred_at=clock())
    return store


@pytest.fixture(scope="session")
def small_store_master(tmp_path_factory):
    return build_small_store(tmp_path_factory.mktemp("small") / "store")


@pytest.fixture
def small_store(small_store_master, tmp_path) -> Store:
    """A fresh copy of the small store for one test (tests may write to it)."""
    dest = tmp_path / "small"
    shutil.copytree(small_store_master.root, dest)
    return Store(dest)


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Store:
    from lineage.demo import build_demo

    path = tmp_path_factory.mktemp("demo") / "store"
    build_demo(path)
    store = Store(path)
    from lineage.service import LineageService

    LineageService(store).refresh_index()
    return store


@pytest.fixture
def demo_copy(demo_store, tmp_path) -> Store:
    dest = tmp_path / "demo"
    shutil.copytree(demo_store.root, dest)
    return Store(dest)
