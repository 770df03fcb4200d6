"""ShinkaEvolve (Sakana): its SQLite program database, or a results folder.

(a) SQLite database (PATH is the ``.sqlite``/``.db`` file). Table ``programs`` (id, code,
language, parent_id, archive_inspiration_ids, top_k_inspiration_ids, generation, timestamp,
code_diff, combined_score, public_metrics, private_metrics, text_feedback, correct, metadata,
island_idx, ...; JSON fields stored as TEXT), plus ``archive``, ``metadata_store``,
``generation_event_log`` and ``attempt_log``. Per program (node id = its id):

- ``node_created`` (parents = [parent_id]; inspirations are *not* parents, they are kept as
  ``archive_inspiration_ids``/``top_k_inspiration_ids``; ``in_archive``; status ``failed`` when
  the program is not ``correct``); actor: the generation-0 program with no parent and no LLM
  metadata ``human:``, else ``ai:<metadata.model_name>`` (else ``ai:shinkaevolve-llm``);
- ``proposal`` from ``metadata.patch_name``/``patch_description``;
- ``code_diff`` computed against the parent's code (the source's own ``code_diff`` text kept
  as ``source_diff_object``); code stored as ``code_object`` and a one-file snapshot;
- ``run`` (``system:shinkaevolve-evaluator``): status ``ok`` if ``correct`` else ``failed``,
  ``text_feedback``, ``compute_time`` as ``duration_s``, ``api_costs`` as cost dollars;
- ``score``: ``combined_score`` (primary) and ``public_metrics`` on split ``public``,
  ``private_metrics`` on split ``heldout`` (so the held-out gap signal sees them).
- ``metadata_store.best_program_id`` -> ``selection`` (best); the whole table -> an annotation.
- ``generation_event_log`` rows -> ``annotation`` (topic ``generation_event``);
  ``attempt_log`` rows -> ``run`` events (stage as command, status mapped; a status we cannot
  map -> annotation). They attach to the generation's program when exactly one exists,
  else to the lineage.
- rows of any other table -> ``annotation`` (topic ``sqlite:<table>``), so nothing is left out.
- embeddings are stored as objects (JSON), not inline.

(b) Results folder (``gen_N/`` with ``main.<ext>``, ``original.<ext>``, ``edit.diff``,
``attempts/novelty_i/resample_j/patch_k/{metadata.json, llm_response.txt, patch.txt}``,
``best/``). Per generation (node id ``gen_N``):

- the parent is not recorded: it is inferred when ``original.<ext>`` is byte-identical to
  exactly one earlier generation's ``main.<ext>`` (``parent_inferred: "code_match"``); with
  several candidates no parent is set and ``parent_candidates`` lists them;
- every patch attempt -> a ``proposal`` (patch name and description, by the attempt's
  ``llm_model`` or ``ai:shinkaevolve-llm``) and a ``run`` (``system:shinkaevolve``, command
  ``apply patch``, status ok/failed with ``error_msg``, ``llm_cost`` as cost dollars). Failed
  attempts are kept; a generation without ``main.<ext>`` is a ``failed`` node;
- ``code_diff`` computed from the parent's code (or ``original.<ext>``) to ``main.<ext>``;
  ``edit.diff`` and ``search_replace.txt``/``rewrite.txt`` kept as objects;
- ``results/metrics.json`` / ``results/correct.json`` when present -> ``run`` + ``score``s
  (public, private -> heldout);
- ``best/main.<ext>`` -> ``selection`` of the generation whose code it equals (the latest, if
  several: ``candidates`` lists them);
- every other file -> an ``annotation`` listing it as an object.

Memory: (a) keeps (id, parent, generation) per program and an LRU of ``CODE_CACHE`` codes; rows
stream from SQLite. (b) keeps one hash of ``main.<ext>`` per generation.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
from pathlib import Path
from typing import Any

from lineage.importers.base import (
    DEFAULT_ACTORS,
    LRU,
    Actors,
    ImportSession,
    clean,
    file_time,
    is_number,
    keep_files,
    load_json_text,
    merge,
    model_actor,
    read_text,
    scorable,
    text_and_object,
)

FORMAT = "shinkaevolve"
DESCRIPTION = "ShinkaEvolve SQLite database (programs table) or results folder (gen_N/...)"
EVALUATOR = "system:shinkaevolve-evaluator"
SYSTEM = "system:shinkaevolve"
DEFAULT_AI = "ai:shinkaevolve-llm"
CODE_CACHE = 1024
CODE_CACHE_CHARS = 32 << 20  # and at most ~32 MB of code
EXT = {"python": "py", "cpp": "cpp", "c++": "cpp", "rust": "rs", "javascript": "js", "lean": "lean",
       "julia": "jl", "cuda": "cu", "swift": "swift", "json": "json", "c": "c"}
_GEN = re.compile(r"^gen_(\d+)$")
_JSON_COLUMNS = ("archive_inspiration_ids", "top_k_inspiration_ids", "public_metrics", "private_metrics",
                 "metadata", "migration_history", "embedding", "embedding_pca_2d", "embedding_pca_3d")
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def _db_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path] if _is_sqlite(path) else []
    return []


def count_records(path: Path) -> int | None:
    path = Path(path)
    if path.is_file() and _is_sqlite(path):
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
                return sum(con.execute('SELECT count(*) FROM "{}"'.format(t.replace('"', '""'))).fetchone()[0]
                           for t in tables if not t.startswith("sqlite_"))
            finally:
                con.close()
        except sqlite3.Error:
            return None
    if path.is_dir():
        gens = [p for p in path.iterdir() if _GEN.match(p.name)]
        return sum(1 + sum(1 for _ in g.glob("attempts/*/*/*/metadata.json")) for g in gens) or None
    return None


def run(session: ImportSession, path: Path, *, lineage: str | None = None, actors: Actors = DEFAULT_ACTORS) -> None:
    path = Path(path)
    if path.is_file():
        if not _is_sqlite(path):
            session.warn(f"{path} is not a SQLite database")
            session.unmapped(lineage=lineage or path.stem, record=path.name, reason="not a SQLite database",
                             raw={"file": session.put_file(path)})
            return
        _import_db(session, path, lineage or path.stem, actors)
        return
    gens = [p for p in path.iterdir() if p.is_dir() and _GEN.match(p.name)]
    if gens:
        dbs = [p for p in path.iterdir() if p.is_file() and p.suffix in (".sqlite", ".db", ".sqlite3") and _is_sqlite(p)]
        for db in dbs:
            session.warn(f"{db.name} is ShinkaEvolve's database of this run; import it with "
                         f"`lineage import shinkaevolve {db}` (it uses other node ids than the gen_N folders)")
        _import_folder(session, path, lineage or path.name, actors)
        return
    subs = sorted(p for p in path.iterdir() if p.is_dir() and any(_GEN.match(q.name) for q in p.iterdir() if q.is_dir()))
    dbs = sorted(p for p in path.iterdir() if p.is_file() and _is_sqlite(p))
    if not subs and not dbs:
        session.warn(f"{path}: no ShinkaEvolve database or gen_N folders found")
        return
    for sub in subs:
        _import_folder(session, sub, f"{lineage or path.name}/{sub.name}", actors)
    for db in dbs:
        _import_db(session, db, f"{lineage or path.name}/{db.stem}", actors)


# ----------------------------------------------------------------------------------------
# (a) SQLite database


def _parse(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return load_json_text(value)
        except ValueError:
            return value
    return value


def _status(text: Any) -> str | None:
    t = str(text or "").lower()
    if any(w in t for w in ("fail", "error", "reject", "invalid", "exception")):
        return "failed"
    if "timeout" in t or "timed out" in t:
        return "timeout"
    if any(w in t for w in ("crash", "killed")):
        return "crashed"
    if any(w in t for w in ("success", "succeed", "ok", "complete", "accept", "applied", "done", "finished", "pass")):
        return "ok"
    if any(w in t for w in ("running", "pending", "start", "submit", "queued")):
        return "running"
    return None


def _import_db(session: ImportSession, db: Path, lineage: str, actors: Actors) -> None:
    session.add_lineage(lineage)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        index: dict[str, tuple[str | None, int]] = {}
        by_gen: dict[int, list[str]] = {}
        if "programs" in tables:
            for pid, parent, gen in con.execute("SELECT id, parent_id, generation FROM programs"):
                index[str(pid)] = (str(parent) if parent else None, gen if isinstance(gen, int) else 0)
                by_gen.setdefault(gen if isinstance(gen, int) else 0, []).append(str(pid))
        else:
            session.warn(f"{db.name}: no programs table")
        archive = set()
        if "archive" in tables:
            archive = {str(r[0]) for r in con.execute("SELECT program_id FROM archive")}
            session.advance(len(archive))

        def gen_node(g: Any) -> str | None:
            ids = by_gen.get(g) if isinstance(g, int) else None
            return ids[0] if ids and len(ids) == 1 else None

        cache: LRU = LRU(CODE_CACHE, max_chars=CODE_CACHE_CHARS)

        def code_of(pid: str) -> str | None:
            code = cache.get(pid)
            if code is None and pid in index:
                row = con.execute("SELECT code FROM programs WHERE id = ?", (pid,)).fetchone()
                code = row[0] if row and isinstance(row[0], str) else None
                if code is not None:
                    cache.put(pid, code)
            return code

        if "programs" in tables:
            cols = [r[1] for r in con.execute("PRAGMA table_info(programs)")]
            order = "generation, timestamp, id" if {"generation", "timestamp"} <= set(cols) else "rowid"
            for row in con.execute(f"SELECT * FROM programs ORDER BY {order}"):
                session.advance(1)
                _db_program(session, dict(row), lineage=lineage, index=index, archive=archive, code_of=code_of,
                            cache=cache, actors=actors)

        if "metadata_store" in tables:
            rows = {str(r["key"]): r["value"] for r in con.execute("SELECT key, value FROM metadata_store")}
            session.advance(len(rows))
            when = file_time(db)
            session.event("annotation", {"text": "ShinkaEvolve metadata_store", "topic": "metadata_store",
                                         "values": {k: _parse(v) for k, v in rows.items()}},
                          lineage=lineage, record="metadata_store", role="annotation", actor=SYSTEM, occurred_at=when)
            best = rows.get("best_program_id")
            if best and best != "None":
                session.event("selection", {"node": str(best), "purpose": "best",
                                            "reason": "metadata_store.best_program_id",
                                            **({"node_missing": True} if str(best) not in index else {})},
                              lineage=lineage, record="metadata_store.best_program_id", role="selection",
                              actor=SYSTEM, node=str(best), occurred_at=when)

        if "generation_event_log" in tables:
            for r in con.execute("SELECT * FROM generation_event_log ORDER BY id"):
                session.advance(1)
                r = dict(r)
                details = _parse(r.get("details"))
                session.event("annotation", merge({**r, "details": details},
                                                  {"text": f"generation {r.get('generation')}: {r.get('status')}",
                                                   "topic": "generation_event"}),
                              lineage=lineage, record=f"generation_event_log:{r.get('id')}", role="annotation",
                              actor=SYSTEM, node=gen_node(r.get("generation")), occurred_at=r.get("created_at"), raw=r)

        if "attempt_log" in tables:
            for r in con.execute("SELECT * FROM attempt_log ORDER BY id"):
                session.advance(1)
                r = dict(r)
                details = _parse(r.get("details"))
                status = _status(r.get("status"))
                rec = f"attempt_log:{r.get('id')}"
                node = gen_node(r.get("generation"))
                body = {**r, "details": details}
                if status is None:
                    text = f"attempt at generation {r.get('generation')}, stage {r.get('stage')}: {r.get('status')}"
                    session.event("annotation", merge(body, {"text": text, "topic": "attempt_log"}),
                                  lineage=lineage, record=rec, role="annotation", actor=SYSTEM, node=node,
                                  occurred_at=r.get("created_at"), raw=r)
                else:
                    session.event("run", merge(body, {"command": f"shinkaevolve {r.get('stage') or 'attempt'}",
                                                      "status": status}),
                                  lineage=lineage, record=rec, role="run", actor=SYSTEM, node=node,
                                  occurred_at=r.get("created_at"), raw=r)

        known = {"programs", "archive", "metadata_store", "generation_event_log", "attempt_log"}
        for t in tables:
            if t in known or t.startswith("sqlite_"):
                continue
            quoted = t.replace('"', '""')
            for i, r in enumerate(con.execute(f'SELECT * FROM "{quoted}"')):
                session.advance(1)
                r = dict(r)
                session.event("annotation", {"text": f"row {i} of table {t}", "topic": f"sqlite:{t}", "row": r},
                              lineage=lineage, record=f"{t}:{i}", role="annotation", actor=SYSTEM,
                              occurred_at=file_time(db), raw=r)
    finally:
        con.close()


def _db_program(session: ImportSession, row: dict, *, lineage, index, archive, code_of, cache, actors) -> None:
    pid = str(row.get("id"))
    session.node_found()
    for c in _JSON_COLUMNS:
        if c in row:
            row[c] = _parse(row[c])
    meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    parent = index.get(pid, (None, 0))[0]
    ts = row.get("timestamp") if is_number(row.get("timestamp")) else None
    model = meta.get("model_name") or meta.get("llm_model") or meta.get("model")
    llm_made = bool(model) or (meta.get("patch_type") not in (None, "init"))
    maker = actors.human if (parent is None and not llm_made) else actors.ai_or(model_actor(model, DEFAULT_AI))
    correct = row.get("correct")
    correct = bool(correct) if correct is not None else None
    if parent is not None and parent not in index:
        session.missing_parent(pid, parent)

    node_payload: dict[str, Any] = {
        k: v for k, v in row.items()
        if k not in ("id", "parent_id", "code", "code_diff", "public_metrics", "private_metrics", "combined_score",
                     "text_feedback", "embedding", "embedding_pca_2d", "embedding_pca_3d")
    }
    node_payload = merge(node_payload, {"parents": [parent] if parent else [], "in_archive": pid in archive,
                                        "status": "failed" if correct is False else "candidate"})
    if isinstance(meta.get("patch_name"), str):
        node_payload["label"] = meta["patch_name"]
    if parent is not None and parent not in index:
        node_payload["parent_missing"] = True
    for emb in ("embedding", "embedding_pca_2d", "embedding_pca_3d"):
        value = row.get(emb)
        if value not in (None, [], ""):
            text = json.dumps(clean(value))
            node_payload[emb] = {"$object": session.put_object(text), "bytes": len(text), "format": "json"}
    session.event("node_created", node_payload, lineage=lineage, record=pid, role="node", actor=maker, node=pid,
                  occurred_at=ts, raw={k: v for k, v in row.items() if k != "code"})

    if maker != actors.human and (meta.get("patch_description") or meta.get("patch_name")):
        idea = meta.get("patch_description") or meta.get("patch_name")
        idea, more = text_and_object(session, str(idea))
        session.event("proposal", {"idea": idea, **more, "name": meta.get("patch_name"), "patch_type": meta.get("patch_type")},
                      lineage=lineage, record=pid, role="proposal", actor=maker, node=pid, occurred_at=ts)

    code = row.get("code")
    if isinstance(code, str):
        cache.put(pid, code)
        fname = f"main.{EXT.get(str(row.get('language') or '').lower(), 'txt')}"
        if parent is None:
            before: dict | None = {}
        else:
            pcode = code_of(parent) if parent in index else None
            before = {fname: pcode.encode()} if pcode is not None else None
        diff = session.tree_diff_payload(before, {fname: code.encode()})
        diff["code_object"] = session.put_object(code)
        diff["language"] = row.get("language")
        if isinstance(row.get("code_diff"), str) and row["code_diff"]:
            diff["source_diff_object"] = session.put_object(row["code_diff"])
        session.event("code_diff", diff, lineage=lineage, record=pid, role="code_diff", actor=maker, node=pid,
                      occurred_at=ts)

    publics = row.get("public_metrics") if isinstance(row.get("public_metrics"), dict) else {}
    privates = row.get("private_metrics") if isinstance(row.get("private_metrics"), dict) else {}
    combined = row.get("combined_score")
    run_payload: dict[str, Any] = {"command": "shinkaevolve evaluate", "status": "failed" if correct is False else "ok",
                                   "correct": correct}
    if row.get("text_feedback"):
        run_payload["text_feedback"] = row["text_feedback"]
    if combined is not None and not scorable(combined):
        run_payload["raw_value"] = clean(combined)
        run_payload["failed_metric"] = "combined_score"
        run_payload["status"] = "failed"
    for k in ("public_metrics", "private_metrics"):
        if row.get(k) not in (None, {}, ""):
            run_payload[k] = row[k]
    ct = meta.get("compute_time")
    if is_number(ct) and math.isfinite(ct) and ct >= 0:
        run_payload["duration_s"] = float(ct)
    ac = meta.get("api_costs")
    if is_number(ac) and math.isfinite(ac) and ac >= 0:
        run_payload["cost"] = {"dollars": float(ac)}
    rid = session.event("run", run_payload, lineage=lineage, record=pid, role="run", actor=EVALUATOR, node=pid,
                        occurred_at=ts)
    common = {"lineage": lineage, "record": pid, "node": pid, "actor": EVALUATOR, "occurred_at": ts, "caused_by": rid}
    if combined is not None:
        session.score_events({"combined_score": combined}, primary="combined_score", **common)
    session.score_events(publics, split="public", **common)
    session.score_events(privates, split="heldout", **common)


# ----------------------------------------------------------------------------------------
# (b) results folder


def _main_file(d: Path, stem: str = "main") -> Path | None:
    found = sorted(p for p in d.glob(f"{stem}.*") if p.is_file())
    return found[0] if found else None


def _attempt_key(p: Path) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in re.findall(r"\d+|[A-Za-z_]+", p.parent.relative_to(p.parents[3]).as_posix()))


def _import_folder(session: ImportSession, root: Path, lineage: str, actors: Actors) -> None:
    session.add_lineage(lineage)
    gens = sorted((int(_GEN.match(p.name).group(1)), p) for p in root.iterdir() if p.is_dir() and _GEN.match(p.name))
    consumed: set[Path] = set()
    code_hash: dict[str, list[str]] = {}  # sha256 of main file -> generation nodes, in order
    best_code: dict[str, Path] = {}
    for n, d in gens:
        session.advance(1)
        node = f"gen_{n}"
        main = _main_file(d)
        original = _main_file(d, "original")
        attempts = sorted(d.glob("attempts/*/*/*/metadata.json"), key=lambda p: _attempt_key(p))
        records = []
        for f in attempts:
            consumed.add(f)
            try:
                records.append((f, load_json_text(read_text(f))))
            except ValueError as exc:
                session.unmapped(lineage=lineage, record=f.relative_to(root).as_posix(), reason=f"not valid JSON: {exc}",
                                 raw=f.read_bytes(), node=node)
        good = [m for _, m in records if isinstance(m, dict) and m.get("success")]
        models = [m.get("llm_model") for _, m in records if isinstance(m, dict) and m.get("llm_model")]
        ai = actors.ai_or(model_actor(models[-1] if models else None, DEFAULT_AI))
        maker = actors.human if (n == 0 and not records) else ai
        when = min((t for t in (file_time(p) for p in d.iterdir() if p.is_file()) if t), default=None)
        first_ts = next((m.get("timestamp") for _, m in records if isinstance(m, dict) and m.get("timestamp")), None)
        when = first_ts or when

        # parent: the earlier generation whose main file equals this one's original file
        parents: list[str] = []
        extra: dict[str, Any] = {}
        original_text = original.read_bytes() if original else None
        if original is not None:
            consumed.add(original)
            h = hashlib.sha256(original_text).hexdigest()
            cands = code_hash.get(h, [])
            if len(cands) == 1:
                parents = cands
                extra["parent_inferred"] = "code_match"
                extra["parent_evidence"] = f"{d.name}/{original.name} equals {cands[0]}/{main.name if main else 'main'}"
            elif cands:
                extra["parent_candidates"] = cands
                extra["parent_note"] = "original code matches several earlier generations; no parent chosen"
            else:
                extra["parent_note"] = "original code matches no earlier generation in the folder"
        session.node_found()
        label = next((m.get("patch_name") for m in good if m.get("patch_name") not in (None, "", "none")), None)
        payload = {"parents": parents, "generation": n, "status": "candidate" if main else "failed",
                   **({"label": label} if label else {}), "attempts": len(records), **extra}
        if not main:
            payload["note"] = "no main file: every patch attempt failed"
        session.event("node_created", payload, lineage=lineage, record=node, role="node", actor=maker, node=node,
                      occurred_at=when)

        for f, m in records:
            session.advance(1)
            rel = f.relative_to(root).as_posix()
            if not isinstance(m, dict):
                session.unmapped(lineage=lineage, record=rel, reason="attempt metadata is not an object", raw=m, node=node)
                continue
            a_actor = actors.ai_or(model_actor(m.get("llm_model"), DEFAULT_AI))
            att = f.parent
            files = {}
            for extra_f in sorted(p for p in att.iterdir() if p.is_file() and p != f):
                consumed.add(extra_f)
                files[extra_f.name] = session.put_file(extra_f)
            idea = m.get("patch_description") or m.get("patch_name")
            if isinstance(idea, str) and idea.strip() and idea != "none":
                idea, more = text_and_object(session, idea)
            else:
                idea, more = f"patch attempt {rel}", {}
            pid = session.event("proposal", {"idea": idea, **more, "name": m.get("patch_name"), "attempt": rel, "files": files},
                                lineage=lineage, record=rel, role="proposal", actor=a_actor, node=node,
                                occurred_at=m.get("timestamp"), raw=m)
            cost = m.get("llm_cost")
            run_payload = merge(m, {"command": "apply patch", "status": "ok" if m.get("success") else "failed"})
            if is_number(cost) and math.isfinite(cost) and cost >= 0:
                run_payload["cost"] = {"dollars": float(cost)}
            session.event("run", run_payload, lineage=lineage, record=rel, role="run", actor=SYSTEM, node=node,
                          occurred_at=m.get("timestamp"), caused_by=pid, raw=m)

        if main is not None:
            consumed.add(main)
            code = main.read_bytes()
            h = hashlib.sha256(code).hexdigest()
            before: dict | None
            if n == 0 and not parents and original is None:
                before = {}
            elif parents or original is not None:
                before = {main.name: original_text}
            else:
                before = None
            diff = session.tree_diff_payload(before, {main.name: code})
            diff["code_object"] = session.put_object(code)
            for name, key in (("edit.diff", "source_diff_object"), ("search_replace.txt", "edit_object"),
                              ("rewrite.txt", "edit_object")):
                p = d / name
                if p.is_file():
                    consumed.add(p)
                    diff[key] = session.put_object(p.read_bytes())
                    if key == "edit_object":
                        diff["edit_type"] = name.removesuffix(".txt")
            session.event("code_diff", diff, lineage=lineage, record=node, role="code_diff", actor=maker, node=node,
                          occurred_at=when)
            code_hash.setdefault(h, []).append(node)
            best_code[node] = main

        _folder_results(session, d, node, lineage, consumed, when)
        rest = [p for p in d.rglob("*") if p.is_file() and p not in consumed]
        consumed.update(rest)
        keep_files(session, rest, root=root, lineage=lineage, record=node, actor=SYSTEM, node=node, occurred_at=when)

    best = root / "best"
    if best.is_dir():
        bm = _main_file(best)
        if bm is not None:
            consumed.add(bm)
            h = hashlib.sha256(bm.read_bytes()).hexdigest()
            cands = code_hash.get(h, [])
            when = file_time(bm)
            if cands:
                payload = {"node": cands[-1], "purpose": "best", "reason": f"best/{bm.name} equals {cands[-1]}/{bm.name}"}
                if len(cands) > 1:
                    payload["candidates"] = cands
                session.event("selection", payload, lineage=lineage, record=f"best/{bm.name}", role="selection",
                              actor=SYSTEM, node=cands[-1], occurred_at=when)
            else:
                session.unmapped(lineage=lineage, record=f"best/{bm.name}",
                                 reason="best program matches no generation's code", raw={"file": session.put_file(bm)})
    rest = [p for p in root.rglob("*") if p.is_file() and p not in consumed]
    keep_files(session, rest, root=root, lineage=lineage, record="files", actor=SYSTEM)


def _folder_results(session: ImportSession, d: Path, node: str, lineage: str, consumed: set[Path], when: Any) -> None:
    res = d / "results"
    mf, cf = res / "metrics.json", res / "correct.json"
    if not mf.is_file() and not cf.is_file():
        return
    metrics = correct = None
    for f in (mf, cf):
        if f.is_file():
            consumed.add(f)
            try:
                value = load_json_text(read_text(f))
            except ValueError as exc:
                session.unmapped(lineage=lineage, record=f.relative_to(d.parent).as_posix(), reason=f"not valid JSON: {exc}",
                                 raw=f.read_bytes(), node=node)
                continue
            if f is mf:
                metrics = value
            else:
                correct = value
    ok = correct.get("correct") if isinstance(correct, dict) else None
    payload: dict[str, Any] = {"command": "shinkaevolve evaluate", "status": "failed" if ok is False else "ok",
                               "metrics": metrics, "correct": correct}
    m = metrics if isinstance(metrics, dict) else {}
    combined = m.get("combined_score")
    if combined is not None and not scorable(combined):
        payload["status"] = "failed"
        payload["raw_value"] = clean(combined)
    rid = session.event("run", payload, lineage=lineage, record=f"{node}/results", role="run", actor=EVALUATOR,
                        node=node, occurred_at=when)
    common = {"lineage": lineage, "record": f"{node}/results", "node": node, "actor": EVALUATOR, "occurred_at": when,
              "caused_by": rid}
    if "combined_score" in m:
        session.score_events({"combined_score": combined}, primary="combined_score", **common)
    if isinstance(m.get("public"), dict):
        session.score_events(m["public"], split="public", **common)
    if isinstance(m.get("private"), dict):
        session.score_events(m["private"], split="heldout", **common)
