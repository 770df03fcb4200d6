"""AIDE (Weco): the agent's ``journal.json``.

PATH is a ``journal.json``, a log folder holding one, or a folder of log folders (one lineage
each). The journal is ``{"nodes": [...], "node2parent": {child: parent}}``; each node has id,
plan, code, step, ctime, metric ``{value, maximize}``, is_buggy, analysis, exec_time,
exc_type, exc_info, exc_stack and ``_term_out``. Mapping (node id = AIDE's id):

- ``node_created`` by the agent (``ai:<agent.code.model from config.yaml>``, else ``ai:aide``):
  AIDE drafts its first solutions itself, so even roots are the AI's. parents from
  ``node2parent`` (or a node's own ``parent`` id in older journals); ``stage`` draft / debug /
  improve as AIDE defines it; buggy nodes are kept with ``status: failed`` and ``is_buggy: true``;
- ``proposal`` = ``plan``; ``code_diff`` = ``code`` as ``runfile.py``, diffed against the parent's code;
- ``run`` (``system:aide-interpreter``): status ``ok`` / ``failed`` (``exc_type`` set) /
  ``timeout`` (``TimeoutError``), ``exec_time`` as duration, terminal output and exception kept;
- ``review`` by AIDE's feedback LLM (``agent.feedback.model``, else the coding actor):
  ``analysis`` as text, verdict ``reject`` when buggy else ``approve``;
- ``score`` ``validation_metric`` with ``higher_is_better`` = ``maximize`` when the value is a
  finite number (buggy nodes have none), by the same feedback LLM: AIDE has the LLM read the
  metric off the program's output, so when one model writes and judges (the default), the
  self-evaluation signal rightly fires.

Memory: a journal is one JSON document and is parsed whole; code for diffs comes from it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from lineage.importers.base import (
    DEFAULT_ACTORS,
    Actors,
    ImportSession,
    clean,
    is_number,
    keep_files,
    load_json_text,
    merge,
    model_actor,
    read_text,
    text_and_object,
)

FORMAT = "aide"
DESCRIPTION = "AIDE journal.json (nodes with plan, code, metric, is_buggy; node2parent)"
INTERPRETER = "system:aide-interpreter"
DEFAULT_AI = "ai:aide"
CODE_FILE = "runfile.py"


def _journals(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / "journal.json").is_file():
        return [path / "journal.json"]
    return sorted(path.rglob("journal.json"))


def count_records(path: Path) -> int | None:
    return None


def _models(d: Path) -> tuple[str | None, str | None]:
    """(agent.code.model, agent.feedback.model) from the log folder's config.yaml."""
    cfg = d / "config.yaml"
    if not cfg.is_file():
        return None, None
    text = read_text(cfg)
    try:
        import yaml

        agent = (yaml.safe_load(text) or {}).get("agent") or {}
        return (agent.get("code") or {}).get("model"), (agent.get("feedback") or {}).get("model")
    except ImportError:
        def find(section: str) -> str | None:
            m = re.search(rf"^\s*{section}:\s*\n(?:\s+\w+:.*\n)*?\s+model:\s*[\"']?([^\"'\s#]+)", text, re.M)
            return m.group(1) if m else None

        return find("code"), find("feedback")
    except Exception:  # noqa: BLE001 - a broken config only costs us the model names
        return None, None


def run(session: ImportSession, path: Path, *, lineage: str | None = None, actors: Actors = DEFAULT_ACTORS) -> None:
    path = Path(path)
    journals = _journals(path)
    if not journals:
        session.warn(f"{path}: no journal.json found")
        return
    for j in journals:
        if len(journals) == 1:
            default = j.parent.name if j.name == "journal.json" else j.stem
            name = lineage or default
        else:
            name = f"{lineage or path.name}/{j.parent.relative_to(path).as_posix()}"
        _import_journal(session, j, name, actors, consume_folder=len(journals) == 1 and path.is_dir())


