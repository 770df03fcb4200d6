"""One-line, human-readable summaries of events, shared by `lineage log`, `show` and the UI."""

from __future__ import annotations

from typing import Any


def _short(text: Any, n: int = 60) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def summarize(kind: str, p: dict[str, Any]) -> str:
    if kind == "node_created":
        parents = p.get("parents") or []
        head = f"from {', '.join(parents)}" if parents else "root"
        return _short(f"{head}" + (f" · {p['label']}" if p.get("label") else ""))
    if kind == "proposal":
        return _short(p.get("idea", ""))
    if kind == "code_diff":
        files = p.get("paths") or []
        where = files[0] if len(files) == 1 else f"{len(files)} files"
        return f"+{p.get('lines_added', 0)} -{p.get('lines_removed', 0)} in {_short(where, 40)}"
    if kind == "dataset":
        return _short(f"{p.get('role')} {p.get('name')}" + (f" ({p['rows']} rows)" if p.get("rows") is not None else ""))
    if kind == "run":
        cmd = p.get("command")
        cmd = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
        dur = f" {p['duration_s']:.2f}s" if isinstance(p.get("duration_s"), int | float) else ""
        return _short(f"{p.get('status')}{dur} · {cmd}")
    if kind == "checkpoint":
        return _short(f"{p.get('uri')}" + (f" step {p['step']}" if p.get("step") is not None else ""))
    if kind == "score":
        v = p.get("value")
        val = f"{v:.6g}" if isinstance(v, int | float) else str(v)
        return f"{p.get('metric')}={val} ({p.get('split', 'public')})"
    if kind == "review":
        return _short(f"{p.get('verdict')}" + (f": {p['text']}" if p.get("text") else ""))
    if kind == "selection":
        return _short(f"{p.get('purpose', 'best')} → {p.get('node')}" + (f": {p['reason']}" if p.get("reason") else ""))
    if kind == "annotation":
        return _short((f"[{p['topic']}] " if p.get("topic") else "") + str(p.get("text", "")))
    if kind == "retraction":
        return _short(f"retracts {p.get('event_id')}: {p.get('reason')}")
    if kind == "branch_created":
        return _short(f"{p.get('name')} at {p.get('from_node')}")
    if kind == "replay":
        return _short(f"{p.get('outcome')}" + (f": {p['reason']}" if p.get("reason") else ""))
    return _short(p)
