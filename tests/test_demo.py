"""The bundled demo: a self-improvement loop that really runs, recorded into a real store.

The demo is built once into a temporary store (real DuckDB, real subprocess evaluations);
each test asserts something a user of the demo relies on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lineage.demo import DEMO_LINEAGE, build_demo, demo_trees, eval_command, write_tree
from lineage.store import Store
from lineage.trees import tree_hash
from lineage.verify import verify


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Store, dict]:
    root = tmp_path_factory.mktemp("demo")
    summary = build_demo(root / "store")
    return Store.open(root / "store"), summary


@pytest.fixture(scope="module")
def store(built) -> Store:
    return built[0]


@pytest.fixture(scope="module")
def trees() -> dict[str, dict[str, bytes]]:
    return demo_trees()


def rows(store: Store, sql: str, params: list | None = None) -> list[dict]:
    return store.query_arrow(sql, params).to_pylist()


def payloads(store: Store, kind: str) -> list[dict]:
    """Every event of one kind in the demo lineage, payload decoded, in order."""
    out = []
    for r in rows(store, "SELECT node, actor, actor_node, event_id, payload FROM events "
                         "WHERE lineage = ? AND kind = ? ORDER BY seq", [DEMO_LINEAGE, kind]):
        out.append({**r, **json.loads(r.pop("payload"))})
    return out


def public_scores(store: Store, split: str = "public", metric: str = "efficiency") -> dict[str, float]:
    return {s["node"]: s["value"] for s in payloads(store, "score") if s["split"] == split and s["metric"] == metric}


def parents_of(store: Store) -> dict[str, list[str]]:
    return {n["node"]: n["parents"] for n in payloads(store, "node_created")}


def built_events(store: Store) -> int:
    return rows(store, "SELECT count(*) AS n FROM events")[0]["n"]


def run_recorded(tree: dict[str, bytes], command: list[str], workdir: Path) -> tuple[dict, dict]:
    """Run a recorded command (``python`` -> this interpreter) in a fresh copy of ``tree``;
    return (the metrics on stdout's last line, the metrics in metrics.json)."""
    write_tree(tree, workdir)
    proc = subprocess.run([sys.executable, *command[1:]], cwd=workdir, capture_output=True, text=True,
                          env={"PYTHONHASHSEED": "0"}, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1]), json.loads((workdir / "metrics.json").read_text())


def test_the_loop_spans_thirty_generations_over_two_branches(built, store):
    summary = built[1]
    assert summary["created"] is True
    assert summary["generations"] >= 30
    assert 40 <= summary["nodes"] <= 60
    assert summary["branches"] == ["explore", "main"]
    forks = payloads(store, "branch_created")
    assert [(f["name"], f["from_node"]) for f in forks] == [("explore", "g04-stricter-check")]
    on_explore = rows(store, "SELECT count(DISTINCT node) AS n FROM events WHERE lineage = ? AND branch = 'explore' "
                             "AND kind = 'node_created'", [DEMO_LINEAGE])[0]["n"]
    assert on_explore >= 4


def test_merges_and_crossovers_have_two_parents(store):
    merged = {node: ps for node, ps in parents_of(store).items() if len(ps) == 2}
    assert "g10-merge-restarts" in merged  # main takes the explore branch's restarts
    assert "x06-wider-jitter" in merged["g10-merge-restarts"]
    assert len(merged) >= 2


def test_failed_candidates_stay_in_the_lineage(store):
    failed = [n for n in payloads(store, "node_created") if n.get("status") == "failed"]
    assert len(failed) >= 2
    runs = payloads(store, "run")
    scored = set(public_scores(store))
    for node in failed:
        assert "failed" in node["label"]
        assert any(r["node"] == node["node"] and r["status"] == "failed" and r["exit_code"] != 0 for r in runs)
        assert node["node"] not in scored
    # and a failed candidate still has a parent in the genealogy, like any other
    assert all(n["parents"] for n in failed)


def test_scores_improved_from_the_root_to_the_promoted_best(built, store):
    summary = built[1]
    assert summary["root"]["node"] == "g00-next-fit"
    assert summary["best"]["node"] == "g30-release"
    assert summary["best"]["value"] > summary["root"]["value"] + 0.15
    heldout = public_scores(store, "heldout")
    assert heldout[summary["best"]["node"]] > heldout[summary["root"]["node"]]


def test_the_store_verifies(store):
    report = verify(store)
    assert report.ok, report.findings
    assert report.events == built_events(store)



def test_building_again_adds_nothing(built, store):
    before = built_events(store)
    again = build_demo(store.root)
    assert again["created"] is False
    assert built_events(store) == before
    assert {k: v for k, v in again.items() if k != "created"} == {k: v for k, v in built[1].items() if k != "created"}


