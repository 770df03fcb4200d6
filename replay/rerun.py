"""Re-execute: run a node's recorded commands again in a fresh sandbox and compare scores.

The steps: ``plan`` reads the node's ``run`` events and the ``score`` events they
produced (nothing runs yet, so a caller can show the commands and ask for consent);
``execute`` materializes the node's tree into a new temporary sandbox, runs each command
there and compares what it reports with what was recorded; ``rerun`` does both and
appends one ``replay`` event (actor ``system:replay``), the only write to the store.

Conventions (docs/replay.md has them for loop authors):

- Command. A list runs as is; a string is split with ``shlex`` (no shell). A leading
  ``python``/``python3`` becomes this interpreter (``sys.executable``). The working
  directory is the run's ``workdir`` inside the tree (default: the tree's root).
- Environment. Only ``PATH`` and ``LANG`` are passed on, plus the run's recorded
  ``environment``; ``HOME`` and ``TMPDIR`` point into the sandbox (a recorded value for
  them, or for ``PATH``, is ignored: it names another machine). stdin is empty.
- Metrics. The LAST line of stdout that is a JSON object of numbers, either flat
  ``{"metric": value}`` or nested by split ``{"split": {"metric": value}}`` (the two may
  be mixed). If stdout has none, ``metrics.json`` in the working directory, if the run
  wrote or changed it. A flat value belongs to the run's split: the run payload's
  ``split``, else ``--split X`` in its command, else the split of the scores recorded
  for that metric of that run (when they span several splits, nest them).
- Which scores belong to which run. A score whose ``caused_by`` is a run of the node
  belongs to it; else the run whose split (as above) is the score's split, if one run
  has it; else the latest run recorded before the score; else the node's first run.
- Verdict. Per metric: reproduced when ``|reproduced - recorded| <= tolerance``
  (absolute; default 1e-9, per metric configurable), drifted otherwise, failed when the
  run did not report it. Per run: failed when it exits non-zero or times out, unless the
  recorded run failed the same way (then the failure is what reproduces). The node:
  failed if anything failed, else drifted if any metric drifted, else reproduced.

The sandbox is not a security boundary: the command runs as you, and can read or write
whatever you can. What replay guarantees is that it starts in a fresh directory with a
scrubbed environment, runs only after consent, and is killed (with its whole process
group) at the timeout.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lineage.store import Store, Stored
from replay.errors import CheckoutError, PathEscape, ReplayError
from replay.materialize import EventRecord, Materializer, NodeRecord, checkout, resolve_lineage
from replay.patch import safe_path
from schemas import Draft, prepare

ACTOR = "system:replay"
DEFAULT_TOLERANCE = 1e-9
DEFAULT_TIMEOUT = 600.0
METRICS_FILE = "metrics.json"
_KEEP_ENV = ("PATH", "LANG")
_SANDBOX_ENV = ("HOME", "TMPDIR")
_SPLIT_ARG = re.compile(r"^--split(?:=(.+))?$")
_TAIL = 2000  # bytes of stdout/stderr kept in the report
_METRICS_TAIL = 1 << 20  # the metrics line is looked for in the last MiB of stdout


# -- the plan: what would run --------------------------------------------------------------


@dataclass(frozen=True)
class RecordedScore:
    metric: str
    split: str
    value: float
    seq: int
    event_id: str


@dataclass
class PlannedRun:
    event: EventRecord
    argv: list[str]
    workdir: str | None
    split: str | None  # the split a flat metrics object belongs to, when the run says
    recorded_status: str | None
    scores: list[RecordedScore] = field(default_factory=list)

    @property
    def command(self) -> list[str] | str:
        return self.event.payload.get("command")

    def expected(self) -> dict[tuple[str, str], RecordedScore]:
        """The latest recorded score per (metric, split) of this run."""
        out: dict[tuple[str, str], RecordedScore] = {}
        for s in self.scores:
            out[(s.metric, s.split)] = s
        return out


@dataclass
class Plan:
    store: Store
    node: NodeRecord
    materializer: Materializer
    runs: list[PlannedRun]

    def describe(self) -> list[str]:
        lines = []
        for i, r in enumerate(self.runs, 1):
            where = f" (in {r.workdir})" if r.workdir else ""
            env = r.event.payload.get("environment") or {}
            extra = (" env " + " ".join(f"{k}={v}" for k, v in sorted(env.items()))) if env else ""
            lines.append(f"{i}. {shlex.join(r.argv)}{where}{extra}")
        return lines


def _argv(command: list[str] | str) -> list[str]:
    argv = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    if not argv:
        raise ReplayError("a recorded run has an empty command")
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def _split_hint(payload: Mapping[str, Any], argv: list[str]) -> str | None:
    if isinstance(payload.get("split"), str):
        return payload["split"]
    for i, arg in enumerate(argv):
        m = _SPLIT_ARG.match(arg)
        if m:
            if m.group(1):
                return m.group(1)
            if i + 1 < len(argv):
                return argv[i + 1]
    return None


def plan(store: Store, node: str, *, lineage: str | None = None) -> Plan:
    """The node's recorded runs and the scores each produced. Raises if there is nothing to run."""
    lin = resolve_lineage(store, node, lineage)
    mat = Materializer(store, lin)
    rec = mat.index.node(node)
    runs: list[PlannedRun] = []
    for e in mat.index.events(node, "run"):
        argv = _argv(e.payload.get("command"))
        runs.append(PlannedRun(e, argv, e.payload.get("workdir"), _split_hint(e.payload, argv), e.payload.get("status")))
    if not runs:
        raise ReplayError(f"node {node} has no recorded run to re-execute (record one with NodeRecorder.run)")
    by_id = {r.event.event_id: r for r in runs}
    for e in mat.index.events(node, "score"):
        p = e.payload
        score = RecordedScore(p["metric"], p.get("split", "public"), float(p["value"]), e.seq, e.event_id)
        _attribute(runs, by_id, e, score).scores.append(score)
    return Plan(store, rec, mat, runs)