def _import_journal(session: ImportSession, f: Path, lineage: str, actors: Actors, consume_folder: bool) -> None:
    session.add_lineage(lineage)
    try:
        data = load_json_text(read_text(f))
    except ValueError as exc:
        session.advance(1)
        session.unmapped(lineage=lineage, record=f.name, reason=f"not valid JSON: {exc}", raw=f.read_bytes())
        return
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        session.advance(1)
        session.unmapped(lineage=lineage, record=f.name, reason="no `nodes` list: not an AIDE journal", raw=data)
        return
    code_model, feedback_model = _models(f.parent)
    ai = actors.ai_or(model_actor(code_model, DEFAULT_AI))
    judge = actors.ai_or(model_actor(feedback_model, ai))
    n2p = data.get("node2parent") if isinstance(data.get("node2parent"), dict) else {}
    by_id = {n["id"]: n for n in nodes if isinstance(n, dict) and isinstance(n.get("id"), str)}
    extra_top = {k: v for k, v in data.items() if k not in ("nodes", "node2parent")}
    if extra_top:
        session.event("annotation", merge(extra_top, {"text": "AIDE journal fields besides its nodes", "topic": "journal"}),
                      lineage=lineage, record=f"{f.name}#top", role="annotation", actor="system:aide")

    def parent_of(n: dict) -> str | None:
        p = n2p.get(n.get("id"))
        if p is None and isinstance(n.get("parent"), str):
            p = n["parent"]
        elif p is None and isinstance(n.get("parent"), dict):
            p = n["parent"].get("id")
        return p if isinstance(p, str) else None

    def buggy(nid: str | None) -> bool:
        n = by_id.get(nid) if nid else None
        return bool(n and n.get("is_buggy"))

    ordered = sorted((n for n in nodes if isinstance(n, dict)), key=lambda n: (n.get("step") if isinstance(n.get("step"), int) else 1 << 30, str(n.get("id"))))
    for i, n in enumerate(nodes):
        if not isinstance(n, dict) or not isinstance(n.get("id"), str):
            session.advance(1)
            session.unmapped(lineage=lineage, record=f"{f.name}#nodes[{i}]", reason="node without a string id", raw=n)
    for n in ordered:
        nid = n.get("id")
        if not isinstance(nid, str):
            continue
        session.advance(1)
        session.node_found()
        parent = parent_of(n)
        when = n.get("ctime") if is_number(n.get("ctime")) else None
        stage = "draft" if parent is None else ("debug" if buggy(parent) else "improve")
        is_buggy = n.get("is_buggy")
        if parent is not None and parent not in by_id:
            session.missing_parent(nid, parent)
        kept = {k: v for k, v in n.items() if k not in ("id", "code", "plan", "parent", "children", "_term_out",
                                                          "exc_info", "exc_stack", "analysis", "metric")}
        payload: dict[str, Any] = merge(kept, {"parents": [parent] if parent else [], "stage": stage,
                                               "status": "failed" if is_buggy else "candidate"})
        if isinstance(n.get("children"), list) and n["children"]:
            payload["children"] = n["children"]
        if parent is not None and parent not in by_id:
            payload["parent_missing"] = True
        session.event("node_created", payload, lineage=lineage, record=nid, role="node", actor=ai, node=nid,
                      occurred_at=when, raw={k: v for k, v in n.items() if k != "code"})

        plan = n.get("plan")
        if isinstance(plan, str) and plan.strip():
            idea, more = text_and_object(session, plan)
            session.event("proposal", {"idea": idea, **more}, lineage=lineage, record=nid, role="proposal", actor=ai,
                          node=nid, occurred_at=when)

        code = n.get("code")
        if isinstance(code, str):
            pcode = by_id.get(parent, {}).get("code") if parent else ""
            before = {} if parent is None else ({CODE_FILE: pcode.encode()} if isinstance(pcode, str) else None)
            diff = session.tree_diff_payload(before, {CODE_FILE: code.encode()})
            diff["code_object"] = session.put_object(code)
            session.event("code_diff", diff, lineage=lineage, record=nid, role="code_diff", actor=ai, node=nid,
                          occurred_at=when)

        exc_type = n.get("exc_type")
        if any(k in n for k in ("exec_time", "exc_type", "_term_out")):
            status = "ok" if not exc_type else ("timeout" if "timeout" in str(exc_type).lower() else "failed")
            term = n.get("_term_out")
            run_payload: dict[str, Any] = {"command": f"python {CODE_FILE}", "status": status}
            et = n.get("exec_time")
            if is_number(et) and math.isfinite(et) and et >= 0:
                run_payload["duration_s"] = float(et)
            if exc_type:
                run_payload["exc_type"] = exc_type
            for k in ("exc_info", "exc_stack"):
                if n.get(k) is not None:
                    run_payload[k] = n[k]
            if isinstance(term, list):
                run_payload["term_out"] = "".join(str(t) for t in term)
            elif term is not None:
                run_payload["term_out"] = term
            rid = session.event("run", run_payload, lineage=lineage, record=nid, role="run", actor=INTERPRETER,
                                node=nid, occurred_at=when)
        else:
            rid = None

        analysis = n.get("analysis")
        if isinstance(analysis, str) and analysis.strip() or is_buggy is not None:
            verdict = "reject" if is_buggy else ("approve" if is_buggy is False else "comment")
            text, more = text_and_object(session, analysis) if isinstance(analysis, str) and analysis.strip() else (None, {})
            session.event("review", {"verdict": verdict, **({"text": text} if text else {}), **more,
                                     "is_buggy": is_buggy, "note": "AIDE's feedback LLM judging the agent's own node"},
                          lineage=lineage, record=nid, role="review", actor=judge, node=nid, occurred_at=when)

        metric = n.get("metric")
        value = metric.get("value") if isinstance(metric, dict) else metric
        maximize = metric.get("maximize") if isinstance(metric, dict) else None
        if is_number(value) and math.isfinite(value):
            payload = {"metric": "validation_metric", "value": float(value), "split": "public",
                       "higher_is_better": maximize is not False, "primary": True, "source_split": "validation",
                       "note": "read off the program's output by AIDE's feedback LLM"}
            if maximize is None:
                payload["higher_is_better_inferred"] = True
            session.event("score", payload, lineage=lineage, record=nid, role="score:public:validation_metric",
                          actor=judge, node=nid, occurred_at=when, caused_by=rid)
        elif metric is not None and value is not None:
            session.warn(f"node {nid}: metric {clean(value)!r} is not a finite number; kept in the node payload")
            session.event("annotation", {"text": f"metric not a finite number: {clean(value)!r}", "topic": "metric",
                                         "metric": metric}, lineage=lineage, record=nid, role="metric",
                          actor=INTERPRETER, node=nid, occurred_at=when)
    if consume_folder:
        rest = [p for p in f.parent.rglob("*") if p.is_file() and p != f]
        keep_files(session, rest, root=f.parent, lineage=lineage, record="files", actor="system:aide")
