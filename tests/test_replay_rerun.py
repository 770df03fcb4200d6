"""Re-execute: a node's recorded runs run again in a fresh sandbox, their scores are compared
with the recorded ones, and the outcome is appended as a replay event (the only write)."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from lineage import Tracker
from lineage.cli import cli
from lineage.store import Store
from replay.errors import ReplayError
from replay.rerun import metrics_from_stdout, parse_tolerances, plan, rerun


def make_node(store: Store, node: str, files: dict[str, str], command, scores: dict[tuple[str, str], float] | None = None,
              *, status: str = "ok", environment: dict[str, str] | None = None, workdir: str | None = None,
              lineage: str = "L") -> None:
    tree = {path: textwrap.dedent(text).encode() for path, text in files.items()}
    with Tracker(store, lineage=lineage, actor="ai:coder") as t, t.node(node) as n:
        n.code_diff(before={}, after=tree)
        n.run(command, status=status, environment=environment, **({"workdir": workdir} if workdir else {}),
              actor="system:runner")
        for (metric, split), value in (scores or {}).items():
            n.score(metric, value, split=split, actor="system:evaluator")


def replay_events(store: Store) -> list[dict]:
    rows = store.query_arrow("SELECT seq, node, actor, caused_by, payload::VARCHAR AS payload FROM events "
                             "WHERE kind = 'replay' ORDER BY seq").to_pylist()
    for r in rows:
        r["payload"] = orjson.loads(r["payload"])
    return rows


def snapshot_store_files(store: Store) -> dict[str, int]:
    """Every file of the store but the DuckDB file itself (objects, segments, inbox)."""
    return {str(p.relative_to(store.root)): p.stat().st_size for p in store.root.rglob("*")
            if p.is_file() and not p.name.startswith("lineage.duckdb")}


EVAL = """
    import json
    print("evaluating...")
    print(json.dumps({"acc": 0.5, "loss": 1.25}))
"""


def test_a_deterministic_node_reproduces_and_only_a_replay_event_is_appended(store):
    make_node(store, "n1", {"eval.py": EVAL}, ["python", "eval.py"], {("acc", "public"): 0.5, ("loss", "public"): 1.25})
    assert plan(store, "n1").runs[0].argv == [sys.executable, "eval.py"]  # "python" is this interpreter
    before_files = snapshot_store_files(store)
    before_events = store.count()
    report = rerun(store, "n1", timeout=60)
    assert report.outcome == "reproduced", report.reason
    assert {(m.metric, m.status) for m in report.metrics} == {("acc", "reproduced"), ("loss", "reproduced")}
    assert store.count() == before_events + 1
    assert snapshot_store_files(store) == before_files, "re-execution writes nothing to the store but the event"
    (ev,) = replay_events(store)
    run_id = store.query_arrow("SELECT event_id FROM events WHERE kind = 'run'").column("event_id")[0].as_py()
    assert ev["actor"] == "system:replay" and ev["node"] == "n1" and ev["caused_by"] == run_id
    assert ev["payload"]["outcome"] == "reproduced" and ev["payload"]["commands"] == [["python", "eval.py"]]
    assert {m["metric"]: m["reproduced"] for m in ev["payload"]["metrics"]} == {"acc": 0.5, "loss": 1.25}


def test_a_command_that_hangs_is_killed_at_the_timeout_with_its_children(store, tmp_path):
    pidfile = tmp_path / "child.pid"
    make_node(store, "slow", {"hang.py": f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pidfile)!r}, "w").write(str(child.pid))
        time.sleep(600)
    """}, ["python", "hang.py"], {("acc", "public"): 1.0})
    start = time.monotonic()
    report = rerun(store, "slow", timeout=1.5)
    assert time.monotonic() - start < 30
    assert report.outcome == "failed"
    (run,) = report.runs
    assert run.status == "timeout" and "timed out after 1.5s" in run.reason
    assert report.metrics[0].status == "missing"
    child = int(pidfile.read_text())
    assert _gone(child), "the command's child process outlived the timeout"
    (ev,) = replay_events(store)
    assert ev["payload"]["outcome"] == "failed" and "timed out" in ev["payload"]["reason"]


def _gone(pid: int) -> bool:
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        if "\nState:\tZ" in state:  # a zombie waiting for its reaper is dead
            return True
        time.sleep(0.1)
    return False