def _attribute(runs: list[PlannedRun], by_id: dict[str, PlannedRun], event: EventRecord, score: RecordedScore) -> PlannedRun:
    if event.caused_by and event.caused_by in by_id:
        return by_id[event.caused_by]
    same_split = [r for r in runs if r.split == score.split]
    if len(same_split) == 1:
        return same_split[0]
    pool = same_split or runs
    before = [r for r in pool if r.event.seq < score.seq]
    return before[-1] if before else pool[0]


# -- running --------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    event_id: str
    seq: int
    argv: list[str]
    status: str  # ok | failed | timeout | error
    exit_code: int | None
    duration_s: float
    reproduces_status: bool  # the run ended as recorded (ok as ok, a failure as a failure)
    reason: str | None = None
    metrics: dict[str | None, dict[str, float]] = field(default_factory=dict)
    metrics_source: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""


@dataclass
class MetricCheck:
    metric: str
    split: str
    recorded: float
    reproduced: float | None
    delta: float | None
    tolerance: float
    status: str  # reproduced | drifted | missing
    run: str  # the run event id
    reason: str | None = None


@dataclass
class ReplayReport:
    node: str
    lineage: str
    branch: str
    outcome: str  # reproduced | drifted | failed
    reason: str | None
    runs: list[RunOutcome]
    metrics: list[MetricCheck]
    duration_s: float
    tree: str | None = None
    sandbox: Path | None = None  # kept only when asked
    recorded: Stored | None = None

    def payload(self, plan: Plan) -> dict[str, Any]:
        return {
            "node": self.node,
            "outcome": self.outcome,
            **({"reason": self.reason} if self.reason else {}),
            "metrics": [
                {"metric": m.metric, "split": m.split, "recorded": m.recorded,
                 "reproduced": m.reproduced if m.reproduced is not None and math.isfinite(m.reproduced) else None,
                 "delta": m.delta if m.delta is not None and math.isfinite(m.delta) else None,
                 "tolerance": m.tolerance, "status": m.status, "run": m.run,
                 **({"reason": m.reason} if m.reason else {})}
                for m in self.metrics
            ],
            "commands": [r.command for r in plan.runs],
            "duration_s": round(self.duration_s, 6),
            "runs": [
                {"event_id": r.event_id, "status": r.status, "exit_code": r.exit_code,
                 "duration_s": round(r.duration_s, 6), "reproduces_status": r.reproduces_status,
                 **({"reason": r.reason} if r.reason else {}),
                 **({"metrics_source": r.metrics_source} if r.metrics_source else {})}
                for r in self.runs
            ],
            **({"tree": self.tree} if self.tree else {}),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }


