"""ShinkaEvolve import: the real results folder sample, and a SQLite database built here
with ShinkaEvolve's own schema."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3

from test_import_common import apply_diff, by_node, code_from_snapshot, events, sample

from lineage.importers import import_source
from lineage.store import Store

# ---------------------------------------------------------------------------------------
# (b) results folder sample


def test_results_folder_sample(tmp_path):
    src = sample("shinkaevolve", "results_autoformalization_small")
    lineage = src.name
    gens = sorted(int(m.group(1)) for p in src.iterdir() if (m := re.fullmatch(r"gen_(\d+)", p.name)))
    attempts = {n: sorted((src / f"gen_{n}").glob("attempts/*/*/*/metadata.json")) for n in gens}
    metas = {p: json.loads(p.read_text()) for ps in attempts.values() for p in ps}
    mains = {n: (src / f"gen_{n}" / "main.lean").read_bytes() for n in gens}
    sha = {n: hashlib.sha256(b).hexdigest() for n, b in mains.items()}

    store = Store.init(tmp_path / "store")
    summary = import_source(store, "shinkaevolve", src)
    assert summary.lineages == [lineage] and not summary.unmapped

    created = by_node(events(store, lineage, "node_created"))
    assert set(created) == {f"gen_{n}" for n in gens}
    # parents: not shipped; inferred only where original.lean equals exactly one earlier main.lean
    for n in gens:
        orig = src / f"gen_{n}" / "original.lean"
        if not orig.exists():
            expected = []
        else:
            h = hashlib.sha256(orig.read_bytes()).hexdigest()
            cands = [f"gen_{k}" for k in gens if k < n and sha[k] == h]
            expected = cands if len(cands) == 1 else []
        assert created[f"gen_{n}"]["payload"]["parents"] == expected
    roots = [n for n, e in created.items() if not e["payload"]["parents"]]
    assert roots == ["gen_0"] and created["gen_0"]["actor_kind"] == "human"
    assert all(created[f"gen_{n}"]["actor_kind"] == "ai" for n in gens if n)

    # every patch attempt is a proposal and a run; failed ones are kept with their error
    runs = events(store, lineage, "run")
    assert len(runs) == len(metas) and len(events(store, lineage, "proposal")) == len(metas)
    failed = [m for m in metas.values() if not m["success"]]
    assert failed, "the sample has failed patch attempts"
    got_failed = [r for r in runs if r["payload"]["status"] == "failed"]
    assert len(got_failed) == len(failed)
    assert {r["payload"]["error_msg"] for r in got_failed} == {m["error_msg"] for m in failed}
    total_cost = sum(m["llm_cost"] for m in metas.values())
    assert abs(sum(r["payload"]["cost"]["dollars"] for r in runs) - total_cost) < 1e-12

    # code: main.lean as the node's code; the diff from the parent rebuilds it
    diffs = by_node(events(store, lineage, "code_diff"))
    for n in gens:
        d = diffs[f"gen_{n}"]["payload"]
        assert store.objects.get(d["code_object"]) == mains[n]
        assert code_from_snapshot(store, d) == {"main.lean": mains[n]}
        parents = created[f"gen_{n}"]["payload"]["parents"]
        if parents:
            k = int(parents[0].split("_")[1])
            diff = store.objects.get(d["diff_object"]).decode()
            assert apply_diff(mains[k].decode(), diff, "main.lean") == mains[n].decode()
            assert store.objects.get(d["source_diff_object"]) == (src / f"gen_{n}" / "edit.diff").read_bytes()

    # best/main.lean names the generation whose code it is
    best = hashlib.sha256((src / "best" / "main.lean").read_bytes()).hexdigest()
    (sel,) = events(store, lineage, "selection")
    assert sel["node"] == [f"gen_{n}" for n in gens if sha[n] == best][-1]
    assert summary.missing_parents == {}  # no scores or parent ids are shipped in this sample
    assert events(store, lineage, "score") == []

    n = store.count()
    assert import_source(store, "shinkaevolve", src).events == 0
    assert store.count() == n


# ---------------------------------------------------------------------------------------
# (a) SQLite database, built with ShinkaEvolve's schema

SCHEMA = """
CREATE TABLE programs (
    id TEXT PRIMARY KEY, code TEXT NOT NULL, language TEXT NOT NULL, parent_id TEXT,
    archive_inspiration_ids TEXT, top_k_inspiration_ids TEXT, generation INTEGER NOT NULL,
    timestamp REAL NOT NULL, code_diff TEXT, combined_score REAL, public_metrics TEXT,
    private_metrics TEXT, text_feedback TEXT, complexity REAL, embedding TEXT,
    embedding_pca_2d TEXT, embedding_pca_3d TEXT, embedding_cluster_id INTEGER,
    correct BOOLEAN DEFAULT 0, children_count INTEGER NOT NULL DEFAULT 0, metadata TEXT,
    migration_history TEXT, island_idx INTEGER, system_prompt_id TEXT);
