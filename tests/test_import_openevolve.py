"""OpenEvolve import against the real samples: expectations come from the raw JSON files."""

from __future__ import annotations

import json
import math
import time

import pytest
from test_import_common import apply_diff, by_node, code_from_snapshot, events, sample

from lineage.importers import import_source
from lineage.store import Store
from lineage.trees import tree_hash

LINEAGE = "evolve_cache_run0"


def _raw_programs(folder):
    """Every program file, parsed by Python's json (which reads -Infinity)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "programs").glob("*.json"))}


def _finite_metrics(metrics):
    return {k: v for k, v in metrics.items()
            if isinstance(v, bool) or (isinstance(v, int | float) and math.isfinite(v))}


def test_evolve_cache_sample(tmp_path):
    src = sample("openevolve", "evolve_cache_run0")
    raw = _raw_programs(src)
    assert all(p["id"] == k for k, p in raw.items())
    store = Store.init(tmp_path / "store")
    start = time.perf_counter()
    summary = import_source(store, "openevolve", src)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"importing {len(raw)} programs took {elapsed:.2f}s"

    created = by_node(events(store, LINEAGE, "node_created"))
    assert set(created) == set(raw) and summary.nodes == len(raw)

    # roots, parents, generations
    roots = {k for k, p in raw.items() if not p["parent_id"]}
    assert {n for n, e in created.items() if not e["payload"]["parents"]} == roots
    for k, p in raw.items():
        e = created[k]["payload"]
        assert e["parents"] == ([p["parent_id"]] if p["parent_id"] else [])
        assert e["generation"] == p["generation"]

    # missing parents: named by a program, absent from the database (OpenEvolve prunes)
    missing = {k: p["parent_id"] for k, p in raw.items() if p["parent_id"] and p["parent_id"] not in raw}
    assert missing, "the sample is known to hold programs whose parent was pruned"
    assert summary.missing_parents == {k: [v] for k, v in missing.items()}
    assert {n for n, e in created.items() if e["payload"].get("parent_missing")} == set(missing)

    # migrants stay separate nodes, marked
    migrants = {k for k, p in raw.items() if (p.get("metadata") or {}).get("migrant")}
    assert len(migrants) == 4
    assert {n for n, e in created.items() if e["payload"].get("migrant")} == migrants

    # actors: seed by a human, migrant copies by the system, the rest by the AI
    for k, p in raw.items():
        kind = created[k]["actor_kind"]
        if k in migrants:
            assert kind == "system"
        elif not p["parent_id"]:
            assert kind == "human"
        else:
            assert kind == "ai"

    # failed evaluations (-Infinity): a failed run keeping the raw value, never a score
    failed = {k for k, p in raw.items() if p["metrics"].get("combined_score") == -math.inf}
    assert len(failed) == 28
    assert {n for n, e in created.items() if e["payload"]["status"] == "failed"} == failed
    runs = by_node(events(store, LINEAGE, "run"))
    assert {n for n, e in runs.items() if e["payload"]["status"] == "failed"} == failed
    assert all(runs[k]["payload"]["raw_value"] == "-Infinity" for k in failed)

    # every finite metric is a score; combined_score is the primary one
    scores = events(store, LINEAGE, "score")
    assert len(scores) == sum(len(_finite_metrics(p["metrics"])) for p in raw.values())
    assert all(math.isfinite(s["payload"]["value"]) for s in scores)
    assert not {s["node"] for s in scores if s["payload"]["metric"] == "combined_score"} & failed
    assert all(s["payload"].get("primary") for s in scores if s["payload"]["metric"] == "combined_score")
    best_raw = max(p["metrics"]["combined_score"] for p in raw.values() if p["metrics"]["combined_score"] != -math.inf)
    best_stored = max(s["payload"]["value"] for s in scores if s["payload"]["metric"] == "combined_score")
    assert best_stored == best_raw

    # the run's chosen best, as a system selection
    info = json.loads((src / "best" / "best_program_info.json").read_text())
    (sel,) = events(store, LINEAGE, "selection")
    assert sel["payload"]["node"] == info["id"] and sel["actor_kind"] == "system"
    assert sel["payload"]["best_program_file"]["same_as_node_code"] is (
        (src / "best" / "best_program.cpp").read_text() == raw[info["id"]]["code"])

    # code: each node's code object is exactly its program's code, and the diff chain checks out
    diffs = by_node(events(store, LINEAGE, "code_diff"))
    assert set(diffs) == set(raw)
    for k, p in raw.items():
        d = diffs[k]["payload"]
        assert store.objects.get(d["code_object"]).decode() == p["code"]
        (path, data), = code_from_snapshot(store, d).items()
        assert data.decode() == p["code"] and path == "program.cpp"
        assert d["result_tree"] == tree_hash({path: p["code"].encode()})
        parent = p["parent_id"]
        if parent in raw:
            assert d["base_tree"] == tree_hash({path: raw[parent]["code"].encode()})
            rebuilt = apply_diff(raw[parent]["code"], store.objects.get(d["diff_object"]).decode(), path)
            assert rebuilt == p["code"]
        elif parent:
            assert d.get("base_unknown") is True and "diff_object" not in d
        else:
            assert apply_diff("", store.objects.get(d["diff_object"]).decode(), path) == p["code"]

    # importing twice adds nothing
    n = store.count()
    again = import_source(store, "openevolve", src)
    assert again.events == 0 and again.skipped == summary.events
    assert store.count() == n


def test_arc_tiny_checkpoint_sample(tmp_path):
    src = sample("openevolve", "arc_tiny", "evaluation_task_0")
    cp = src / "checkpoints" / "checkpoint_100"
    raw = _raw_programs(cp)
    store = Store.init(tmp_path / "store")
    summary = import_source(store, "openevolve", src)
    lineage = "evaluation_task_0"
    assert summary.lineages == [lineage]
    created = by_node(events(store, lineage, "node_created"))
    assert set(created) == set(raw)
    assert {n for n, e in created.items() if not e["payload"]["parents"]} == {k for k, p in raw.items() if not p["parent_id"]}
    assert {n: e["payload"]["generation"] for n, e in created.items()} == {k: p["generation"] for k, p in raw.items()}
    assert summary.missing_parents == {}

    # metrics mix floats, ints and booleans: every one of them is a score on the public split
    scores = [s for s in events(store, lineage, "score") if s["payload"]["split"] == "public"]
    assert len(scores) == sum(len(_finite_metrics(p["metrics"])) for p in raw.values())
    bools = [s for s in scores if isinstance(s["payload"].get("raw_value"), bool)]
    assert bools and all(s["payload"]["value"] == float(s["payload"]["raw_value"]) for s in bools)
    best_raw = max(p["metrics"]["combined_score"] for p in raw.values())
    assert max(s["payload"]["value"] for s in scores if s["payload"]["metric"] == "combined_score") == best_raw

    # the post-evolution evaluation of the best program is held-out
    info = json.loads((src / "best" / "best_program_info.json").read_text())
    post = json.loads((src / "best" / "post_evolution_evaluation_result.json").read_text())["metrics"]
    held = [s for s in events(store, lineage, "score") if s["payload"]["split"] == "heldout"]
    assert {s["node"] for s in held} == {info["id"]}
    assert {s["payload"]["metric"] for s in held} == set(post)

    # both best_program_info.json files (checkpoint and final) are selections of that program
    sels = events(store, lineage, "selection")
    assert len(sels) == 2 and {s["payload"]["node"] for s in sels} == {info["id"]}
    diffs = by_node(events(store, lineage, "code_diff"))
    for k, p in raw.items():
        assert store.objects.get(diffs[k]["payload"]["code_object"]).decode() == p["code"]
        assert list(code_from_snapshot(store, diffs[k]["payload"])) == ["program.py"]

    n = store.count()
    assert import_source(store, "openevolve", src).events == 0
    assert store.count() == n


def test_folder_of_runs_imports_as_several_lineages(tmp_path):
    src = sample("openevolve")
    store = Store.init(tmp_path / "store")
    summary = import_source(store, "openevolve", src, lineage="oe")
    assert sorted(summary.lineages) == ["oe/arc_tiny/evaluation_task_0", "oe/evolve_cache_run0"]


def test_checkout_yields_each_programs_code(tmp_path):
    """Acceptance: `lineage checkout` of an imported node writes exactly that program's code."""
    import click
    from click.testing import CliRunner

    from lineage.cli import cli

    if cli.get_command(click.Context(cli), "checkout") is None:
        pytest.skip("`lineage checkout` (the replay layer) is not installed")
    src = sample("openevolve", "evolve_cache_run0")
    raw = _raw_programs(src)
    store = Store.init(tmp_path / "store")
    import_source(store, "openevolve", src)

    def depth(k):
        d = 0
        while raw[k]["parent_id"] in raw:
            k, d = raw[k]["parent_id"], d + 1
        return d

    root = next(k for k, p in raw.items() if not p["parent_id"])
    deepest = max(raw, key=depth)
    orphan = next(k for k, p in raw.items() if p["parent_id"] and p["parent_id"] not in raw)
    migrant = next(k for k, p in raw.items() if p["metadata"].get("migrant") and p["parent_id"] in raw)
    failed = next(k for k, p in raw.items() if p["metrics"]["combined_score"] == -math.inf)
    for node in dict.fromkeys([root, deepest, orphan, migrant, failed]):
        dest = tmp_path / "co" / node
        res = CliRunner().invoke(cli, ["checkout", node, str(dest), "--store", str(store.root)])
        assert res.exit_code == 0, res.output
        assert (dest / "program.cpp").read_text() == raw[node]["code"], node
