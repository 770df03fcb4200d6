"""ADAS import against the real ARC archive: expectations from the raw JSON."""

from __future__ import annotations

import json
import re

from test_import_common import by_node, code_from_snapshot, events, sample

from lineage.importers import import_source
from lineage.store import Store

LINEAGE = "arc_gpt3.5_results"


def _median(text: str) -> float:
    return float(re.search(r"Median:\s*([\d.]+)%", text).group(1))


def test_arc_archive(tmp_path):
    src = sample("adas", "arc_gpt3.5_results.json")
    raw = json.loads(src.read_text())
    store = Store.init(tmp_path / "store")
    summary = import_source(store, "adas", src)
    assert summary.lineages == [LINEAGE] and not summary.unmapped and not summary.warnings

    created = events(store, LINEAGE, "node_created")
    assert len(created) == len(raw) == summary.nodes
    # archive order is kept; node ids carry the index and the name
    assert [e["payload"]["archive_index"] for e in created] == list(range(len(raw)))
    assert [e["payload"]["label"] for e in created] == [a["name"] for a in raw]
    # no parent links are invented: every agent is a root ...
    assert all(e["payload"]["parents"] == [] for e in created)
    assert summary.missing_parents == {}
    # ... but each generated agent records the archive it was conditioned on
    ids = [e["node"] for e in created]
    for i, (e, a) in enumerate(zip(created, raw, strict=True)):
        seed = a["generation"] == "initial"
        assert e["payload"]["source_generation"] == a["generation"]
        assert e["actor_kind"] == ("human" if seed else "ai")
        assert e["payload"]["conditioned_on"] == ([] if seed else ids[:i])

    # fitness median on the public (validation) split, test_fitness on heldout
    scores = events(store, LINEAGE, "score")
    for split, field in (("public", "fitness"), ("heldout", "test_fitness")):
        got = {s["node"]: s["payload"]["value"] for s in scores if s["payload"]["split"] == split}
        assert got == {ids[i]: _median(a[field]) for i, a in enumerate(raw)}
        assert max(got.values()) == max(_median(a[field]) for a in raw)
    best = max(range(len(raw)), key=lambda i: _median(raw[i]["fitness"]))
    assert max(scores, key=lambda s: (s["payload"]["split"] == "public", s["payload"]["value"]))["node"] == ids[best]

    # thoughts are proposals, code is the node's tree
    props = by_node(events(store, LINEAGE, "proposal"))
    diffs = by_node(events(store, LINEAGE, "code_diff"))
    for i, a in enumerate(raw):
        assert props[ids[i]]["payload"]["idea"] == a["thought"]
        assert code_from_snapshot(store, diffs[ids[i]]["payload"]) == {"agent.py": a["code"].encode()}
    runs = by_node(events(store, LINEAGE, "run"))
    assert all(runs[ids[i]]["payload"]["fitness"] == a["fitness"] for i, a in enumerate(raw))

    n = store.count()
    assert import_source(store, "adas", src).events == 0
    assert store.count() == n


def test_unparseable_fitness_is_kept_and_reported(tmp_path):
    f = tmp_path / "archive.json"
    f.write_text(json.dumps([
        {"thought": "t", "name": "A", "code": "def forward(self, x):\n    return x\n", "generation": "initial",
         "fitness": "not measured", "test_fitness": "95% Bootstrap Confidence Interval: (1.0%, 3.0%), Median: 2.0%"},
        "junk",
    ]))
    store = Store.init(tmp_path / "store")
    summary = import_source(store, "adas", f)
    assert any("not measured" in w for w in summary.warnings)
    assert [u.source for u in summary.unmapped] == ["archive.json[1]"]
    (run,) = events(store, "archive", "run")
    assert run["payload"]["fitness"] == "not measured"
    (score,) = events(store, "archive", "score")
    assert score["payload"]["split"] == "heldout" and score["payload"]["value"] == 2.0