def test_a_command_that_fails_is_reported_failed_with_its_exit_code(store):
    make_node(store, "bad", {"crash.py": "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n"},
              ["python", "crash.py"], {("acc", "public"): 0.9})
    report = rerun(store, "bad", timeout=60)
    assert report.outcome == "failed"
    assert report.runs[0].exit_code == 3 and "exit code 3" in report.reason
    assert "boom" in report.runs[0].stderr_tail


def test_a_command_that_cannot_start_fails_cleanly(store):
    make_node(store, "nocmd", {"a.txt": "a\n"}, ["definitely-not-a-command-xyz"], {})
    report = rerun(store, "nocmd", timeout=10)
    assert report.outcome == "failed" and "could not start" in report.reason


def test_a_run_recorded_as_failed_reproduces_when_it_fails_again(store):
    make_node(store, "f", {"crash.py": "raise SystemExit(1)\n"}, ["python", "crash.py"], status="failed")
    report = rerun(store, "f", timeout=60)
    assert report.outcome == "reproduced"
    assert report.runs[0].reproduces_status and "as recorded" in report.runs[0].reason


def test_drift_beyond_tolerance_is_reported_with_the_delta(store):
    make_node(store, "d", {"eval.py": 'import json\nprint(json.dumps({"acc": 0.52, "loss": 1.0}))\n'},
              ["python", "eval.py"], {("acc", "public"): 0.5, ("loss", "public"): 1.0})
    report = rerun(store, "d", timeout=60)
    assert report.outcome == "drifted"
    acc = next(m for m in report.metrics if m.metric == "acc")
    assert acc.status == "drifted" and acc.delta == pytest.approx(0.02) and acc.tolerance == 1e-9
    assert "acc (public) 0.5 -> 0.52" in report.reason
    (ev,) = replay_events(store)
    assert ev["payload"]["outcome"] == "drifted"
    assert next(m for m in ev["payload"]["metrics"] if m["metric"] == "acc")["delta"] == pytest.approx(0.02)
    # within a per-metric tolerance the same rerun reproduces
    again = rerun(store, "d", timeout=60, tolerances={"acc": 0.05})
    assert again.outcome == "reproduced"


def test_the_environment_is_scrubbed_and_home_is_in_the_sandbox(store, monkeypatch):
    monkeypatch.setenv("LINEAGE_TEST_SECRET", "s3cret")
    make_node(store, "env", {"env.py": """
        import json, os
        cwd = os.getcwd()
        print(json.dumps({
            "secret_seen": int("LINEAGE_TEST_SECRET" in os.environ),
            "flag": int(os.environ.get("MY_FLAG") == "7"),
            "home_in_sandbox": int(os.path.dirname(os.environ["HOME"]) == os.path.dirname(cwd)),
            "tmp_in_sandbox": int(os.path.dirname(os.environ["TMPDIR"]) == os.path.dirname(cwd)),
            "n_vars": len([k for k in os.environ if k not in ("PATH", "LANG", "HOME", "TMPDIR", "MY_FLAG", "LC_CTYPE")]),
        }))
    """}, ["python", "env.py"], {("secret_seen", "public"): 0, ("flag", "public"): 1, ("home_in_sandbox", "public"): 1,
                                ("tmp_in_sandbox", "public"): 1, ("n_vars", "public"): 0},
              environment={"MY_FLAG": "7", "HOME": "/home/someone-else"})
    report = rerun(store, "env", timeout=60)
    assert report.outcome == "reproduced", [(m.metric, m.reproduced) for m in report.metrics]


def test_metrics_json_nested_by_split_and_workdir(store):
    make_node(store, "mj", {"sub/eval.py": """
        import json
        json.dump({"public": {"acc": 0.7}, "heldout": {"acc": 0.6}}, open("metrics.json", "w"))
        print("done")
    """}, ["python", "eval.py"], {("acc", "public"): 0.7, ("acc", "heldout"): 0.6}, workdir="sub")
    report = rerun(store, "mj", timeout=60)
    assert report.outcome == "reproduced", report.reason
    assert report.runs[0].metrics_source == "metrics.json"
    assert {(m.split, m.reproduced) for m in report.metrics} == {("public", 0.7), ("heldout", 0.6)}


def test_a_stale_metrics_json_in_the_tree_does_not_count(store):
    make_node(store, "stale", {"metrics.json": '{"acc": 0.9}\n', "eval.py": "print('no metrics here')\n"},
              ["python", "eval.py"], {("acc", "public"): 0.9})
    report = rerun(store, "stale", timeout=60)
    assert report.outcome == "failed" and "reported no metrics" in report.reason


