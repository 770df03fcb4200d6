"""OpenEvolve: a program database folder or a checkpoint folder.

Accepted layouts (PATH may be any of them, or a folder holding several runs):

- a database folder: ``programs/<id>.json`` (and maybe ``best/``);
- a checkpoint folder: ``metadata.json``, ``programs/``, ``best_program_info.json``;
- an output folder: ``checkpoints/checkpoint_N/...`` and ``best/``. Every checkpoint is
  read (newest first, a program id is taken from the newest checkpoint holding it), so a
  program pruned between checkpoints is still imported.

Mapping, per program (node id = the program's id):

- ``node_created`` (parents = [parent_id]; status ``failed`` when ``combined_score`` is not
  finite, else ``candidate``; ``migrant: true`` for island migrants; every source field other
  than code, metrics and prompts kept in the payload). Actor: the generation-0 seed with no
  parent ``human:``; a migrant copy ``system:openevolve`` (the system copied it); every other
  program ``ai:<model>`` (the LLM named in the run's ``config.yaml`` when present, else
  ``ai:openevolve-llm``).
- ``proposal`` (AI programs with ``metadata.changes`` or ``prompts``): idea = the change
  summary; the prompts and responses are kept (large ones as objects).
- ``code_diff``: the code is stored as an object (``code_object``) and as a one-file tree
  snapshot (``program.<ext>``, ext from ``best/best_program.<ext>`` when present, because
  OpenEvolve labels C++ as "python"); the diff is computed against the parent's code. A
  pruned parent has no code: the diff is left out (``base_unknown: true``) and the snapshot
  alone lets replay materialize the node.
- ``run`` (``system:openevolve-evaluator``): the evaluation, status ``failed`` when the
  primary metric is -Infinity/NaN (the raw value kept as a string in ``raw_value``).
- ``score`` per finite numeric or boolean metric (booleans as 1.0/0.0 with ``raw_value``),
  ``combined_score`` marked ``primary``; non-finite metrics are never scores.
- ``selection`` (``system:openevolve``, purpose ``best``) per ``best_program_info.json``.
- checkpoint ``metadata.json`` -> ``annotation`` (topic ``checkpoint``);
  ``best/post_evolution_evaluation_result.json`` -> ``run`` + ``score`` on split ``heldout``.
- Any other file (logs, config, best_program.*) -> one ``annotation`` listing the files as objects.

Memory: the first pass keeps (id, parent, timestamp, generation, path) per program; code is
read again from each program's file when needed and cached in an LRU of ``CODE_CACHE``
programs, so memory grows with the number of programs by ~200 bytes each, not with code size.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
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
)

FORMAT = "openevolve"
DESCRIPTION = "OpenEvolve program database, checkpoint, or output folder (programs/<id>.json)"
CODE_CACHE = 1024
CODE_CACHE_CHARS = 32 << 20  # and at most ~32 MB of code
EVALUATOR = "system:openevolve-evaluator"
SYSTEM = "system:openevolve"
DEFAULT_AI = "ai:openevolve-llm"
PRIMARY = "combined_score"

EXT = {"python": "py", "cpp": "cpp", "c++": "cpp", "c": "c", "rust": "rs", "javascript": "js",
       "typescript": "ts", "go": "go", "java": "java", "julia": "jl", "lean": "lean", "r": "r",
       "text": "txt", "verilog": "v", "cuda": "cu", "zig": "zig", "swift": "swift", "kotlin": "kt"}


@dataclass
class RunRoot:
    """One OpenEvolve run: its program folders (newest checkpoint first) and side files."""

    name: str
    root: Path
    program_dirs: list[Path] = field(default_factory=list)
    info_dirs: list[Path] = field(default_factory=list)  # folders that may hold best_program_info.json / metadata.json


def _checkpoint_key(p: Path) -> tuple[int, str]:
    m = re.search(r"(\d+)$", p.name)
    return (int(m.group(1)) if m else -1, p.name)


def _as_run(d: Path) -> RunRoot | None:
    if (d / "programs").is_dir():
        name = d.parent.parent.name if d.parent.name == "checkpoints" else d.name
        run = RunRoot(name=name, root=d, program_dirs=[d / "programs"], info_dirs=[d])
        if (d / "best").is_dir():
            run.info_dirs.append(d / "best")
        return run
    cps_dir = d if d.name == "checkpoints" else d / "checkpoints"
    if cps_dir.is_dir():
        cps = sorted((c for c in cps_dir.iterdir() if (c / "programs").is_dir()), key=_checkpoint_key, reverse=True)
        if cps:
            root = cps_dir.parent
            run = RunRoot(name=root.name, root=root, program_dirs=[c / "programs" for c in cps], info_dirs=list(cps))
            if (root / "best").is_dir():
                run.info_dirs.append(root / "best")
            return run
    return None


def find_runs(path: Path, depth: int = 3) -> list[RunRoot]:
    run = _as_run(path)
    if run is not None:
        return [run]
    if depth == 0 or not path.is_dir():
        return []
    out: list[RunRoot] = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        out.extend(find_runs(sub, depth - 1))
    return out


def count_records(path: Path) -> int | None:
    return sum(len(_program_files(d)) for run in find_runs(Path(path)) for d in run.program_dirs) or None


def _program_files(d: Path) -> list[str]:
    """File names of ``programs/*.json``, as plain strings: a Path per file would be interned
    by pathlib and never freed, which is memory that grows with the database."""
    with os.scandir(d) as it:
        return sorted(e.name for e in it if e.name.endswith(".json") and e.is_file())


def _config_models(run: RunRoot) -> list[str]:
    """LLM names from the run's config.yaml (``llm.models[].name`` or ``primary_model``)."""
    for d in (run.root, run.root.parent, *run.info_dirs):
        cfg = d / "config.yaml"
        if not cfg.is_file():
            continue
        text = read_text(cfg)
        try:
            import yaml  # optional

            data = yaml.safe_load(text) or {}
            llm = data.get("llm") or {}
            names = [m.get("name") for m in llm.get("models") or [] if isinstance(m, dict) and m.get("name")]
            if not names and llm.get("primary_model"):
                names = [llm["primary_model"]]
            return [str(n) for n in names]
        except ImportError:
            names = re.findall(r"^\s*-?\s*name:\s*[\"']?([^\"'#\n]+?)[\"']?\s*$", text, re.M)
            if not names:
                names = re.findall(r"^\s*primary_model:\s*[\"']?([^\"'#\n]+?)[\"']?\s*$", text, re.M)
            return names
        except Exception:  # noqa: BLE001 - a broken config only costs us the model name
            return []
    return []


def _ext(run: RunRoot, language: str | None) -> str:
    for d in run.info_dirs:
        for f in sorted(d.glob("best_program.*")):
            if f.suffix and f.suffix != ".json":
                return f.suffix[1:]
    return EXT.get((language or "").lower(), "txt")


def run(session: ImportSession, path: Path, *, lineage: str | None = None, actors: Actors = DEFAULT_ACTORS) -> None:
    path = Path(path)
    runs = find_runs(path)
    if not runs:
        session.warn(f"no OpenEvolve programs/ folder found under {path}")
        return
    for r in runs:
        if len(runs) == 1:
            name = lineage or r.name
        else:
            rel = r.root.relative_to(path).as_posix() if r.root != path else r.name
            name = f"{lineage or path.name}/{rel}"
        _import_run(session, r, name, actors)


def _import_run(session: ImportSession, run_root: RunRoot, lineage: str, actors: Actors) -> None:
    session.add_lineage(lineage)
    base = run_root.root

    # Pass 1: index every program (newest checkpoint wins), without keeping code.
    # id -> (parent, timestamp, generation, iteration, program folder number, file name or None)
    index: dict[str, tuple[str | None, float, int, int, int, str]] = {}
    language = None
    for di, d in enumerate(run_root.program_dirs):
        dir_rel = d.relative_to(base).as_posix()
        for name in _program_files(d):
            f = d / name
            rel = f"{dir_rel}/{name}"
            try:
                rec = load_json_text(read_text(f))
            except ValueError as exc:
                if name.removesuffix(".json") not in index:
                    session.advance(1)
                    session.unmapped(lineage=lineage, record=rel, reason=f"not valid JSON: {exc}", raw=f.read_bytes())
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("id", name.removesuffix(".json")), str):
                session.advance(1)
                session.unmapped(lineage=lineage, record=rel, reason="not an OpenEvolve program object", raw=rec)
                continue
            pid = rec.get("id") or name.removesuffix(".json")
            if pid in index:
                continue  # an older checkpoint's copy of a program already indexed
            parent = rec.get("parent_id")
            ts = rec.get("timestamp")
            ts = float(ts) if is_number(ts) and math.isfinite(ts) else math.inf
            gen = rec.get("generation") if isinstance(rec.get("generation"), int) else 0
            it = rec.get("iteration_found") if isinstance(rec.get("iteration_found"), int) else 0
            pid = sys.intern(pid)
            parent = sys.intern(parent) if isinstance(parent, str) and parent else None
            # the file name is kept only when it is not "<id>.json" (it nearly always is)
            index[pid] = (parent, ts, gen, it, di, None if name == f"{pid}.json" else name)
            if language is None and isinstance(rec.get("language"), str):
                language = rec["language"]

    models = _config_models(run_root)
    ai_actor = actors.ai_or(model_actor("+".join(models), DEFAULT_AI) if models else DEFAULT_AI)
    fname = f"program.{_ext(run_root, language)}"
    cache: LRU = LRU(CODE_CACHE, max_chars=CODE_CACHE_CHARS)

    def file_of(pid: str) -> Path:
        entry = index[pid]
        return run_root.program_dirs[entry[4]] / (entry[5] or f"{pid}.json")

    def code_of(pid: str) -> str | None:
        code = cache.get(pid)
        if code is None and pid in index:
            try:
                code = load_json_text(read_text(file_of(pid))).get("code")
            except (ValueError, OSError, AttributeError):
                code = None
            if isinstance(code, str):
                cache.put(pid, code)
        return code if isinstance(code, str) else None

    # Pass 2: parents before children (creation time, then generation).
    order = sorted(index, key=lambda k: (index[k][1], index[k][2], index[k][3], k))
    for pid in order:
        f = file_of(pid)
        session.advance(1)
        rec = load_json_text(read_text(f))
        _program(session, rec, pid, lineage=lineage, rel=f"{f.parent.relative_to(base).as_posix()}/{f.name}", index=index,
                 code_of=code_of, cache=cache, fname=fname, ai_actor=ai_actor, actors=actors, models=models)

    consumed: set[Path] = set()
    _side_files(session, run_root, lineage, index, code_of, consumed)


def _program(session, rec: dict, pid: str, *, lineage, rel, index, code_of, cache, fname, ai_actor, actors, models) -> None:
    session.node_found()
    parent = index[pid][0]
    ts = rec.get("timestamp") if is_number(rec.get("timestamp")) else None
    meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
    migrant = bool(meta.get("migrant"))
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    primary = PRIMARY if PRIMARY in metrics else None
    pv = metrics.get(primary) if primary else None
    failed = primary is not None and not scorable(pv)

    if migrant:
        maker = SYSTEM
    elif parent is None:
        maker = actors.human
    else:
        maker = ai_actor
    parent_known = parent is not None and parent in index
    if parent is not None and not parent_known:
        session.missing_parent(pid, parent)

    kept = {k: v for k, v in rec.items() if k not in ("id", "parent_id", "code", "metrics", "prompts")}
    ours: dict[str, Any] = {
        "parents": [parent] if parent else [],
        "status": "failed" if failed else "candidate",
        "source_file": rel,
    }
    if "island" in meta:
        ours["island"] = meta["island"]
    if migrant:
        ours["migrant"] = True
        ours["label"] = f"migrant copy of {parent}" if parent else "migrant"
    elif parent is None:
        ours["label"] = "seed program"
    if parent is not None and not parent_known:
        ours["parent_missing"] = True
    if models:
        ours["llm_models"] = models
    node_payload = merge(kept, ours)
    session.event("node_created", node_payload, lineage=lineage, record=pid, role="node", actor=maker,
                  node=pid, occurred_at=ts, raw={k: v for k, v in rec.items() if k != "code"})

    prompts = rec.get("prompts")
    changes = meta.get("changes")
    if maker == ai_actor and (changes or prompts):
        idea = changes if isinstance(changes, str) and changes.strip() else "program change proposed by the LLM"
        prop: dict[str, Any] = {"idea": idea[:16000]}
        if prompts:
            prop["prompts"] = prompts
        session.event("proposal", prop, lineage=lineage, record=pid, role="proposal", actor=maker,
                      node=pid, occurred_at=ts)

    code = rec.get("code")
    if isinstance(code, str):
        cache.put(pid, code)
        after = {fname: code.encode()}
        if parent is None:
            before: dict | None = {}
        else:
            pcode = code_of(parent) if parent_known else None
            before = {fname: pcode.encode()} if pcode is not None else None
        diff = session.tree_diff_payload(before, after)
        diff["code_object"] = session.put_object(code)
        diff["language"] = rec.get("language")
        if isinstance(changes, str):
            diff["changes"] = changes
        if migrant:
            diff["copy_of"] = parent
        session.event("code_diff", diff, lineage=lineage, record=pid, role="code_diff", actor=maker,
                      node=pid, occurred_at=ts)
    else:
        session.warn(f"{rel}: program has no code")

    if metrics:
        run_payload: dict[str, Any] = {
            "command": "openevolve evaluate",
            "status": "failed" if failed else "ok",
            "metrics": clean(metrics),
        }
        not_scored = {k: clean(v) for k, v in metrics.items() if not scorable(v)}
        if not_scored:
            run_payload["not_scored"] = not_scored
        if failed:
            run_payload["failed_metric"] = primary
            run_payload["raw_value"] = clean(pv)
        if migrant:
            run_payload["copied_from"] = parent
            run_payload["note"] = "a migrant keeps the metrics of the program it copies"
        run_id = session.event("run", run_payload, lineage=lineage, record=pid, role="run", actor=EVALUATOR,
                               node=pid, occurred_at=ts)
        session.score_events(metrics, lineage=lineage, record=pid, node=pid, actor=EVALUATOR, occurred_at=ts,
                             primary=primary, caused_by=run_id)


def _claim_json(session, path: Path, base: Path, lineage: str, consumed: set[Path]) -> tuple[str, Any]:
    """Take a side file as consumed and parse it; one that is not JSON is kept as unmapped
    (raw bytes and the reason) and comes back as None."""
    consumed.add(path)
    rel = path.relative_to(base).as_posix()
    session.advance(1)
    try:
        return rel, load_json_text(read_text(path))
    except ValueError as exc:
        session.unmapped(lineage=lineage, record=rel, reason=f"not valid JSON: {exc}", raw=path.read_bytes())
        return rel, None


def _side_files(session, run_root: RunRoot, lineage: str, index, code_of, consumed: set[Path]) -> None:
    base = run_root.root
    for d in run_root.info_dirs:
        info_f = d / "best_program_info.json"
        best_id = None
        if info_f.is_file():
            rel, info = _claim_json(session, info_f, base, lineage, consumed)
            if isinstance(info, dict) and isinstance(info.get("id"), str):
                best_id = info["id"]
                payload: dict[str, Any] = {"node": best_id, "purpose": "best",
                                           "reason": f"OpenEvolve's best program ({rel})", "info": info}
                if best_id not in index:
                    payload["node_missing"] = True
                for bf in sorted(d.glob("best_program.*")):
                    if bf.suffix == ".json":
                        continue
                    consumed.add(bf)
                    text = read_text(bf)
                    code = code_of(best_id)
                    payload["best_program_file"] = {"name": bf.name, **session.put_file(bf),
                                                    "same_as_node_code": code is not None and code == text}
                when = info.get("saved_at") if is_number(info.get("saved_at")) else info.get("timestamp")
                session.event("selection", payload, lineage=lineage, record=rel, role="selection", actor=SYSTEM,
                              node=best_id, occurred_at=when if is_number(when) else file_time(info_f))
            elif info is not None:
                session.unmapped(lineage=lineage, record=rel, reason="best_program_info.json has no program id", raw=info)

        meta_f = d / "metadata.json"
        if meta_f.is_file():
            rel, meta = _claim_json(session, meta_f, base, lineage, consumed)
            if meta is not None:
                summary = []
                if isinstance(meta, dict):
                    if "last_iteration" in meta:
                        summary.append(f"last iteration {meta['last_iteration']}")
                    if meta.get("best_program_id"):
                        summary.append(f"best {meta['best_program_id']}")
                    if isinstance(meta.get("islands"), list):
                        summary.append(f"{len(meta['islands'])} islands")
                session.event("annotation", {"text": f"OpenEvolve checkpoint {d.name}: " + (", ".join(summary) or "metadata"),
                                             "topic": "checkpoint", "checkpoint": d.name, "metadata": meta},
                              lineage=lineage, record=rel, role="checkpoint", actor=SYSTEM,
                              occurred_at=file_time(meta_f))

        post_f = d / "post_evolution_evaluation_result.json"
        if post_f.is_file():
            rel, post = _claim_json(session, post_f, base, lineage, consumed)
            if isinstance(post, dict) and best_id:
                metrics = post.get("metrics") if isinstance(post.get("metrics"), dict) else {}
                pv = metrics.get(PRIMARY)
                failed = PRIMARY in metrics and not scorable(pv)
                run_payload = {"command": "openevolve post-evolution evaluation", "status": "failed" if failed else "ok",
                               "split": "heldout", "result": post}
                if failed:
                    run_payload["raw_value"] = clean(pv)
                when = file_time(post_f)
                rid = session.event("run", run_payload, lineage=lineage, record=rel, role="run", actor=EVALUATOR,
                                    node=best_id, occurred_at=when)
                session.score_events(metrics, lineage=lineage, record=rel, node=best_id, actor=EVALUATOR,
                                     occurred_at=when, split="heldout", primary=PRIMARY if PRIMARY in metrics else None,
                                     caused_by=rid)
            elif post is not None:
                session.unmapped(lineage=lineage, record=rel,
                                 reason="post-evolution result without a best program to attach it to", raw=post)

    program_dirs = {str(d) for d in run_root.program_dirs}
    rest = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        in_programs = dirpath in program_dirs
        for fn in filenames:
            if in_programs and fn.endswith(".json"):
                continue  # program records, imported above
            p = Path(dirpath) / fn
            if p not in consumed and p.is_file():
                rest.append(p)
    keep_files(session, rest, root=base, lineage=lineage, record="files", actor=SYSTEM)
