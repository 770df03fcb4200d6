"""AI Scientist import against the real gan_diffusion project: expectations from the raw files."""

from __future__ import annotations

import json
import re

from test_import_common import apply_diff, by_node, code_from_snapshot, events, sample

from lineage.importers import import_source
from lineage.store import Store

LINEAGE = "gan_diffusion"


def _leaves(d, prefix=()):
    out = {}
    for k, v in d.items():
        key = prefix if k == "means" else (*prefix, k)
        if isinstance(v, dict):
            out.update(_leaves(v, key))
        else:
            out["/".join(key)] = v
    return out


def test_gan_diffusion_project(tmp_path):
    src = sample("ai_scientist", "gan_diffusion")
    runs = sorted(int(m.group(1)) for p in src.iterdir() if (m := re.fullmatch(r"run_(\d+)", p.name)) and p.is_dir())
    assert runs == [0, 1, 2, 3, 4, 5]
    infos = {n: json.loads((src / f"run_{n}" / "final_info.json").read_text()) for n in runs}
    codes = {n: (src / f"run_{n}.py").read_text() for n in runs if (src / f"run_{n}.py").exists()}
    ideas = json.loads((src / "ideas.json").read_text())
    seeds = json.loads((src / "seed_ideas.json").read_text())

    store = Store.init(tmp_path / "store")
    summary = import_source(store, "ai-scientist", src)
    assert summary.lineages == [LINEAGE] and not summary.unmapped

    # one node per run, a chain run_0 -> run_1 -> ... ; run_0 is the human baseline
    created = by_node(events(store, LINEAGE, "node_created"))
    assert set(created) == {f"run_{n}" for n in runs}
    assert [n for n, e in created.items() if not e["payload"]["parents"]] == ["run_0"]
    for n in runs[1:]:
        assert created[f"run_{n}"]["payload"]["parents"] == [f"run_{n - 1}"]
    assert created["run_0"]["actor_kind"] == "human"
    assert all(created[f"run_{n}"]["actor_kind"] == "ai" for n in runs[1:])
    assert summary.missing_parents == {}

    # every dataset/metric of final_info.json is a score
    scores = events(store, LINEAGE, "score")
    assert len(scores) == sum(len(_leaves(i)) for i in infos.values())
    for n, info in infos.items():
        got = {s["payload"]["metric"]: s["payload"]["value"] for s in scores if s["node"] == f"run_{n}"}
        assert got == _leaves(info)
    # best eval loss on circle (lower is better) across the runs
    best_raw = min(i["circle"]["means"]["eval_loss"] for i in infos.values())
    circle = [s for s in scores if s["payload"]["metric"] == "circle/eval_loss"]
    assert all(s["payload"]["higher_is_better"] is False for s in circle)
    assert min(s["payload"]["value"] for s in circle) == best_raw
    assert all(r["payload"]["status"] == "ok" for r in events(store, LINEAGE, "run"))

    # code snapshots: each run's code object is its run_N.py; diffs chain run_N-1 -> run_N
    diffs = by_node(events(store, LINEAGE, "code_diff"))
    assert set(diffs) == {f"run_{n}" for n in codes}
    for n, code in codes.items():
        d = diffs[f"run_{n}"]["payload"]
        assert store.objects.get(d["code_object"]).decode() == code
        assert code_from_snapshot(store, d) == {"experiment.py": code.encode()}
        if n - 1 in codes:
            assert apply_diff(codes[n - 1], store.objects.get(d["diff_object"]).decode(), "experiment.py") == code
        else:
            assert d["base_unknown"] is True  # run_0's code (the template) is not in the folder
        assert d["llm_cost"]["dollars"] > 0  # the aider turns that produced this run

    # ideas: every one a proposal; the pursued idea sits on run_1; seed ideas are human
    props = events(store, LINEAGE, "proposal")
    idea_props = [p for p in props if p["payload"].get("Name") is not None]
    assert len(idea_props) == len(ideas) + len(seeds)
    (chosen,) = [p for p in idea_props if p["node"] is not None]
    assert chosen["node"] == "run_1" and chosen["payload"]["Name"] == "gan_diffusion"
    seed_keys = {(s["Name"], s["Title"]) for s in seeds}
    for p in idea_props:
        human = (p["payload"]["Name"], p["payload"]["Title"]) in seed_keys
        assert p["actor_kind"] == ("human" if human else "ai")
    notes = (src / "notes.txt").read_text()
    noted = {int(m) for m in re.findall(r"^## Run (\d+):", notes, re.M)} - {0}
    assert {p["node"] for p in props if p["payload"].get("source") == "notes.txt"} == {f"run_{n}" for n in noted}

    # notes, review, transcript
    (review,) = events(store, LINEAGE, "review")
    raw_review = json.loads((src / "review.txt").read_text())
    assert review["payload"]["verdict"] == ("reject" if raw_review["Decision"] == "Reject" else "approve")
    assert review["payload"]["Overall"] == raw_review["Overall"] and review["node"] == "run_5"
    topics = {e["payload"].get("topic"): e for e in events(store, LINEAGE, "annotation")}
    assert topics["notes"]["payload"]["text"] == notes
    transcript = next(src.glob("*_aider.txt")).read_text()
    assert store.objects.get(topics["transcript"]["payload"]["transcript_object"]).decode() == transcript
    assert topics["task"]["actor_kind"] == "human"

    n = store.count()
    assert import_source(store, "ai-scientist", src).events == 0
    assert store.count() == n


def test_folder_of_projects_imports_as_several_lineages(tmp_path):
    src = sample("ai_scientist")
    store = Store.init(tmp_path / "store")
    summary = import_source(store, "ai-scientist", src, lineage="sci")
    assert summary.lineages == ["sci/gan_diffusion"]
