"""Darwin Gödel Machine import against a hand-written output_dgm run (tests/fixtures/dgm):
expectations from the raw files."""

from __future__ import annotations

import json

from test_import_common import FIXTURES, by_node, events

from lineage.importers import import_source
from lineage.store import Store

SRC = FIXTURES / "dgm" / "20250601120000_000000"
LINEAGE = SRC.name


def _generations():
    text, dec, i, out = (SRC / "dgm_metadata.jsonl").read_text(), json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.append(obj)


def test_run_folder(tmp_path):
    agents = {d.name: json.loads((d / "metadata.json").read_text()) for d in SRC.iterdir() if (d / "metadata.json").exists()}
    gens = _generations()
    assert len(gens) == 2  # pretty-printed records, one after another
    archive = set(gens[-1]["archive"])
    children = {c for g in gens for c in g["children"]}

    store = Store.init(tmp_path / "store")
    summary = import_source(store, "dgm", SRC)
    assert summary.lineages == [LINEAGE] and not summary.unmapped and summary.missing_parents == {}

    created = by_node(events(store, LINEAGE, "node_created"))
    assert set(created) == set(agents)
    assert [n for n, e in created.items() if not e["payload"]["parents"]] == ["initial"]
    for n, m in agents.items():
        e = created[n]
        if n == "initial":
            assert e["actor_kind"] == "human" and e["actor_node"] is None
        else:
            # the parent agent rewrote itself into this child: self-built
            assert e["payload"]["parents"] == [m["parent_commit"]]
            assert e["actor_kind"] == "ai" and e["actor_node"] == m["parent_commit"]
        want = "accepted" if n in archive or n == "initial" else "rejected" if n in children else "candidate"
        assert e["payload"]["status"] == want
    assert {n for n, e in created.items() if e["payload"]["status"] == "rejected"} == children - archive

    diffs = by_node(events(store, LINEAGE, "code_diff"))
    for n, d in diffs.items():
        patch = (SRC / n / "model_patch.diff").read_text()
        assert store.objects.get(d["payload"]["diff_object"]).decode() == patch if patch.strip() else d["payload"]["empty_patch"]
        assert d["actor_node"] == agents[n]["parent_commit"]
    lines = {n: d["payload"].get("lines_added", 0) for n, d in diffs.items()}
    for n, added in lines.items():
        patch = (SRC / n / "model_patch.diff").read_text().splitlines()
        assert added == sum(1 for ln in patch if ln.startswith("+") and not ln.startswith("+++"))

    scores = by_node(events(store, LINEAGE, "score"))
    accs = {n: m["overall_performance"]["accuracy_score"] for n, m in agents.items()
            if m.get("overall_performance") and "accuracy_score" in m["overall_performance"]}
    assert {n: s["payload"]["value"] for n, s in scores.items()} == accs
    assert max(scores.values(), key=lambda s: s["payload"]["value"])["node"] == max(accs, key=accs.get)
    runs = by_node(events(store, LINEAGE, "run"))
    assert {n for n, r in runs.items() if r["payload"]["status"] == "failed"} == {
        n for n, m in agents.items() if not m.get("overall_performance")}

    sels = events(store, LINEAGE, "selection")
    parents = [(s["payload"]["node"], s["payload"]["entry"]) for s in sels if s["payload"]["purpose"] == "parent"]
    assert parents == [tuple(e) for g in gens for e in g["selfimprove_entries"]]
    promoted = [s["payload"]["node"] for s in sels if s["payload"]["purpose"] == "promote"]
    assert sorted(promoted) == sorted(archive - {"initial"})

    n = store.count()
    assert import_source(store, "dgm", SRC).events == 0
    assert store.count() == n


def test_output_dgm_folder_imports_each_run(tmp_path):
    store = Store.init(tmp_path / "store")
    summary = import_source(store, "dgm", FIXTURES / "dgm", lineage="dgm")
    assert summary.lineages == [f"dgm/{LINEAGE}"]
