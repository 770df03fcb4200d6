"""ADAS (Automated Design of Agentic Systems): a meta-agent archive JSON.

The archive is a JSON list of ``{thought, name, code, generation, fitness, test_fitness}``.
ADAS records no ids and no parent links: the meta agent wrote each new agent conditioned on
the whole archive before it. So:

- node id = ``<index>-<slug of name>`` (index in the archive, zero-padded; the archive is
  append-only, so ids stay stable when a growing archive is imported again);
- ``parents`` is always empty: no lineage edge is invented. Instead ``node_created`` carries
  ``conditioned_on`` (the ids of every earlier archive entry) and
  ``conditioned_on_count``; seeds (``generation: "initial"``) are conditioned on nothing;
- actor: ``generation: "initial"`` -> a hand-written seed (``human:``); others -> the meta
  agent (``ai:adas-meta-agent`` unless ``--ai-actor`` names the model);
- ``proposal`` = the agent's ``thought``; ``code_diff`` = the ``forward`` code as a one-file
  tree (``agent.py``) added from nothing;
- ``run`` (``system:adas-evaluator``) keeps the raw fitness strings; ``score`` ``fitness``
  = the median parsed from ``"95% Bootstrap Confidence Interval: (lo%, hi%), Median: m%"``,
  in percent as printed, with ``ci_low``/``ci_high``: ``fitness`` on split ``public`` (ADAS's
  validation set, ``source_split: "validation"``) and ``test_fitness`` on split ``heldout``.
  A fitness string that does not parse stays in the run payload and is reported as a warning.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lineage.importers.base import (
    DEFAULT_ACTORS,
    Actors,
    ImportSession,
    clean,
    file_time,
    load_json_text,
    merge,
    read_text,
    slug,
)

FORMAT = "adas"
DESCRIPTION = "ADAS meta-agent archive JSON (list of thought, name, code, generation, fitness, test_fitness)"
EVALUATOR = "system:adas-evaluator"
DEFAULT_AI = "ai:adas-meta-agent"

_FITNESS = re.compile(
    r"Confidence Interval:\s*\(\s*(?P<lo>-?[\d.]+)\s*%?\s*,\s*(?P<hi>-?[\d.]+)\s*%?\s*\)\s*,\s*Median:\s*(?P<med>-?[\d.]+)\s*%?",
    re.I)
_MEDIAN = re.compile(r"Median:\s*(?P<med>-?[\d.]+)\s*%?", re.I)


def parse_fitness(value: Any) -> dict | None:
    """{"value", "ci_low", "ci_high", "unit"} from an ADAS fitness string (or a plain number)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"value": float(value)}
    if not isinstance(value, str):
        return None
    m = _FITNESS.search(value)
    if m:
        return {"value": float(m["med"]), "ci_low": float(m["lo"]), "ci_high": float(m["hi"]), "unit": "%"}
    m = _MEDIAN.search(value)
    if m:
        return {"value": float(m["med"]), "unit": "%"}
    return None


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.json") if p.is_file())


def count_records(path: Path) -> int | None:
    n = 0
    for f in _files(Path(path)):
        try:
            data = load_json_text(read_text(f))
        except (ValueError, OSError):
            n += 1
            continue
        n += len(data) if isinstance(data, list) else 1
    return n


def run(session: ImportSession, path: Path, *, lineage: str | None = None, actors: Actors = DEFAULT_ACTORS) -> None:
    files = _files(Path(path))
    for f in files:
        if len(files) == 1:
            name = lineage or f.stem
        else:
            name = f"{lineage or Path(path).name}/{f.relative_to(path).with_suffix('').as_posix()}"
        _import_file(session, f, name, actors)


def _import_file(session: ImportSession, f: Path, lineage: str, actors: Actors) -> None:
    session.add_lineage(lineage)
    try:
        data = load_json_text(read_text(f))
    except ValueError as exc:
        session.advance(1)
        session.unmapped(lineage=lineage, record=f.name, reason=f"not valid JSON: {exc}", raw=f.read_bytes())
        return
    if not isinstance(data, list):
        session.advance(1)
        session.unmapped(lineage=lineage, record=f.name, reason="an ADAS archive is a JSON list of agents", raw=data)
        return
    ai_actor = actors.ai_or(DEFAULT_AI)
    base_time = file_time(f) or 0.0
    earlier: list[str] = []
    for i, entry in enumerate(data):
        session.advance(1)
        record = f"{f.name}[{i}]"
        when = base_time + i * 1e-3  # the archive has no times: keep its order
        if not isinstance(entry, dict):
            session.unmapped(lineage=lineage, record=record, reason="archive entry is not an object", raw=entry)
            continue
        name = entry.get("name") if isinstance(entry.get("name"), str) else f"agent {i}"
        node = f"{i:03d}-{slug(name)}"
        gen = entry.get("generation")
        seed = gen == "initial"
        maker = actors.human if seed else ai_actor
        session.node_found()
        kept = {k: v for k, v in entry.items() if k not in ("code", "thought", "fitness", "test_fitness")}
        node_payload: dict[str, Any] = merge(kept, {
            "parents": [],
            "label": name,
            "archive_index": i,
            "seed": seed,
            "conditioned_on": [] if seed else list(earlier),
            "conditioned_on_count": 0 if seed else len(earlier),
            "note": "ADAS records no parents; a generated agent was conditioned on the archive before it",
        })
        if "generation" in entry:
            node_payload["source_generation"] = gen
        session.event("node_created", node_payload, lineage=lineage, record=record, role="node", actor=maker,
                      node=node, occurred_at=when, raw=entry)

        thought = entry.get("thought")
        if isinstance(thought, str) and thought.strip():
            session.event("proposal", {"idea": thought[:16000], "name": name}, lineage=lineage, record=record,
                          role="proposal", actor=maker, node=node, occurred_at=when)
        elif thought is not None:
            session.event("proposal", {"idea": str(clean(thought))[:16000] or "(empty thought)", "name": name,
                                       "thought": thought},
                          lineage=lineage, record=record, role="proposal", actor=maker, node=node, occurred_at=when)

        code = entry.get("code")
        if isinstance(code, str):
            diff = session.tree_diff_payload({}, {"agent.py": code.encode()})
            diff["code_object"] = session.put_object(code)
            session.event("code_diff", diff, lineage=lineage, record=record, role="code_diff", actor=maker,
                          node=node, occurred_at=when)
        elif code is not None:
            session.warn(f"{record}: code is not text; kept in the node payload")

        fit = parse_fitness(entry.get("fitness"))
        test = parse_fitness(entry.get("test_fitness"))
        if "fitness" in entry or "test_fitness" in entry:
            run_payload = {"command": "adas evaluate", "status": "ok",
                           "fitness": entry.get("fitness"), "test_fitness": entry.get("test_fitness")}
            rid = session.event("run", run_payload, lineage=lineage, record=record, role="run", actor=EVALUATOR,
                                node=node, occurred_at=when)
            for field, parsed, split in (("fitness", fit, "public"), ("test_fitness", test, "heldout")):
                if field not in entry:
                    continue
                if parsed is None:
                    session.warn(f"{record}: {field} {str(entry[field])[:80]!r} has no median to parse; kept in the run payload")
                    continue
                payload = {"metric": "fitness", "split": split, "higher_is_better": True, **parsed,
                           "raw": entry[field], "primary": True,
                           "source_split": "validation" if split == "public" else "test"}
                session.event("score", payload, lineage=lineage, record=record, role=f"score:{split}:fitness",
                              actor=EVALUATOR, node=node, occurred_at=when, caused_by=rid)
        earlier.append(node)
