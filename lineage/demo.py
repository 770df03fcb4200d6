"""The bundled demo: a bin-packing program improved over 30+ generations, really run.

``build_demo(store_dir)`` replays the scripted loop of ``data/demo/loop.py`` into a store:
each step's edits turn its parent's code tree into its own, every candidate's evaluation is
executed in a subprocess, and the whole making of each node (proposal, diff, datasets,
runs, scores, reviews, selections) is recorded through the Tracker. The actors are
simulated (``ai:researcher-sim``, ``human:ana``, ``human:ben``); the code and its scores
are real.

Evaluation convention. A node's code tree holds ``evaluate.py``. The command
``python evaluate.py --split SPLIT --seed 0``, run in a directory holding that tree, prints
as the LAST line of stdout a JSON object of metrics (``{"metric": value, ...}``) and writes
the same object to ``metrics.json`` in the working directory. A non-zero exit status means
the candidate failed (it crashed, or the evaluator rejected its packing); it then has no
scores. The run is recorded with the command as written (``["python", ...]``); the demo
executes it with the current interpreter in place of ``python``. Splits: ``public`` (the
score the loop optimizes, dataset role ``eval``), ``heldout`` (role ``heldout``) and, for
steps that tune a setting, ``train`` (role ``train``).

Every generation is deterministic (re-running its command reproduces the recorded scores
exactly) except one, labelled "(non-deterministic)", whose packer draws from Python's
unseeded global random generator.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from lineage.errors import LineageError
from lineage.objects import sha256_file
from lineage.store import Store
from lineage.tracker import NodeRecorder, Tracker
from lineage.trees import read_tree

DEMO_LINEAGE = "packing"
DEMO_DIR = Path(__file__).resolve().parents[1] / "data" / "demo"
SEED = 0
SPLITS = ("public", "heldout")
# Dataset role of each split's instance file.
ROLES = {"train": "train", "public": "eval", "heldout": "heldout"}
# Metrics printed by evaluate.py; all but `bins` are better when higher.
LOWER_IS_BETTER = {"bins"}
PRIMARY_METRIC = "efficiency"
# Recorded with every run: the only environment the evaluation depends on.
RUN_ENVIRONMENT = {"PYTHONHASHSEED": "0"}
# The simulated campaign starts on a Monday morning; see _Clock.
START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)

Tree = dict[str, bytes]


def eval_command(split: str) -> list[str]:
    """The evaluation command of one split, as recorded in ``run`` events."""
    return ["python", "evaluate.py", "--split", split, "--seed", str(SEED)]


@dataclass(frozen=True)
class Evaluation:
    """One executed evaluation command and what it reported."""

    split: str
    command: list[str]
    exit_code: int
    duration_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error is None


# -- the scripted loop and its trees --------------------------------------------------

def load_loop() -> ModuleType:
    """``data/demo/loop.py``, the scripted loop (a data file, not part of the package)."""
    path = DEMO_DIR / "loop.py"
    if not path.exists():
        raise LineageError(f"demo data not found at {DEMO_DIR}: the demo needs a source checkout of lineage")
    spec = importlib.util.spec_from_file_location("lineage_demo_loop", path)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the module executes.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    return module


def demo_trees() -> dict[str, Tree]:
    """The code tree of every demo node, by node id: the seed tree, then each step's edits
    applied to its first parent's tree. Pure: nothing is executed or written."""
    loop = load_loop()
    # metrics.json is an evaluation's output: left behind by a manual run, it is not code.
    seed = {path: data for path, data in read_tree(DEMO_DIR / "seed").items() if path != "metrics.json"}
    trees: dict[str, Tree] = {}
    for step in loop.STEPS:
        tree = trees[step.parents[0]] if step.parents else seed
        for edit in step.edits:
            tree = edit.apply(tree)
        trees[step.node] = tree
    return trees


def write_tree(tree: Mapping[str, bytes], root: Path) -> Path:
    """Write a ``{relative path: bytes}`` tree under ``root``."""
    for rel, data in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def run_evaluation(workdir: Path, split: str, *, timeout: float = 60.0) -> Evaluation:
    """Execute the evaluation of ``split`` in ``workdir`` (a written code tree)."""
    command = eval_command(split)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", **RUN_ENVIRONMENT}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *command[1:]], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    duration = round(time.perf_counter() - start, 3)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return Evaluation(split, command, proc.returncode, duration, error=lines[-1] if lines else "no output")
    lines = proc.stdout.strip().splitlines()
    try:
        metrics = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return Evaluation(split, command, 0, duration, error="the last line of stdout is not a JSON object of metrics")
    return Evaluation(split, command, 0, duration, {k: float(v) for k, v in metrics.items()})


def _evaluate_node(step: Any, tree: Tree, workdir: Path) -> list[Evaluation]:
    """Run a candidate's evaluations in order; a failure ends them, as a real harness would."""
    write_tree(tree, workdir)
    out = []
    for split in (("train",) if step.tune_on_train else ()) + SPLITS:
        ev = run_evaluation(workdir, split)
        out.append(ev)
        if not ev.ok:
            break
    return out


