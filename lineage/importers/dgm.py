"""Darwin Gödel Machine: an ``output_dgm/<run>/`` folder.

The run folder holds one folder per agent (``initial/`` and one per self-improvement attempt,
named by its run id) with ``metadata.json`` (run_id, parent_commit, entry, problem_statement,
overall_performance {accuracy_score, total_resolved_ids, ...}), ``model_patch.diff`` and
``self_evo.md`` (the coding agent's chat), and ``dgm_metadata.jsonl``: one record per DGM
generation (generation, selfimprove_entries, children, children_compiled, archive). DGM
writes those records pretty-printed one after another, so the file is read as concatenated
JSON, not line by line. A folder of several runs imports as several lineages.

Mapping (node id = the agent folder's name; ``initial`` is the seed):

- ``node_created``: ``initial`` by ``human:`` (the hand-written starting agent); every other
  agent by ``ai:dgm-coding-agent`` **with ``actor_node`` = its parent agent**: in DGM the
  parent's own code rewrites itself into the child, so these nodes come out self-built.
  parents = [parent_commit]; status ``accepted`` (entered the archive), ``rejected`` (did not
  compile or was not kept) or ``candidate`` (no generation record says);
  ``dgm_generation`` = the generation that produced it.
- ``proposal``: the diagnosed ``problem_statement`` for the ``entry`` (the task chosen to
  improve on), by ``ai:dgm-diagnose`` (DGM's diagnosis model, not the agent itself).
- ``code_diff``: ``model_patch.diff`` (paths and line counts parsed; the base tree is the
  parent agent, which DGM does not store), by the parent agent (``actor_node``); the chat
  ``self_evo.md`` kept as ``chat_history_object``.
- ``run`` (``system:dgm-swe-harness``): the benchmark evaluation, ``overall_performance``
  kept whole (long id lists as objects); status ``ok`` when it has results, else ``failed``.
- ``score`` ``accuracy_score`` (primary, split ``public``).
- each generation record -> ``selection`` events by ``system:dgm``: purpose ``parent`` per
  self-improve entry (the parent chosen and the entry), purpose ``promote`` per child that
  entered the archive; and one ``annotation`` (topic ``dgm_generation``) with the raw record.
- other files of an agent folder (logs, predictions) -> an ``annotation`` listing them as objects.

Memory: the generation records are read one at a time; per agent we keep its generation,
whether it compiled and whether it entered the archive.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lineage.importers.base import (
    DEFAULT_ACTORS,
    Actors,
    ImportSession,
    file_time,
    is_number,
    iter_concatenated_json,
    keep_files,
    load_json_text,
    merge,
    read_text,
    text_and_object,
)

FORMAT = "dgm"
DESCRIPTION = "Darwin Gödel Machine output_dgm/<run>/ folder (agent folders + dgm_metadata.jsonl)"
SYSTEM = "system:dgm"
HARNESS = "system:dgm-swe-harness"
DEFAULT_AI = "ai:dgm-coding-agent"
DIAGNOSE = "ai:dgm-diagnose"
META = "dgm_metadata.jsonl"


def _is_run(d: Path) -> bool:
    return d.is_dir() and ((d / META).is_file() or (d / "initial" / "metadata.json").is_file())


def _runs(path: Path) -> list[Path]:
    if _is_run(path):
        return [path]
    return sorted(p for p in path.iterdir() if _is_run(p)) if path.is_dir() else []


def count_records(path: Path) -> int | None:
    return sum(sum(1 for _ in r.glob("*/metadata.json")) for r in _runs(Path(path))) or None


def run(session: ImportSession, path: Path, *, lineage: str | None = None, actors: Actors = DEFAULT_ACTORS) -> None:
    path = Path(path)
    runs = _runs(path)
    if not runs:
        session.warn(f"{path}: no DGM run folder (dgm_metadata.jsonl or initial/metadata.json) found")
        return
    for r in runs:
        name = (lineage or r.name) if len(runs) == 1 and r == path else f"{lineage or path.name}/{r.name}"
        _import_run(session, r, name, actors)


def _import_run(session: ImportSession, root: Path, lineage: str, actors: Actors) -> None:
    session.add_lineage(lineage)
    ai = actors.ai_or(DEFAULT_AI)
    consumed: set[Path] = set()

    # Generation records first: they say when each agent was made and whether it was kept.
    created_in: dict[str, int] = {}
    compiled: set[str] = set()
    archived: set[str] = set()
    children: set[str] = set()
    gens: list[tuple[int, Any]] = []
    meta_f = root / META
    if meta_f.is_file():
        consumed.add(meta_f)
        text = read_text(meta_f)
        try:
            for offset, rec in iter_concatenated_json(text):
                gens.append((offset, rec))
        except ValueError as exc:
            session.unmapped(lineage=lineage, record=f"{META}@{len(gens)}", reason=f"not valid JSON: {exc}",
                             raw=text.encode())
        for _, rec in gens:
            if not isinstance(rec, dict):
                continue
            g = rec.get("generation")
            for c in rec.get("children") or []:
                created_in.setdefault(str(c), g)
                children.add(str(c))
            compiled.update(str(c) for c in rec.get("children_compiled") or [])
            archived.update(str(c) for c in rec.get("archive") or [])

    dirs = [d for d in root.iterdir() if d.is_dir() and (d / "metadata.json").is_file()]
    known = {d.name for d in dirs}
    order = sorted(dirs, key=lambda d: (d.name != "initial", created_in.get(d.name, 1 << 30), d.name))
    for d in order:
        session.advance(1)
        _agent(session, root, d, lineage=lineage, ai=ai, actors=actors, known=known, created_in=created_in,
               compiled=compiled, archived=archived, children=children, consumed=consumed)

    for i, (_offset, rec) in enumerate(gens):
        session.advance(1)
        record = f"{META}#{i}"
        if not isinstance(rec, dict):
            session.unmapped(lineage=lineage, record=record, reason="generation record is not an object", raw=rec)
            continue
        g = rec.get("generation")
        when = file_time(meta_f)
        when = when + i * 1e-3 if when else None
        text = (f"DGM generation {g}: {len(rec.get('children') or [])} children, "
                f"{len(rec.get('children_compiled') or [])} compiled, archive of {len(rec.get('archive') or [])}")
        session.event("annotation", merge(rec, {"text": text, "topic": "dgm_generation"}),
                      lineage=lineage, record=record, role="annotation", actor=SYSTEM, occurred_at=when, raw=rec)
        for j, entry in enumerate(rec.get("selfimprove_entries") or []):
            parent, task = (entry[0], entry[1]) if isinstance(entry, list | tuple) and len(entry) == 2 else (None, entry)
            if not isinstance(parent, str):
                session.unmapped(lineage=lineage, record=f"{record}.selfimprove_entries[{j}]",
                                 reason="self-improve entry is not [parent, entry]", raw=entry)
                continue
            session.event("selection", {"node": parent, "purpose": "parent", "reason": f"chosen to self-improve on {task}",
                                        "entry": task, "generation": g},
                          lineage=lineage, record=f"{record}.selfimprove_entries[{j}]", role="selection", actor=SYSTEM,
                          node=parent, occurred_at=when)
        before = set()
        if i > 0 and isinstance(gens[i - 1][1], dict):
            before = {str(c) for c in gens[i - 1][1].get("archive") or []}
        for c in rec.get("archive") or []:
            c = str(c)
            if c in before or c == "initial":
                continue
            session.event("selection", {"node": c, "purpose": "promote", "reason": f"entered the archive in generation {g}",
                                        "generation": g},
                          lineage=lineage, record=f"{record}.archive:{c}", role="selection", actor=SYSTEM, node=c,
                          occurred_at=when)

    rest = [p for p in root.rglob("*") if p.is_file() and p not in consumed]
    keep_files(session, rest, root=root, lineage=lineage, record="files", actor=SYSTEM)


def _agent(session: ImportSession, root: Path, d: Path, *, lineage, ai, actors, known, created_in, compiled, archived,
           children, consumed) -> None:
    node = d.name
    mf = d / "metadata.json"
    consumed.add(mf)
    rel = mf.relative_to(root).as_posix()
    try:
        meta = load_json_text(read_text(mf))
    except ValueError as exc:
        session.unmapped(lineage=lineage, record=rel, reason=f"not valid JSON: {exc}", raw=mf.read_bytes())
        return
    if not isinstance(meta, dict):
        session.unmapped(lineage=lineage, record=rel, reason="metadata.json is not an object", raw=meta)
        return
    session.node_found()
    when = file_time(mf)
    seed = node == "initial"
    parent = None if seed else meta.get("parent_commit")
    parent = parent if isinstance(parent, str) and parent else None
    if parent is not None and parent not in known:
        session.missing_parent(node, parent)
    maker, maker_node = (actors.human, None) if seed else (ai, parent)
    if node in archived or seed:
        status = "accepted"
    elif node in children:
        status = "rejected"
    else:
        status = "candidate"
    kept = {k: v for k, v in meta.items() if k not in ("problem_statement", "overall_performance", "overall_performance_deep")}
    payload: dict[str, Any] = merge(kept, {"parents": [parent] if parent else [], "status": status,
                                           "compiled": node in compiled if node in children else None})
    if node in created_in:
        payload["dgm_generation"] = created_in[node]
    if parent is not None and parent not in known:
        payload["parent_missing"] = True
    if not seed and parent is None:
        payload["note"] = "metadata.json names no parent_commit"
    session.event("node_created", payload, lineage=lineage, record=node, role="node", actor=maker,
                  actor_node=maker_node if maker.startswith("ai:") else None, node=node, occurred_at=when,
                  raw=meta)

    ps = meta.get("problem_statement")
    if isinstance(ps, str) and ps.strip():
        idea, more = text_and_object(session, ps)
        session.event("proposal", {"idea": idea, **more, "entry": meta.get("entry")}, lineage=lineage, record=node,
                      role="proposal", actor=DIAGNOSE, node=node, occurred_at=when)

    patch = d / "model_patch.diff"
    chat = d / "self_evo.md"
    if patch.is_file():
        consumed.add(patch)
        text = read_text(patch)
        diff = session.text_diff_payload(text) if text.strip() else {"empty_patch": True}
        if chat.is_file():
            consumed.add(chat)
            diff["chat_history_object"] = session.put_object(chat.read_bytes())
        if parent:
            diff["base"] = f"the code of agent {parent} (DGM does not store it)"
        diff["base_unknown"] = True  # the DGM repository the patches apply to is not in the run folder
        session.event("code_diff", diff, lineage=lineage, record=node, role="code_diff", actor=maker,
                      actor_node=maker_node if maker.startswith("ai:") else None, node=node, occurred_at=when)

    perf = meta.get("overall_performance")
    if perf is not None or "overall_performance_deep" in meta:
        ok = isinstance(perf, dict) and bool(perf)
        run_payload = {"command": "dgm swe-bench harness", "status": "ok" if ok else "failed",
                       "overall_performance": perf}
        if "overall_performance_deep" in meta:
            run_payload["overall_performance_deep"] = meta["overall_performance_deep"]
        rid = session.event("run", run_payload, lineage=lineage, record=node, role="run", actor=HARNESS, node=node,
                            occurred_at=when)
        acc = perf.get("accuracy_score") if isinstance(perf, dict) else None
        if is_number(acc) and math.isfinite(acc):
            session.score_events({"accuracy_score": acc}, lineage=lineage, record=node, node=node, actor=HARNESS,
                                 occurred_at=when, primary="accuracy_score", caused_by=rid)

    rest = [p for p in d.rglob("*") if p.is_file() and p not in consumed]
    consumed.update(rest)
    keep_files(session, rest, root=root, lineage=lineage, record=node, actor=SYSTEM, node=node, occurred_at=when)
