"""AIDE import against a hand-written journal.json (tests/fixtures/aide): expectations from
the raw journal."""

from __future__ import annotations

import json
import math

from test_import_common import FIXTURES, apply_diff, by_node, events

from lineage.importers import import_source
from lineage.store import Store

SRC = FIXTURES / "aide" / "house_prices"
LINEAGE = "house_prices"


def test_journal(tmp_path):
    journal = json.loads((SRC / "journal.json").read_text())
    nodes = {n["id"]: n for n in journal["nodes"]}
    n2p = journal["node2parent"]
    store = Store.init(tmp_path / "store")
    summary = import_source(store, "aide", SRC)
    assert summary.lineages == [LINEAGE] and not summary.unmapped

    created = by_node(events(store, LINEAGE, "node_created"))
    assert set(created) == set(nodes)
    assert {n: e["payload"]["parents"] for n, e in created.items()} == {
        n: ([n2p[n]] if n in n2p else []) for n in nodes}
    assert {n for n, e in created.items() if not e["payload"]["parents"]} == set(nodes) - set(n2p)
    missing = {c: [p] for c, p in n2p.items() if p not in nodes}
    assert summary.missing_parents == missing and missing
    # AIDE drafts its own roots: every node is the agent's, named after the config's model
    assert {e["actor"] for e in created.values()} == {"ai:gpt-4o-2024-08-06"}
    # buggy nodes are kept and marked
    buggy = {n for n, v in nodes.items() if v["is_buggy"]}
    assert {n for n, e in created.items() if e["payload"]["status"] == "failed"} == buggy
    assert all(created[n]["payload"]["is_buggy"] is True for n in buggy)
    stages = {n: e["payload"]["stage"] for n, e in created.items()}
    for n in nodes:
        p = n2p.get(n)
        assert stages[n] == ("draft" if p is None else "debug" if nodes.get(p, {}).get("is_buggy") else "improve")

    # scores: finite metric values only, minimised here (maximize: false)
    scores = by_node(events(store, LINEAGE, "score"))
    finite = {n: v["metric"]["value"] for n, v in nodes.items()
              if isinstance(v["metric"]["value"], int | float) and math.isfinite(v["metric"]["value"])}
    assert {n: s["payload"]["value"] for n, s in scores.items()} == finite
    assert all(s["payload"]["higher_is_better"] is False for s in scores.values())
    best = min(finite, key=finite.get)
    assert min(scores.values(), key=lambda s: s["payload"]["value"])["node"] == best

    # executions: timeout, exception, ok
    runs = by_node(events(store, LINEAGE, "run"))
    for n, v in nodes.items():
        exc = v["exc_type"]
        want = "ok" if not exc else "timeout" if exc == "TimeoutError" else "failed"
        assert runs[n]["payload"]["status"] == want
        assert runs[n]["payload"]["term_out"] == "".join(v["_term_out"])
    # the agent's analysis is its own review
    reviews = by_node(events(store, LINEAGE, "review"))
    assert {n: r["payload"]["verdict"] for n, r in reviews.items()} == {
        n: "reject" if v["is_buggy"] else "approve" for n, v in nodes.items()}
    assert {r["actor"] for r in reviews.values()} == {"ai:gpt-4o-2024-08-06"}

    # plans are proposals; code diffs rebuild each node from its parent
    props = by_node(events(store, LINEAGE, "proposal"))
    diffs = by_node(events(store, LINEAGE, "code_diff"))
    for n, v in nodes.items():
        assert props[n]["payload"]["idea"] == v["plan"]
        d = diffs[n]["payload"]
        assert store.objects.get(d["code_object"]).decode() == v["code"]
        p = n2p.get(n)
        if p in nodes:
            assert apply_diff(nodes[p]["code"], store.objects.get(d["diff_object"]).decode(), "runfile.py") == v["code"]
        elif p is None:
            assert apply_diff("", store.objects.get(d["diff_object"]).decode(), "runfile.py") == v["code"]
        else:
            assert d["base_unknown"] is True

    # config.yaml and best_solution.py are kept as objects
    (files,) = [a for a in events(store, LINEAGE, "annotation") if a["payload"]["topic"] == "files"]
    assert set(files["payload"]["files"]) == {"config.yaml", "best_solution.py"}

    n = store.count()
    assert import_source(store, "aide", SRC / "journal.json", lineage=LINEAGE).events == 0
    assert store.count() == n