# -- recording ---------------------------------------------------------------------

class _Clock:
    """Simulated time: the demo records weeks of work in seconds, and the timeline should
    still show people working in hours and the self-built generations in minutes."""

    def __init__(self, start: datetime):
        self.t = start

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)

    def now(self) -> datetime:
        self.t += timedelta(seconds=1)  # strictly increasing, even for back-to-back events
        return self.t


class _DemoTracker(Tracker):
    """A Tracker that stamps every event with the simulated clock."""

    clock: _Clock

    def record(self, kind, payload=None, *, occurred_at=None, **kw):
        return super().record(kind, payload, occurred_at=occurred_at or self.clock.now(), **kw)

    def branch_from(self, node, name, *, actor=None):
        forked = super().branch_from(node, name, actor=actor)
        forked.__class__ = type(self)  # Tracker.branch_from returns a plain Tracker
        return forked


# How long each kind of maker takes: (implement, review delay, until the next node), seconds.
_PACE = {"human": (5 * 3600, 16 * 3600, 20 * 3600), "assist": (25 * 60, 3 * 3600, 2 * 3600),
         "research": (12 * 60, 4 * 3600, 30 * 60), "self": (90, 0, 60)}


@dataclass(frozen=True)
class _Makers:
    """Who did what for one step, by its mode (see data/demo/loop.py)."""

    proposer: str
    author: str
    runner: str
    actor_node: str | None  # the acting AI is this node of the lineage (self-built)

    @classmethod
    def of(cls, step: Any, ai: str) -> _Makers:
        if step.mode == "human":
            return cls(step.person, step.person, "system:evaluator", None)
        if step.mode == "assist":
            return cls(step.person, ai, "system:evaluator", None)
        if step.mode == "research":
            return cls(ai, ai, ai, None)
        if step.mode == "self":
            return cls(ai, ai, ai, step.parents[0])
        raise ValueError(f"{step.node}: unknown mode {step.mode!r}")

    def node_of(self, actor: str) -> str | None:
        return self.actor_node if actor.startswith("ai:") else None


def _record_step(t: _DemoTracker, step: Any, trees: Mapping[str, Tree], evals: list[Evaluation],
                 workdir: Path, ai: str) -> None:
    m = _Makers.of(step, ai)
    implement, review_delay, gap = _PACE[step.mode]
    failed = any(not ev.ok for ev in evals)
    n: NodeRecorder = t.node(step.node, parents=list(step.parents), label=step.label, actor=m.author,
                             actor_node=m.actor_node, **({"status": "failed"} if failed else {}))
    # NodeRecorder's helpers take no actor_node (code_diff aside), so AI events go through record().
    n.record("proposal", {"idea": step.idea, **({"rationale": step.rationale} if step.rationale else {})},
             actor=m.proposer, actor_node=m.node_of(m.proposer))
    t.clock.advance(implement)
    before = trees[step.parents[0]] if step.parents else {}
    n.code_diff(before=before, after=trees[step.node], snapshot=step.snapshot, actor=m.author,
                actor_node=m.actor_node, **({"base_node": step.parents[0]} if step.parents else {}))
    for split in [ev.split for ev in evals]:
        n.record("dataset", _dataset_payload(workdir, split), actor=m.runner, actor_node=m.node_of(m.runner))
    cost = _cost(step) if m.author.startswith("ai:") else None
    for ev in evals:
        run_id = n.record("run", _run_payload(ev, cost if ev is evals[0] else None),
                          actor=m.runner, actor_node=m.node_of(m.runner))
        t.clock.advance(ev.duration_s)
        scorer = ai if step.self_scored else "system:evaluator"
        for metric, value in sorted(ev.metrics.items()):
            n.record("score", {"metric": metric, "value": value, "split": ev.split,
                               "higher_is_better": metric not in LOWER_IS_BETTER},
                     actor=scorer, actor_node=m.node_of(scorer), caused_by=run_id)
    if step.lesson:
        actor, text = step.lesson
        n.record("annotation", {"text": text, "topic": "lesson"}, actor=actor, actor_node=m.node_of(actor))
    t.clock.advance(review_delay)
    if step.review:
        actor, verdict, text = step.review
        n.review(verdict, text, actor=actor)
    if step.select:
        actor, purpose = step.select
        t.select(step.node, actor=actor, purpose=purpose, reason=_reason(purpose, evals))
    t.clock.advance(gap)


def _dataset_payload(workdir: Path, split: str) -> dict[str, Any]:
    path = workdir / "instances" / f"{split}.json"
    return {"name": f"packing-{split}", "role": ROLES[split], "uri": f"instances/{split}.json",
            "content_hash": sha256_file(path), "bytes": path.stat().st_size,
            "rows": len(json.loads(path.read_text())["instances"])}