CREATE TABLE archive (program_id TEXT PRIMARY KEY);
CREATE TABLE metadata_store (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE generation_event_log (id INTEGER PRIMARY KEY AUTOINCREMENT, generation INTEGER NOT NULL,
    status TEXT NOT NULL, source_job_id TEXT, details TEXT, created_at REAL NOT NULL);
CREATE TABLE attempt_log (id INTEGER PRIMARY KEY AUTOINCREMENT, generation INTEGER NOT NULL,
    stage TEXT NOT NULL, status TEXT NOT NULL, details TEXT, created_at REAL NOT NULL);
CREATE TABLE evaluation_ownership (generation INTEGER PRIMARY KEY, phase TEXT NOT NULL, job_type TEXT NOT NULL,
    job_id TEXT, job_name TEXT, results_dir TEXT NOT NULL, dispatch_state INTEGER NOT NULL DEFAULT 1,
    updated_at REAL NOT NULL);
"""

BASE = "def solve(x):\n    return x\n"
PROGRAMS = [
    # id, parent, gen, code, combined, public, private, correct, metadata
    ("p0", None, 0, BASE, 0.2, {"acc": 0.2}, {"acc": 0.2}, 1,
     {"patch_type": "init", "patch_name": "initial_program", "patch_description": "Initial program from file.",
      "compute_time": 1.5, "api_costs": 0.0}),
    ("p1", "p0", 1, BASE.replace("x\n", "x + 1\n"), 0.5, {"acc": 0.5}, {"acc": 0.45}, 1,
     {"patch_type": "diff", "patch_name": "add_one", "patch_description": "Add one.", "model_name": "gpt-4.1",
      "compute_time": 2.0, "api_costs": 0.012, "stdout_log": "ok\n" * 20000}),
    ("p2", "p1", 2, BASE.replace("x\n", "x + 2\n"), 0.7, {"acc": 0.7}, {"acc": 0.3}, 1,
     {"patch_type": "diff", "patch_name": "add_two", "patch_description": "Add two.", "model_name": "gpt-4.1",
      "api_costs": 0.02}),
    ("p3", "pruned-9", 2, BASE.replace("x\n", "-x\n"), 0.1, {"acc": 0.1}, {}, 1,
     {"patch_type": "full", "patch_name": "negate", "patch_description": "Negate.", "model_name": "o4-mini"}),
    ("p4", "p1", 3, "def solve(x):\n    return x +\n", None, {}, {}, 0,
     {"patch_type": "diff", "patch_name": "broken", "patch_description": "Breaks syntax.", "model_name": "gpt-4.1"}),
]


def _build_db(path):
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    for i, (pid, parent, gen, code, comb, pub, priv, correct, meta) in enumerate(PROGRAMS):
        con.execute(
            "INSERT INTO programs (id, code, language, parent_id, archive_inspiration_ids, top_k_inspiration_ids, "
            "generation, timestamp, code_diff, combined_score, public_metrics, private_metrics, text_feedback, "
            "complexity, embedding, correct, metadata, island_idx, migration_history) "
            "VALUES (?, ?, 'python', ?, ?, '[]', ?, ?, ?, ?, ?, ?, ?, 1.0, ?, ?, ?, 0, '[]')",
            (pid, code, parent, json.dumps(["p0"] if parent else []), gen, 1_700_000_000.0 + i, "--- a\n+++ b\n" if parent else None,
             comb, json.dumps(pub), json.dumps(priv), "syntax error" if not correct else "", json.dumps([0.1] * 8),
             correct, json.dumps(meta)))
    con.execute("INSERT INTO archive VALUES ('p2')")
    con.executemany("INSERT INTO metadata_store VALUES (?, ?)", [("best_program_id", "p2"), ("last_iteration", "3")])
    con.executemany("INSERT INTO generation_event_log (generation, status, source_job_id, details, created_at) VALUES (?, ?, ?, ?, ?)",
                    [(1, "submitted", "job-1", '{"parent": "p0"}', 1_700_000_001.0), (3, "completed", "job-4", None, 1_700_000_004.0)])
    con.executemany("INSERT INTO attempt_log (generation, stage, status, details, created_at) VALUES (?, ?, ?, ?, ?)",
                    [(3, "patch", "failed", '{"error": "SEARCH text not found"}', 1_700_000_003.5),
                     (3, "patch", "success", None, 1_700_000_003.9), (3, "novelty", "weird-status", None, 1_700_000_003.95)])
    con.execute("INSERT INTO evaluation_ownership VALUES (3, 'resolved', 'local', 'job-4', 'gen_3', '/tmp/gen_3', 1, 1.0)")
    con.commit()
    con.close()


def test_sqlite_database(tmp_path):
    db = tmp_path / "evolution_db.sqlite"
    _build_db(db)
    store = Store.init(tmp_path / "store")
    summary = import_source(store, "shinkaevolve", db)
    lineage = "evolution_db"
    assert summary.lineages == [lineage] and not summary.unmapped

    raw = {p[0]: p for p in PROGRAMS}
    created = by_node(events(store, lineage, "node_created"))
    assert set(created) == set(raw)
    for pid, (_, parent, gen, *_rest) in raw.items():
        e = created[pid]
        assert e["payload"]["parents"] == ([parent] if parent else [])
        assert e["payload"]["generation"] == gen
        # inspirations are kept, never turned into parents
        assert e["payload"]["archive_inspiration_ids"] == (["p0"] if parent else [])
    assert [n for n, e in created.items() if not e["payload"]["parents"]] == ["p0"]
    assert created["p0"]["actor"] == "human:seed-author"
    assert created["p1"]["actor"] == "ai:gpt-4.1" and created["p3"]["actor"] == "ai:o4-mini"
    assert summary.missing_parents == {"p3": ["pruned-9"]}
    assert created["p3"]["payload"]["parent_missing"] is True
    assert created["p4"]["payload"]["status"] == "failed"
    assert created["p2"]["payload"]["in_archive"] is True and created["p1"]["payload"]["in_archive"] is False
    # big text moved to the object store, embeddings too
    log = created["p1"]["payload"]["metadata"]["stdout_log"]
    assert store.objects.get(log["$object"]).decode() == "ok\n" * 20000
    assert json.loads(store.objects.get(created["p1"]["payload"]["embedding"]["$object"])) == [0.1] * 8

    # public metrics on the public split, private on heldout, combined_score primary
    scores = events(store, lineage, "score")
    for pid, (_, _, _, _, comb, pub, priv, *_r) in raw.items():
        mine = [s["payload"] for s in scores if s["node"] == pid]
        assert {(s["metric"], s["value"]) for s in mine if s["split"] == "heldout"} == set(priv.items())
        public = {(s["metric"], s["value"]) for s in mine if s["split"] == "public"}
        assert public == set(pub.items()) | ({("combined_score", comb)} if comb is not None else set())
    best = max(p[4] for p in PROGRAMS if p[4] is not None)
    assert max(s["payload"]["value"] for s in scores if s["payload"]["metric"] == "combined_score") == best

    runs = [r for r in events(store, lineage, "run") if r["payload"]["command"] == "shinkaevolve evaluate"]
    assert {r["node"]: r["payload"]["status"] for r in runs} == {p[0]: "ok" if p[7] else "failed" for p in PROGRAMS}
    assert by_node(runs)["p1"]["payload"]["cost"] == {"dollars": 0.012}

    # code diffs are computed from the parent's code
    diffs = by_node(events(store, lineage, "code_diff"))
    for pid, (_, parent, _, code, *_r) in raw.items():
        d = diffs[pid]["payload"]
        assert store.objects.get(d["code_object"]).decode() == code
        if parent in raw:
            assert apply_diff(raw[parent][3], store.objects.get(d["diff_object"]).decode(), "main.py") == code
        elif parent:
            assert d["base_unknown"] is True

    (sel,) = events(store, lineage, "selection")
    assert sel["payload"]["node"] == "p2" and sel["payload"]["purpose"] == "best"
    attempts = [r for r in events(store, lineage, "run") if r["payload"]["command"] == "shinkaevolve patch"]
    assert sorted(r["payload"]["status"] for r in attempts) == ["failed", "ok"]
    assert all(r["node"] == "p4" for r in attempts)  # the one program of generation 3
    topics = [a["payload"]["topic"] for a in events(store, lineage, "annotation")]
    assert topics.count("generation_event") == 2 and topics.count("attempt_log") == 1
    assert "sqlite:evaluation_ownership" in topics and "metadata_store" in topics

    n = store.count()
    assert import_source(store, "shinkaevolve", db).events == 0
    assert store.count() == n