def sandbox_env(recorded: Mapping[str, str] | None, sandbox: Path) -> dict[str, str]:
    """The scrubbed environment a replayed command gets."""
    env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    for k, v in (recorded or {}).items():
        if k not in _SANDBOX_ENV and k != "PATH":
            env[str(k)] = str(v)
    env["HOME"] = str(sandbox / "home")
    env["TMPDIR"] = str(sandbox / "tmp")
    return env


def parse_metrics(obj: Any) -> dict[str | None, dict[str, float]] | None:
    """``{None: flat metrics, split: metrics, ...}`` from a metrics object, or None if it is not one."""
    if not isinstance(obj, dict) or not obj:
        return None
    out: dict[str | None, dict[str, float]] = {}
    for key, value in obj.items():
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            out.setdefault(None, {})[key] = float(value)
        elif isinstance(value, dict) and value:
            inner = {}
            for m, v in value.items():
                if isinstance(v, bool) or not isinstance(v, int | float):
                    return None
                inner[m] = float(v)
            out[key] = inner
        else:
            return None
    return out


def metrics_from_stdout(text: str) -> dict[str | None, dict[str, float]] | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        found = parse_metrics(obj)
        if found is not None:
            return found
    return None


def _tail(path: Path, size: int = _TAIL) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            f.seek(max(0, end - size))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_one(run: PlannedRun, tree_root: Path, sandbox: Path, index: int, *, timeout: float) -> RunOutcome:
    """Run one recorded command in the sandbox and read the metrics it reports."""
    e = run.event
    logs = sandbox / "logs"
    logs.mkdir(exist_ok=True)

    def done(status: str, exit_code: int | None, took: float, reason: str | None) -> RunOutcome:
        recorded = run.recorded_status
        same = (status == "ok" and recorded in (None, "ok", "running")) or \
               (status == "failed" and recorded in ("failed", "crashed")) or \
               (status == "timeout" and recorded == "timeout")
        return RunOutcome(e.event_id, e.seq, run.argv, status, exit_code, took, same, reason)

    try:
        cwd = tree_root / safe_path(run.workdir) if run.workdir not in (None, "", ".") else tree_root
    except PathEscape as exc:
        return done("error", None, 0.0, f"workdir: {exc}")
    if not cwd.is_dir():
        return done("error", None, 0.0, f"workdir {run.workdir!r} is not a directory of the node's tree")
    metrics_path = cwd / METRICS_FILE
    before = metrics_path.read_bytes() if metrics_path.is_file() else None
    out_path, err_path = logs / f"run-{index}.stdout", logs / f"run-{index}.stderr"
    env = sandbox_env(e.payload.get("environment"), sandbox)
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            proc = subprocess.Popen(run.argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
        except OSError as exc:
            return done("error", None, time.monotonic() - start, f"could not start {run.argv[0]!r}: {exc.strerror or exc}")
        try:
            code = proc.wait(timeout=timeout)
            status, reason = ("ok", None) if code == 0 else ("failed", f"exit code {code}")
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            code, status, reason = None, "timeout", f"timed out after {timeout:g}s (killed)"
        finally:
            _kill_group(proc)  # whatever it left running in the background goes too
    took = time.monotonic() - start
    result = done(status, code, took, reason)
    result.stdout_tail, result.stderr_tail = _tail(out_path), _tail(err_path)
    if status == "ok":
        found = metrics_from_stdout(_tail(out_path, _METRICS_TAIL))
        if found is not None:
            result.metrics, result.metrics_source = found, "stdout"
        elif metrics_path.is_file() and metrics_path.read_bytes() != before:
            try:
                found = parse_metrics(json.loads(metrics_path.read_bytes()))
            except ValueError:
                found = None
            if found is not None:
                result.metrics, result.metrics_source = found, METRICS_FILE
            else:
                result.reason = f"{METRICS_FILE} is not a JSON object of numbers"
    if result.status != "ok" and result.reproduces_status:
        result.reason = f"{result.reason}, as recorded (status {run.recorded_status})"
    return result


def compare(run: PlannedRun, outcome: RunOutcome, tolerances: Mapping[str, float], default: float) -> list[MetricCheck]:
    """Each recorded score of the run against what the rerun reported."""
    checks = []
    expected = run.expected()
    splits_of: dict[str, set[str]] = {}
    for metric, split in expected:
        splits_of.setdefault(metric, set()).add(split)
    flat = outcome.metrics.get(None, {})
    for (metric, split), score in sorted(expected.items()):
        tol = tolerances.get(metric, default)
        value: float | None = None
        reason = None
        nested = outcome.metrics.get(split, {})
        if metric in nested:
            value = nested[metric]
        elif metric in flat:
            flat_split = run.split or (next(iter(splits_of[metric])) if len(splits_of[metric]) == 1 else None)
            if flat_split == split:
                value = flat[metric]
            elif flat_split is None:
                reason = (f"{metric} is reported flat but recorded on splits {', '.join(sorted(splits_of[metric]))}; "
                          "report it nested by split")
            else:
                reason = f"the run reports split {flat_split}, not {split}"
        if value is None:
            if reason is None:
                if outcome.status != "ok":
                    reason = f"the run did not finish ({outcome.status})"
                elif not outcome.metrics:
                    reason = "the run reported no metrics (no JSON line on stdout, no metrics.json)"
                else:
                    reason = "the run did not report it"
            checks.append(MetricCheck(metric, split, score.value, None, None, tol, "missing", run.event.event_id, reason))
            continue
        delta = value - score.value
        ok = math.isfinite(delta) and abs(delta) <= tol
        checks.append(MetricCheck(metric, split, score.value, value, delta, tol, "reproduced" if ok else "drifted",
                                  run.event.event_id, None if math.isfinite(value) else "not a finite number"))
    return checks


def execute(p: Plan, *, timeout: float = DEFAULT_TIMEOUT, tolerances: Mapping[str, float] | None = None,
            default_tolerance: float = DEFAULT_TOLERANCE, keep: bool = False,
            on_progress: Callable[[str], None] | None = None) -> ReplayReport:
    """Materialize the node in a fresh sandbox, run its commands, compare. Records nothing."""
    tolerances = dict(tolerances or {})
    node = p.node
    start = time.monotonic()
    sandbox = Path(tempfile.mkdtemp(prefix="lineage-replay-"))
    for sub in ("home", "tmp"):
        (sandbox / sub).mkdir()
    say = on_progress or (lambda _msg: None)
    try:
        tree_root = sandbox / "work"
        try:
            say(f"materializing {node.node}")
            co = checkout(p.store, node.node, tree_root, materializer=p.materializer)
        except CheckoutError as exc:
            return ReplayReport(node.node, node.lineage, node.branch, "failed", f"checkout failed: {exc}", [], [],
                                time.monotonic() - start, None, sandbox if keep else None)
        outcomes, checks = [], []
        for i, run in enumerate(p.runs, 1):
            say(f"running {i}/{len(p.runs)}: {shlex.join(run.argv)}")
            outcome = run_one(run, tree_root, sandbox, i, timeout=timeout)
            outcomes.append(outcome)
            checks.extend(compare(run, outcome, tolerances, default_tolerance))
        failed_runs = [o for o in outcomes if not o.reproduces_status]
        missing = [c for c in checks if c.status == "missing"]
        drifted = [c for c in checks if c.status == "drifted"]
        if failed_runs or missing:
            outcome_name = "failed"
            reasons = [f"run {o.seq}: {o.reason}" for o in failed_runs]
            reasons += [f"{c.metric} ({c.split}): {c.reason}" for c in missing if not failed_runs]
            reason = "; ".join(reasons)
        elif drifted:
            outcome_name = "drifted"
            reason = "; ".join(f"{c.metric} ({c.split}) {c.recorded:.6g} -> {c.reproduced:.6g} (delta {c.delta:+.3g}, tolerance {c.tolerance:g})"
                               for c in drifted)
        else:
            outcome_name, reason = "reproduced", None
        return ReplayReport(node.node, node.lineage, node.branch, outcome_name, reason, outcomes, checks,
                            time.monotonic() - start, co.tree_hash, sandbox if keep else None)
    finally:
        if not keep:
            shutil.rmtree(sandbox, ignore_errors=True)


def record_replay(p: Plan, report: ReplayReport) -> Stored:
    """Append the replay event: the only write re-execution makes to the store."""
    draft = Draft(lineage=p.node.lineage, branch=p.node.branch, kind="replay", actor=ACTOR,
                  payload=report.payload(p), node=p.node.node, caused_by=p.runs[0].event.event_id)
    with p.store.writer() as w:
        return w.append(prepare(draft))


def rerun(store: Store, node: str, *, lineage: str | None = None, timeout: float = DEFAULT_TIMEOUT,
          tolerances: Mapping[str, float] | None = None, default_tolerance: float = DEFAULT_TOLERANCE,
          consent: Callable[[Plan], bool] | None = None, keep: bool = False, record: bool = True,
          on_progress: Callable[[str], None] | None = None) -> ReplayReport:
    """Re-execute ``node`` and (unless ``record=False``) record the outcome as a replay event.

    ``consent`` is shown the plan and must return True for anything to run; None means
    the caller has already obtained consent (the CLI's ``--yes``)."""
    p = plan(store, node, lineage=lineage)
    if consent is not None and not consent(p):
        raise ReplayError("re-execution was not confirmed; nothing ran")
    report = execute(p, timeout=timeout, tolerances=tolerances, default_tolerance=default_tolerance, keep=keep,
                     on_progress=on_progress)
    if record:
        report.recorded = record_replay(p, report)
    return report


def parse_tolerances(items: list[str] | tuple[str, ...]) -> tuple[dict[str, float], float]:
    """``metric=abs`` items (a bare number sets the default) -> (per metric, default)."""
    per: dict[str, float] = {}
    default = DEFAULT_TOLERANCE
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            tol = float(value)
        except ValueError:
            raise ReplayError(f"--tolerance {item!r}: expected metric=NUMBER (absolute), or a NUMBER for every metric") from None
        if not math.isfinite(tol) or tol < 0:
            raise ReplayError(f"--tolerance {item!r}: a tolerance is a finite number >= 0")
        if sep and name:
            per[name] = tol
        else:
            default = tol
    return per, default


__all__ = [
    "ACTOR", "MetricCheck", "Plan", "PlannedRun", "ReplayReport", "RunOutcome", "compare", "execute",
    "metrics_from_stdout", "parse_metrics", "parse_tolerances", "plan", "record_replay", "rerun", "sandbox_env",
]