def test_the_split_of_a_flat_metrics_line_comes_from_the_command(store):
    src = """
        import json, sys
        split = sys.argv[sys.argv.index("--split") + 1]
        print(json.dumps({"acc": {"public": 0.8, "heldout": 0.7}[split]}))
    """
    with Tracker(store, lineage="L", actor="ai:coder") as t, t.node("two") as n:
        n.code_diff(before={}, after={"eval.py": textwrap.dedent(src).encode()})
        n.run(["python", "eval.py", "--split", "public"], status="ok", actor="system:runner")
        n.run(["python", "eval.py", "--split", "heldout"], status="ok", actor="system:runner")
        # scores recorded after both runs: attributed by split, not by order
        n.score("acc", 0.8, split="public", actor="system:evaluator")
        n.score("acc", 0.7, split="heldout", actor="system:evaluator")
    p = plan(store, "two")
    assert [[s.split for s in r.scores] for r in p.runs] == [["public"], ["heldout"]]
    report = rerun(store, "two", timeout=60)
    assert report.outcome == "reproduced", report.reason


def test_no_consent_means_nothing_runs_and_nothing_is_recorded(store, tmp_path):
    marker = tmp_path / "ran"
    make_node(store, "c", {"x.py": f"open({str(marker)!r}, 'w').write('1')\n"}, ["python", "x.py"])
    seen = []
    with pytest.raises(ReplayError, match="not confirmed"):
        rerun(store, "c", consent=lambda p: seen.append(p.describe()) or False)
    assert seen and "x.py" in seen[0][0]
    assert not marker.exists() and replay_events(store) == []


def test_a_tampered_tree_is_a_failed_replay_naming_the_event(store):
    make_node(store, "t", {"eval.py": EVAL}, ["python", "eval.py"], {("acc", "public"): 0.5})
    diff = store.query_arrow("SELECT seq, payload->>'diff_object' AS d FROM events WHERE kind = 'code_diff'").to_pylist()[0]
    path = store.objects.path(diff["d"])
    path.write_bytes(path.read_bytes().replace(b"0.5", b"0.9"))
    report = rerun(store, "t", timeout=60)
    assert report.outcome == "failed" and f"node t, event seq {diff['seq']}" in report.reason
    assert report.runs == []


def test_a_node_without_runs_cannot_be_replayed(store):
    with Tracker(store, lineage="L", actor="ai:a") as t, t.node("norun") as n:
        n.code_diff(before={}, after={"a": b"a\n"})
    with pytest.raises(ReplayError, match="no recorded run"):
        plan(store, "norun")


def test_metrics_conventions():
    assert metrics_from_stdout('{"acc": 1}\nlog line\n{"acc": 0.5, "bins": 3}\ntrailing text\n') == {None: {"acc": 0.5, "bins": 3.0}}
    assert metrics_from_stdout('{"acc": 0.5}\n{"msg": "not metrics"}\n') == {None: {"acc": 0.5}}
    assert metrics_from_stdout('{"public": {"acc": 0.5}, "n": 2}') == {"public": {"acc": 0.5}, None: {"n": 2.0}}
    assert metrics_from_stdout('{"ok": true}\n') is None
    assert parse_tolerances(["acc=0.01", "1e-6"]) == ({"acc": 0.01}, 1e-6)
    with pytest.raises(ReplayError):
        parse_tolerances(["acc=lots"])


def test_the_cli_refuses_without_stdin_and_runs_with_yes(store):
    make_node(store, "n1", {"eval.py": EVAL}, ["python", "eval.py"], {("acc", "public"): 0.5})
    runner = CliRunner()
    shown = runner.invoke(cli, ["replay", "n1", "--store", str(store.root)])
    assert shown.exit_code == 0 and "eval.py" in shown.output and "nothing ran" in shown.output
    refused = runner.invoke(cli, ["replay", "n1", "--rerun", "--store", str(store.root)], input="")
    assert refused.exit_code == 2 and replay_events(store) == []
    declined = runner.invoke(cli, ["replay", "n1", "--rerun", "--store", str(store.root)], input="n\n")
    assert declined.exit_code == 2 and replay_events(store) == []
    ok = runner.invoke(cli, ["replay", "n1", "--rerun", "--yes", "--timeout", "60", "--store", str(store.root)])
    assert ok.exit_code == 0, ok.output
    assert "REPRODUCED" in ok.output and len(replay_events(store)) == 1
    as_json = runner.invoke(cli, ["replay", "n1", "--rerun", "-y", "--json", "--store", str(store.root)])
    assert as_json.exit_code == 0 and orjson.loads(as_json.stdout)["outcome"] == "reproduced"
