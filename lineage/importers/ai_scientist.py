"""The AI Scientist (Sakana): one project folder, or a folder of several projects.

A project folder holds ``run_0/`` (the human-written baseline template's results), ``run_N.py``
(a snapshot of ``experiment.py`` as run N executed it) and ``run_N/final_info.json`` for each
run, the final ``experiment.py``, ``notes.txt``, ``review.txt``, ``ideas.json``,
``seed_ideas.json``, ``prompt.json`` and the aider transcript ``<time>_<idea>_aider.txt``.
A folder of several projects imports as several lineages (``NAME/<project>``).

Mapping (node ids ``run_0``, ``run_1``, ...; each run's parent is the run before it):

- ``run_0``: ``node_created`` by ``human:`` (the template's baseline; its code is not in the
  folder, so it has no code_diff); ``prompt.json`` -> an ``annotation`` (topic ``task``) by the
  same human.
- ``run_N``: ``node_created`` and ``code_diff`` by the AI (``ai:ai-scientist`` unless
  ``--ai-actor``). The diff is computed from ``run_{N-1}.py`` to ``run_N.py``; when the
  previous code is not in the folder (run_1: the template's code is absent) only a snapshot
  is recorded (``base_unknown: true``). The part of the aider transcript that produced run N
  is kept as an object (``transcript_object``) with its token and dollar cost.
  notes.txt's ``## Run N: title`` section -> a ``proposal`` (idea = title, rationale = its
  description; ``written_after_run: true`` since the AI writes notes after seeing results).
- every run with ``run_N/final_info.json`` -> a ``run`` (``system:ai-scientist``, command
  ``python experiment.py --out_dir=run_N``, status ``ok``; a run folder without results is
  ``failed``) and one ``score`` per numeric leaf (metric ``<dataset>/<metric>``, the
  ``means`` level dropped; ``higher_is_better`` inferred from the name: loss, time, KL... are
  minimised, and marked ``higher_is_better_inferred``). Other files in ``run_N/`` are kept as objects.
- ``ideas.json`` -> one ``proposal`` per idea with its ratings; the idea this project pursued
  (matched by notes.txt's title, else by name) is attached to ``run_1``, the others are
  lineage-level proposals (no node). Ideas copied from ``seed_ideas.json`` are ``human:``,
  generated ones the AI's. ``seed_ideas.json`` entries -> ``human:`` proposals.
- ``notes.txt`` -> ``annotation`` (topic ``notes``) by the AI on the last run;
  ``review.txt`` -> ``review`` by ``ai:ai-scientist-reviewer`` on the last run (verdict from
  ``Decision``: Accept -> approve, Reject -> reject, otherwise comment; every field kept).
- the whole aider transcript -> an ``annotation`` (topic ``transcript``) on the last run; the
  writeup part after the experiments is counted there.
- ``experiment.py``: if it differs from the last ``run_N.py`` it becomes a node ``final``
  (the AI's post-experiment edits); else it is noted on the last code_diff.
- any other file (plots, latex/, the paper) -> an ``annotation`` listing them as objects.

Times: the folder has no per-run timestamps. Events are dated from the transcript's
"aider chat started at" time (else the oldest file time), one second apart in record order.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lineage.importers.base import (
    DEFAULT_ACTORS,
    Actors,
    ImportSession,
    clean,
    file_time,
    is_number,
    keep_files,
    load_json_text,
    merge,
    read_text,
    text_and_object,
)

FORMAT = "ai-scientist"
DESCRIPTION = "AI Scientist project folder (run_N/final_info.json, run_N.py, ideas.json, notes.txt, review.txt, aider transcript)"
SYSTEM = "system:ai-scientist"
DEFAULT_AI = "ai:ai-scientist"
REVIEWER = "ai:ai-scientist-reviewer"

_RUN_DIR = re.compile(r"^run_(\d+)$")
_RUN_PY = re.compile(r"^run_(\d+)\.py$")
_AIDER = re.compile(r"^(?:(\d{8}_\d{6})_)?(.+?)_aider\.txt$")
_STAMP = re.compile(r"^\d{8}_\d{6}_")
_COST = re.compile(r"^>\s*([\d,]+)\s+prompt tokens,\s*([\d,]+)\s+completion tokens,\s*\$([\d.]+)\s+cost", re.M)
_RUN_DONE = re.compile(r"^#### Run (\d+) completed", re.M)
_PLOT = re.compile(r"^####.*\bplot\.py\b", re.M)
_STARTED = re.compile(r"^# aider chat started at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", re.M)


def is_project(d: Path) -> bool:
    if not d.is_dir():
        return False
    if (d / "run_0").is_dir() or any(_RUN_PY.match(p.name) for p in d.iterdir()):
        return True
    return (d / "experiment.py").is_file() and (d / "notes.txt").is_file()


def _projects(path: Path) -> list[Path]:
    if is_project(path):
        return [path]
    return sorted(p for p in path.iterdir() if is_project(p)) if path.is_dir() else []


def count_records(path: Path) -> int | None:
    n = 0
    for p in _projects(Path(path)):
        n += sum(1 for _ in p.iterdir())
    return n or None


def run(session: ImportSession, path: Path, *, lineage: str | None = None, actors: Actors = DEFAULT_ACTORS) -> None:
    path = Path(path)
    projects = _projects(path)
    if not projects:
        session.warn(f"{path} is not an AI Scientist project folder (no run_0/, run_N.py or experiment.py + notes.txt)")
        return
    shared_ideas = None
    if len(projects) > 1 or projects[0] != path:
        shared_ideas = _shared_ideas(session, path, lineage or path.name, actors)
    for p in projects:
        name = (lineage or p.name) if len(projects) == 1 and p == path else f"{lineage or path.name}/{p.name}"
        _Project(session, p, name, actors, shared_ideas).run()


def _shared_ideas(session: ImportSession, root: Path, base: str, actors: Actors) -> list | None:
    """Template-level ideas.json next to several projects: imported once into ``<base>/ideas``."""
    f = root / "ideas.json"
    if not f.is_file():
        return None
    lineage = f"{base}/ideas"
    session.add_lineage(lineage)
    seeds = _load_list(root / "seed_ideas.json") or []
    seed_keys = {(s.get("Name"), s.get("Title")) for s in seeds if isinstance(s, dict)}
    ideas = _load_list(f)
    if ideas is None:
        session.unmapped(lineage=lineage, record="ideas.json", reason="not a JSON list of ideas", raw=f.read_bytes())
        return None
    when = file_time(f)
    for i, idea in enumerate(ideas):
        session.advance(1)
        _idea_event(session, idea, lineage=lineage, record=f"ideas.json[{i}]", node=None,
                    actor=actors.human if _idea_key(idea) in seed_keys else actors.ai_or(DEFAULT_AI), when=when)
    return ideas


def _load_list(f: Path) -> list | None:
    if not f.is_file():
        return None
    try:
        data = load_json_text(read_text(f))
    except ValueError:
        return None
    return data if isinstance(data, list) else None


def _idea_key(idea: Any) -> tuple:
    return (idea.get("Name"), idea.get("Title")) if isinstance(idea, dict) else (None, None)


def _idea_event(session: ImportSession, idea: Any, *, lineage: str, record: str, node: str | None, actor: str,
                when: Any, extra: dict | None = None) -> None:
    if not isinstance(idea, dict):
        session.unmapped(lineage=lineage, record=record, reason="idea is not an object", raw=idea)
        return
    title = idea.get("Title") or idea.get("Name") or idea.get("Experiment")
    if not isinstance(title, str) or not title.strip():
        session.unmapped(lineage=lineage, record=record, reason="idea has no Title, Name or Experiment", raw=idea)
        return
    payload = merge(idea, {"idea": title[:16000], **(extra or {})})
    if isinstance(idea.get("Experiment"), str):
        payload["rationale"] = idea["Experiment"][:16000]
    ratings = {k: idea[k] for k in ("Interestingness", "Feasibility", "Novelty") if is_number(idea.get(k))}
    if ratings:
        payload["ratings"] = ratings
    session.event("proposal", payload, lineage=lineage, record=record, role="proposal", actor=actor, node=node,
                  occurred_at=when, raw=idea)


def flatten_metrics(info: Any, prefix: tuple = ()) -> dict[str, Any]:
    """Numeric (and other scalar) leaves of final_info.json by ``a/b/c`` path, with the
    ``means`` level dropped (``{"circle": {"means": {"eval_loss": x}}}`` -> ``circle/eval_loss``)."""
    out: dict[str, Any] = {}
    if isinstance(info, dict):
        for k, v in info.items():
            key = prefix if str(k) == "means" else (*prefix, str(k))
            out.update(flatten_metrics(v, key))
    elif prefix:
        out["/".join(prefix)] = info
    return out


def _split_transcript(text: str, runs: list[int]) -> tuple[dict[int, str], str]:
    """The part of the aider transcript that led to each run, and the rest (writeup)."""
    end = _PLOT.search(text)
    exp, rest = (text[: end.start()], text[end.start():]) if end else (text, "")
    marks = [(int(m.group(1)), m.start()) for m in _RUN_DONE.finditer(exp)]
    parts: dict[int, str] = {}
    start, nxt = 0, 1
    for done, pos in marks:
        parts[done] = exp[start:pos]
        start, nxt = pos, done + 1
    tail = exp[start:]
    if nxt in runs:
        parts[nxt] = tail
    else:
        rest = tail + rest
    return parts, rest


def _cost(text: str) -> dict | None:
    found = _COST.findall(text)
    if not found:
        return None
    prompt = sum(int(a.replace(",", "")) for a, _, _ in found)
    completion = sum(int(b.replace(",", "")) for _, b, _ in found)
    return {"tokens": prompt + completion, "prompt_tokens": prompt, "completion_tokens": completion,
            "dollars": round(sum(float(c) for _, _, c in found), 6), "llm_calls": len(found)}


def _notes_sections(text: str) -> dict[int, tuple[str, str | None]]:
    out: dict[int, tuple[str, str | None]] = {}
    blocks = re.split(r"^(?=#{1,2} )", text, flags=re.M)
    for b in blocks:
        m = re.match(r"^## Run (\d+):\s*(.*)$", b, re.M)
        if not m or int(m.group(1)) in out:
            continue
        d = re.search(r"^Description:\s*(.*)", b, re.M | re.S)
        out[int(m.group(1))] = (m.group(2).strip() or f"Run {m.group(1)}", d.group(1).strip() if d else None)
    return out


class _Project:
    def __init__(self, session: ImportSession, root: Path, lineage: str, actors: Actors, shared_ideas: list | None):
        self.s = session
        self.root = root
        self.lineage = lineage
        self.actors = actors
        self.ai = actors.ai_or(DEFAULT_AI)
        self.shared_ideas = shared_ideas
        self.consumed: set[Path] = set()
        self.tick = 0
        self.t0 = None

    def when(self) -> float | None:
        self.tick += 1
        return None if self.t0 is None else self.t0 + self.tick

    def _json(self, f: Path, record: str) -> Any:
        self.consumed.add(f)
        self.s.advance(1)
        try:
            return load_json_text(read_text(f))
        except ValueError as exc:
            self.s.unmapped(lineage=self.lineage, record=record, reason=f"not valid JSON: {exc}", raw=f.read_bytes())
            return None

    def run(self) -> None:
        s, root, L = self.s, self.root, self.lineage
        s.add_lineage(L)
        aider = sorted(p for p in root.glob("*_aider.txt") if p.is_file())
        transcript = read_text(aider[0]) if aider else ""
        m = _STARTED.search(transcript)
        if m:
            self.t0 = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
        else:
            times = [t for t in (file_time(p) for p in root.iterdir()) if t]
            self.t0 = min(times) if times else None

        runs = sorted({int(m.group(1)) for p in root.iterdir() for m in [(_RUN_DIR.match(p.name) if p.is_dir() else _RUN_PY.match(p.name))] if m})
        notes_f = root / "notes.txt"
        notes = read_text(notes_f) if notes_f.is_file() else ""
        sections = _notes_sections(notes)
        parts, writeup = _split_transcript(transcript, runs) if transcript else ({}, "")

        prev_node, prev_code = None, None
        last_node, last_diff_record = None, None
        for n in runs:
            node = f"run_{n}"
            code_f = root / f"run_{n}.py"
            code = read_text(code_f) if code_f.is_file() else None
            if code is not None:
                self.consumed.add(code_f)
            human = n == 0
            maker = self.actors.human if human else self.ai
            s.node_found()
            s.advance(1)
            t = self.when()
            payload: dict[str, Any] = {"parents": [prev_node] if prev_node else [], "label": sections.get(n, ("baseline" if human else f"run {n}",))[0],
                                       "run_number": n}
            if prev_node and int(prev_node.split("_")[1]) != n - 1:
                payload["runs_missing_before"] = list(range(int(prev_node.split("_")[1]) + 1, n))
            if human:
                payload["note"] = "the template's baseline, written by humans; its code is not in the project folder"
            s.event("node_created", payload, lineage=L, record=node, role="node", actor=maker, node=node, occurred_at=t)

            if n == 0:
                pf = root / "prompt.json"
                if pf.is_file():
                    prompt = self._json(pf, "prompt.json")
                    if prompt is not None:
                        text = prompt.get("task_description") if isinstance(prompt, dict) else None
                        text, more = text_and_object(s, text if isinstance(text, str) and text.strip() else str(clean(prompt)))
                        s.event("annotation", {"text": text, "topic": "task", "prompt": prompt, **more}, lineage=L,
                                record="prompt.json", role="annotation", actor=self.actors.human, node=node, occurred_at=t)
            elif n in sections:
                title, desc = sections[n]
                s.event("proposal", {"idea": title, **({"rationale": desc[:16000]} if desc else {}), "source": "notes.txt",
                                     "written_after_run": True},
                        lineage=L, record=f"notes.txt#run_{n}", role="proposal", actor=self.ai, node=node, occurred_at=t)

            if code is not None and not human:
                tree = {"experiment.py": code.encode()}
                before = {"experiment.py": prev_code.encode()} if prev_code is not None else None
                diff = s.tree_diff_payload(before, tree)
                diff["code_object"] = s.put_object(code)
                diff["source_file"] = code_f.name
                if n in parts:
                    diff["transcript_object"] = s.put_object(parts[n])
                    cost = _cost(parts[n])
                    if cost:
                        diff["llm_cost"] = cost
                if before is None:
                    diff["note"] = "the previous run's code is not in the folder; snapshot only"
                last_diff_record = (node, diff, t)
                s.event("code_diff", diff, lineage=L, record=node, role="code_diff", actor=maker, node=node, occurred_at=t)
            elif code is not None:
                # A baseline snapshot (rare): the human's code.
                diff = s.tree_diff_payload({}, {"experiment.py": code.encode()})
                diff["code_object"] = s.put_object(code)
                s.event("code_diff", diff, lineage=L, record=node, role="code_diff", actor=maker, node=node, occurred_at=t)

            self._run_results(n, node, t)
            prev_node, last_node = node, node
            if code is not None:
                prev_code = code

        if last_node is None:
            s.warn(f"{root}: no runs found")
            last_node = None

        # experiment.py: the final code.
        exp_f = root / "experiment.py"
        if exp_f.is_file():
            self.consumed.add(exp_f)
            final = read_text(exp_f)
            if prev_code is not None and final == prev_code:
                s.event("annotation", {"text": f"experiment.py is the code of {last_diff_record[0] if last_diff_record else last_node}",
                                       "topic": "final_code", "code_object": s.put_object(final)},
                        lineage=L, record="experiment.py", role="annotation", actor=SYSTEM, node=last_node, occurred_at=self.when())
            else:
                s.node_found()
                t = self.when()
                s.event("node_created", {"parents": [last_node] if last_node else [], "label": "final experiment.py",
                                         "note": "experiment.py differs from the last run's snapshot"},
                        lineage=L, record="final", role="node", actor=self.ai, node="final", occurred_at=t)
                diff = s.tree_diff_payload({"experiment.py": prev_code.encode()} if prev_code is not None else None,
                                           {"experiment.py": final.encode()})
                diff["code_object"] = s.put_object(final)
                s.event("code_diff", diff, lineage=L, record="final", role="code_diff", actor=self.ai, node="final", occurred_at=t)
                last_node = "final" if last_node is None else last_node

        self._ideas(runs)
        t = self.when()
        if notes:
            self.consumed.add(notes_f)
            s.advance(1)
            text, more = text_and_object(s, notes)
            m = re.search(r"^# Title:\s*(.+)$", notes, re.M)
            s.event("annotation", {"text": text, "topic": "notes", **({"title": m.group(1).strip()} if m else {}), **more},
                    lineage=L, record="notes.txt", role="annotation", actor=self.ai, node=last_node, occurred_at=t)
        rf = root / "review.txt"
        if rf.is_file():
            self._review(rf, last_node, t)
        if aider:
            self.consumed.add(aider[0])
            s.advance(1)
            cost = _cost(transcript)
            payload = {"text": f"aider transcript {aider[0].name}", "topic": "transcript",
                       "transcript_object": s.put_object(transcript), "file": aider[0].name}
            if cost:
                payload["llm_cost"] = cost
            wc = _cost(writeup) if writeup else None
            if writeup:
                payload["writeup_transcript_object"] = s.put_object(writeup)
            if wc:
                payload["writeup_llm_cost"] = wc
            s.event("annotation", payload, lineage=L, record=aider[0].name, role="annotation", actor=self.ai,
                    node=last_node, occurred_at=t)
            for extra in aider[1:]:
                self.s.warn(f"{extra.name}: a second aider transcript; kept as a file")
        rest = [p for p in root.rglob("*") if p.is_file() and p not in self.consumed]
        keep_files(s, rest, root=root, lineage=L, record="files", actor=SYSTEM, node=last_node, occurred_at=t)

    def _run_results(self, n: int, node: str, t: Any) -> None:
        s, L = self.s, self.lineage
        d = self.root / f"run_{n}"
        if not d.is_dir():
            return
        fi = d / "final_info.json"
        info = self._json(fi, f"run_{n}/final_info.json") if fi.is_file() else None
        others = [p for p in d.rglob("*") if p.is_file() and p != fi]
        files = {}
        for p in others:
            self.consumed.add(p)
            files[p.relative_to(self.root).as_posix()] = s.put_file(p)
        payload: dict[str, Any] = {"command": f"python experiment.py --out_dir=run_{n}",
                                   "status": "ok" if info is not None else "failed"}
        if info is not None:
            payload["final_info"] = info
        else:
            payload["note"] = "no final_info.json: the run did not produce results"
        if files:
            payload["files"] = files
        rid = s.event("run", payload, lineage=L, record=f"run_{n}", role="run", actor=SYSTEM, node=node, occurred_at=t)
        if info is not None:
            metrics = flatten_metrics(info)
            s.score_events(metrics, lineage=L, record=f"run_{n}", node=node, actor=SYSTEM, occurred_at=t, caused_by=rid)

    def _ideas(self, runs: list[int]) -> None:
        s, root, L = self.s, self.root, self.lineage
        seeds = None
        sf = root / "seed_ideas.json"
        if sf.is_file():
            seeds = self._json(sf, "seed_ideas.json")
            if seeds is not None and not isinstance(seeds, list):
                s.unmapped(lineage=L, record="seed_ideas.json", reason="not a JSON list of ideas", raw=seeds)
                seeds = None
        seed_keys = {_idea_key(x) for x in seeds or []}
        for i, idea in enumerate(seeds or []):
            _idea_event(s, idea, lineage=L, record=f"seed_ideas.json[{i}]", node=None, actor=self.actors.human,
                        when=self.t0, extra={"seed": True})

        idf = root / "ideas.json"
        ideas = None
        if idf.is_file():
            ideas = self._json(idf, "ideas.json")
            if ideas is not None and not isinstance(ideas, list):
                s.unmapped(lineage=L, record="ideas.json", reason="not a JSON list of ideas", raw=ideas)
                ideas = None
        pool = ideas if ideas is not None else (self.shared_ideas or [])
        chosen = self._chosen(pool)
        first_ai = next((f"run_{n}" for n in runs if n > 0), None)
        if ideas is not None:
            for i, idea in enumerate(ideas):
                pick = i == chosen
                _idea_event(s, idea, lineage=L, record=f"ideas.json[{i}]", node=first_ai if pick else None,
                            actor=self.actors.human if _idea_key(idea) in seed_keys else self.ai, when=self.t0,
                            extra={"chosen": True} if pick else None)
        elif chosen is not None:
            _idea_event(s, pool[chosen], lineage=L, record=f"../ideas.json[{chosen}]", node=first_ai, actor=self.ai,
                        when=self.t0, extra={"chosen": True, "source": "template ideas.json"})

    def _chosen(self, ideas: list) -> int | None:
        notes_f = self.root / "notes.txt"
        title = None
        if notes_f.is_file():
            m = re.search(r"^# Title:\s*(.+)$", read_text(notes_f), re.M)
            title = m.group(1).strip() if m else None
        name = _STAMP.sub("", self.root.name)
        aider = next(iter(self.root.glob("*_aider.txt")), None)
        if aider is not None:
            m = _AIDER.match(aider.name)
            if m:
                name = m.group(2)
        by_title = [i for i, x in enumerate(ideas) if isinstance(x, dict) and title and x.get("Title") == title]
        by_name = [i for i, x in enumerate(ideas) if isinstance(x, dict) and x.get("Name") == name]
        both = [i for i in by_title if i in by_name]
        for group in (both, by_title, by_name):
            if group:
                return group[0]
        return None

    def _review(self, rf: Path, node: str | None, t: Any) -> None:
        s, L = self.s, self.lineage
        self.consumed.add(rf)
        s.advance(1)
        raw = read_text(rf)
        try:
            review = load_json_text(raw)
        except ValueError:
            review = None
        if isinstance(review, dict):
            decision = str(review.get("Decision", "")).strip().lower()
            verdict = "approve" if decision.startswith("accept") else "reject" if decision.startswith("reject") else "comment"
            text = review.get("Summary") if isinstance(review.get("Summary"), str) else None
            payload = merge(review, {"verdict": verdict, **({"text": text[:16000]} if text else {})})
        else:
            text, more = text_and_object(s, raw)
            low = raw.lower()
            verdict = "approve" if "decision: accept" in low else "reject" if "decision: reject" in low else "comment"
            payload = {"verdict": verdict, "text": text, **more}
        s.event("review", payload, lineage=L, record="review.txt", role="review", actor=REVIEWER, node=node, occurred_at=t)