def _run_payload(ev: Evaluation, cost: dict | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"command": ev.command, "seed": SEED, "environment": dict(RUN_ENVIRONMENT),
                               "status": "ok" if ev.ok else "failed", "duration_s": ev.duration_s,
                               "exit_code": ev.exit_code, "workdir": "."}
    if cost:
        payload["cost"] = cost
    if ev.error:
        payload["error"] = ev.error
    return payload


def _cost(step: Any) -> dict[str, Any]:
    # What the simulated researcher spent on this candidate; seeded by the node id, so stable.
    tokens = random.Random(step.node).randint(4_000, 40_000)
    return {"tokens": tokens, "dollars": round(tokens * 15e-6, 4)}


def _reason(purpose: str, evals: list[Evaluation]) -> str:
    public = next((ev.metrics.get(PRIMARY_METRIC) for ev in evals if ev.split == "public" and ev.ok), None)
    what = f"public {PRIMARY_METRIC} {public:.4f}" if public is not None else "no public score"
    return f"best so far ({what})" if purpose == "best" else f"kept as a parent ({what})"


# -- building ----------------------------------------------------------------------

def build_demo(store_dir: str | os.PathLike, *, progress: Callable[[str], None] | None = None) -> dict:
    """Build the demo lineage into ``store_dir`` (created if needed) and return its summary.

    If the store already holds the demo lineage, nothing is recorded. The lineage is
    appended in one transaction, so an interrupted build leaves no partial lineage.
    """
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    store = Store.init(store_dir)
    if _lineage_events(store):
        say(f"the store already holds the {DEMO_LINEAGE!r} lineage; nothing to do")
        return demo_summary(store, created=False)

    loop = load_loop()
    trees = demo_trees()
    say(f"running {len(loop.STEPS)} candidates' evaluations")
    with tempfile.TemporaryDirectory(prefix="lineage-demo-") as tmp:
        workdirs = {step.node: Path(tmp) / step.node for step in loop.STEPS}
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            futures = {step.node: pool.submit(_evaluate_node, step, trees[step.node], workdirs[step.node])
                       for step in loop.STEPS}
            evals = {node: f.result() for node, f in futures.items()}
        say("recording the lineage")
        with _DemoTracker(store, lineage=DEMO_LINEAGE, actor=loop.LOOP) as main:
            main.clock = _Clock(START)
            trackers = {"main": main}
            with main.batch():
                for step in loop.STEPS:
                    if step.branch not in trackers:
                        trackers[step.branch] = main.branch_from(step.parents[0], step.branch, actor=step.person or loop.AI)
                    _record_step(trackers[step.branch], step, trees, evals[step.node], workdirs[step.node], loop.AI)
    summary = demo_summary(store, created=True)
    say(f"built {summary['nodes']} nodes over {summary['generations']} generations "
        f"({summary['events']} events) in {time.perf_counter() - started:.1f}s")
    return summary


def _lineage_events(store: Store) -> int:
    return store.query_arrow("SELECT count(*) AS n FROM events WHERE lineage = ?", [DEMO_LINEAGE])["n"][0].as_py()


def demo_summary(store: Store, *, created: bool = False) -> dict:
    """What the demo lineage in ``store`` holds: counts, branches, and the promoted best node."""
    rows = store.query_arrow(
        "SELECT node, branch, kind, payload FROM events WHERE lineage = ? "
        "AND kind IN ('node_created', 'selection', 'score') ORDER BY seq", [DEMO_LINEAGE]).to_pylist()
    parents: dict[str, list[str]] = {}
    failed = 0
    best = None
    public: dict[str, float] = {}
    for row in rows:
        payload = json.loads(row["payload"])
        if row["kind"] == "node_created":
            parents[row["node"]] = payload.get("parents", [])
            failed += payload.get("status") == "failed"
        elif row["kind"] == "selection" and payload.get("purpose") == "best":
            best = payload["node"]
        elif row["kind"] == "score" and payload["metric"] == PRIMARY_METRIC and payload["split"] == "public":
            public[row["node"]] = payload["value"]
    generation: dict[str, int] = {}
    for node, ps in parents.items():  # parents are always recorded before their children
        generation[node] = 1 + max((generation[p] for p in ps), default=-1)
    root = next((node for node, ps in parents.items() if not ps), None)
    return {
        "lineage": DEMO_LINEAGE,
        "store": str(store.root),
        "created": created,
        "events": _lineage_events(store),
        "nodes": len(parents),
        "failed": failed,
        "generations": max(generation.values(), default=-1) + 1,
        "branches": sorted({row["branch"] for row in rows}),
        "root": {"node": root, "metric": PRIMARY_METRIC, "split": "public", "value": public.get(root)},
        "best": {"node": best, "metric": PRIMARY_METRIC, "split": "public", "value": public.get(best)},
    }


__all__ = ["DEMO_DIR", "DEMO_LINEAGE", "Evaluation", "build_demo", "demo_summary", "demo_trees",
           "eval_command", "load_loop", "run_evaluation", "write_tree"]