def test_recorded_trees_are_the_trees_the_demo_ran(store, trees):
    diffs = {d["node"]: d for d in payloads(store, "code_diff")}
    assert set(diffs) == set(trees)
    for node, diff in diffs.items():
        assert diff["result_tree"] == tree_hash(trees[node]), node


@pytest.mark.parametrize("node", ["g00-next-fit", "g10-merge-restarts", "g13-exact-fit", "g30-release"])
def test_rerunning_the_recorded_command_reproduces_the_scores(store, trees, node, tmp_path):
    runs = [r for r in payloads(store, "run") if r["node"] == node]
    assert {r["command"][3] for r in runs} >= {"public", "heldout"}
    scores = payloads(store, "score")
    for run in runs:
        assert run["command"][0] == "python" and run["status"] == "ok"
        printed, written = run_recorded(trees[node], run["command"], tmp_path / run["command"][3])
        assert printed == written  # the convention: last stdout line == metrics.json
        recorded = {s["metric"]: s["value"] for s in scores
                    if s["node"] == node and s["split"] == run["command"][3]}
        assert {k: float(v) for k, v in printed.items()} == recorded


def test_exactly_one_node_is_non_deterministic_and_it_drifts(store, trees, tmp_path):
    labelled = [n["node"] for n in payloads(store, "node_created") if "non-deterministic" in n["label"]]
    assert labelled == ["x05-random-fit"]
    fills = {run_recorded(trees["x05-random-fit"], eval_command("public"), tmp_path / str(i))[0]["fill"]
             for i in range(3)}
    assert len(fills) > 1
    # it was a dead end: nothing was built on it
    assert not any("x05-random-fit" in ps for ps in parents_of(store).values())


def test_the_involvement_spectrum_runs_from_human_built_to_self_built(store):
    parents = parents_of(store)
    diffs = {d["node"]: d for d in payloads(store, "code_diff")}
    proposals = {p["node"]: p for p in payloads(store, "proposal")}
    human_events = {r["node"] for r in rows(store, "SELECT DISTINCT node FROM events WHERE lineage = ? "
                                                  "AND actor_kind = 'human' AND node IS NOT NULL", [DEMO_LINEAGE])}
    assert diffs["g01-first-fit"]["actor"].startswith("human:")  # L0
    assert diffs["g05-min-bin-slack"]["actor"].startswith("ai:")  # L1: AI implements a human's idea
    assert proposals["g05-min-bin-slack"]["actor"].startswith("human:")
    assert proposals["g09-budget-800"]["actor"].startswith("ai:")  # L2: AI proposes, humans review
    assert "g09-budget-800" in human_events
    self_built = [n for n, d in diffs.items() if d["actor_node"] and d["actor_node"] in parents[n]
                  and n not in human_events]  # L3, built by its own parent
    assert len(self_built) >= 10
    # a run of consecutive self-built generations: recursion depth grows along it
    depth, node = 0, "g29-module-doc"
    while node in self_built:
        depth, node = depth + 1, parents[node][0]
    assert depth >= 10


def test_every_oversight_situation_occurs(store):
    diffs = payloads(store, "code_diff")
    scores = payloads(store, "score")
    parents = parents_of(store)
    builders = {d["node"]: (d["actor"], d["actor_node"]) for d in diffs}

    # evaluator touched: a diff edits evaluate.py (beyond the root adding it)
    touched = {d["node"] for d in diffs if "evaluate.py" in d["paths"] and parents[d["node"]]}
    assert {"g04-stricter-check", "x07-tighter-bound"} <= touched

    # self-evaluation: scored by the very actor that built it
    assert any(builders[s["node"]] == (s["actor"], s["actor_node"]) for s in scores)

    # contamination: a train set with the content of an eval or heldout set
    datasets = payloads(store, "dataset")
    held = {d["content_hash"] for d in datasets if d["role"] in ("eval", "heldout")}
    assert any(d["role"] == "train" and d["content_hash"] in held for d in datasets)

    # unreviewed promotion: promoted as best with no human review
    reviewed = {r["node"] for r in payloads(store, "review") if r["actor"].startswith("human:")}
    promoted = {s["node"] for s in payloads(store, "selection") if s["purpose"] == "best"}
    assert promoted - reviewed

    # held-out gap: public up, heldout down versus the parent
    public, heldout = public_scores(store), public_scores(store, "heldout")
    assert any(public[n] > public[ps[0]] and heldout[n] < heldout[ps[0]]
               for n, ps in parents.items() if ps and n in public and ps[0] in public)

    # suspicious jump: a big relative gain from a diff of a few lines
    lines = {d["node"]: d["lines_added"] + d["lines_removed"] for d in diffs}
    fill = public_scores(store, metric="fill")
    assert any(lines[n] <= 5 and fill[n] > 1.2 * fill[ps[0]]
               for n, ps in parents.items() if ps and n in fill and ps[0] in fill)
