"""The `lineage` command: init, record, log, show, verify, seal, schema, sql."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest
from click.testing import CliRunner

from lineage import Store, Tracker
from lineage.cli import cli
from schemas import KINDS


def run(*args: str, input: str | bytes | None = None, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


def flat(text: str) -> str:
    """Output with the console's line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture
def loop_store(store):
    """A small lineage: a root, two children by different actors, a merge, scores, a review."""
    with Tracker(store, lineage="packing", actor="ai:researcher") as t:
        with t.node("root", label="first-fit") as n:
            n.score("fill", 0.70, actor="system:eval")
        with t.node("a", parents=["root"], label="sort first") as n:
            n.proposal("sort items by size")
            n.score("fill", 0.80, actor="system:eval")
        with t.node("b", parents=["root"], actor="human:alice") as n:
            n.proposal("best-fit instead")
        with t.node("m", parents=["a", "b"]) as n:
            n.score("fill", 0.85, actor="system:eval")
            n.review("approve", "good", actor="human:bob")
    return store


def log_json(store: Store, *args: str) -> list[dict]:
    result = run("log", "--store", str(store.root), "--json", *args)
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines()]


# -- init and store location ---------------------------------------------------------------------


def test_init_creates_a_store_at_the_given_path(tmp_path):
    result = run("init", "--store", str(tmp_path / "s"))
    assert result.exit_code == 0
    assert (tmp_path / "s" / "lineage.duckdb").exists()
    assert "initialized" in result.output
    again = run("init", "--store", str(tmp_path / "s"))
    assert again.exit_code == 0 and "already" in again.output


def test_init_uses_lineage_store_from_the_environment_else_dot_lineage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("init", env={"LINEAGE_STORE": str(tmp_path / "env")}).exit_code == 0
    assert (tmp_path / "env" / "lineage.duckdb").exists()
    assert run("init", env={"LINEAGE_STORE": ""}).exit_code == 0
    assert (tmp_path / ".lineage" / "lineage.duckdb").exists()


def test_a_command_on_a_missing_store_says_how_to_create_one(tmp_path):
    result = run("log", "--store", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "lineage init" in flat(result.output)
    assert "Traceback" not in result.output


# -- record ------------------------------------------------------------------------------------------


def test_record_from_flags(store):
    result = run("record", "--store", str(store.root), "--lineage", "packing", "--node", "n7", "--kind", "score",
                 "--actor", "system:eval", "--payload", '{"metric": "fill", "value": 0.91}')
    assert result.exit_code == 0, result.output
    assert "seq 1" in result.output
    (event,) = log_json(store)
    assert (event["node"], event["kind"], event["actor"], event["payload"]["value"]) == ("n7", "score", "system:eval", 0.91)


def test_record_a_json_envelope_from_stdin(store):
    envelope = {"lineage": "packing", "kind": "proposal", "actor": "ai:gpt-5", "node": "n8",
                "occurred_at": "2025-03-04T05:06:07Z", "payload": {"idea": "cache the parser"}}
    result = run("record", "--store", str(store.root), input=json.dumps(envelope))
    assert result.exit_code == 0, result.output
    (event,) = log_json(store)
    assert event["payload"] == {"idea": "cache the parser"}
    assert event["occurred_at"].startswith("2025-03-04T05:06:07")


def test_record_payload_from_stdin(store):
    result = run("record", "--store", str(store.root), "--lineage", "packing", "--kind", "annotation",
                 "--actor", "human:alice", "--payload", "-", input='{"text": "from a pipe"}')
    assert result.exit_code == 0, result.output
    assert log_json(store)[0]["payload"] == {"text": "from a pipe"}


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["--kind", "score", "--actor", "bob", "--payload", '{"metric": "m", "value": 1.0}'], None, "actor"),
        (["--kind", "score", "--payload", '{"metric": "m", "value": 1.0}'], None, "actor is required"),
        (["--kind", "score", "--actor", "ai:x", "--payload", '{"metric": "m", "value": NaN}'], None, "payload.value"),
        (["--kind", "score", "--actor", "ai:x", "--payload", '{"metric": "m", "value": "high"}'], None, "payload.value"),
        (["--kind", "benchmark", "--actor", "ai:x"], None, "unknown kind"),
        (["--kind", "score", "--actor", "ai:x", "--payload", "{not json"], None, "--payload: not JSON"),
        ([], b'{"lineage": "packing", "kind": "proposal", "actor": "ai:x", "payload": {"idea": "\xff"}}', "invalid UTF-8"),
        ([], '{"lineage": "packing", "kind": "proposal", "actor": "ai:x", "payload": {}, "colour": "red"}', "colour"),
        ([], "[1, 2]", "expected a JSON object"),
    ],
)
def test_record_refuses_bad_input_with_a_clear_message_and_stores_nothing(store, args, stdin, expected):
    result = run("record", "--store", str(store.root), "--lineage", "packing", *args, input=stdin)
    assert result.exit_code == 2
    assert expected in flat(result.output)
    assert "Traceback" not in result.output
    assert store.count() == 0


def test_record_flags_a_missing_parent_but_keeps_the_node(store):
    result = run("record", "--store", str(store.root), "--lineage", "packing", "--node", "child", "--kind",
                 "node_created", "--actor", "ai:x", "--payload", '{"parents": ["pruned"]}')
    assert result.exit_code == 0
    assert "pruned" in flat(result.output) and "missing parent" in flat(result.output)
    assert store.count() == 1


# -- log and show -----------------------------------------------------------------------------------------


def test_log_lists_events_in_order(loop_store):
    result = run("log", "--store", str(loop_store.root))
    assert result.exit_code == 0
    assert "fill=0.85" in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()[:1].isdigit()]
    assert [int(ln.split()[0]) for ln in lines] == list(range(1, 11))


def test_log_filters_by_node_kind_and_actor(loop_store):
    assert [e["kind"] for e in log_json(loop_store, "--node", "m")] == ["node_created", "score", "review"]
    assert [e["node"] for e in log_json(loop_store, "--kind", "score")] == ["root", "a", "m"]
    assert [e["node"] for e in log_json(loop_store, "--actor", "human:alice")] == ["b", "b"]
    assert {e["actor"] for e in log_json(loop_store, "--actor", "human")} == {"human:alice", "human:bob"}
    assert log_json(loop_store, "--node", "m", "--kind", "score")[0]["payload"]["value"] == 0.85


def test_log_json_gives_whole_envelopes(loop_store):
    events = log_json(loop_store)
    assert len(events) == 10
    assert set(events[0]) >= {"seq", "event_id", "lineage", "branch", "node", "kind", "actor_kind", "actor",
                              "occurred_at", "recorded_at", "payload", "schema_version", "prev_hash", "hash"}
    for before, after in zip(events, events[1:], strict=False):
        assert after["prev_hash"] == before["hash"]


def test_show_a_node_lists_parents_children_scores_and_events(loop_store):
    result = run("show", "--store", str(loop_store.root), "a")
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "parents root" in out
    assert "children m" in out
    assert "fill=0.8" in out
    assert "sort items by size" in out


def test_show_an_unknown_node_says_how_to_find_nodes(loop_store):
    result = run("show", "--store", str(loop_store.root), "zzz")
    assert result.exit_code == 2
    assert "'zzz' not found" in flat(result.output)


# -- seal and verify -----------------------------------------------------------------------------------------


def test_seal_then_verify(loop_store):
    result = run("seal", "--store", str(loop_store.root))
    assert result.exit_code == 0
    assert "1..10" in result.output
    assert "nothing to seal" in run("seal", "--store", str(loop_store.root)).output
    result = run("verify", "--store", str(loop_store.root))
    assert result.exit_code == 0
    assert "10 events" in flat(result.output)
    assert len(log_json(loop_store)) == 10


def test_verify_fails_naming_the_edited_event(loop_store):
    con = duckdb.connect(str(loop_store.db))
    con.execute("UPDATE event_log SET body = replace(body, 'ai:researcher', 'human:mallory') WHERE seq = 4")
    con.close()
    result = run("verify", "--store", str(loop_store.root))
    assert result.exit_code == 1
    assert "seq 4" in flat(result.output)


# -- schema ------------------------------------------------------------------------------------------------


def test_schema_writes_a_json_schema_per_kind(tmp_path):
    result = run("schema", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {f"{k}.schema.json" for k in KINDS} | {"index.json", "event.schema.json"}
    score = json.loads((tmp_path / "out" / "score.schema.json").read_text())
    assert score["properties"]["payload"]["properties"]["metric"]["type"] == "string"


# -- sql ---------------------------------------------------------------------------------------------------------


def test_sql_table_output(loop_store):
    result = run("sql", "--store", str(loop_store.root), "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind")
    assert result.exit_code == 0
    out = flat(result.output)
    assert "node_created 4" in out and "score 3" in out and "4 rows" in out


def test_sql_csv_and_json_output(loop_store):
    query = "SELECT node, payload->>'value' AS value FROM events WHERE kind = 'score' ORDER BY seq"
    result = run("sql", "--store", str(loop_store.root), query, "--format", "csv")
    assert result.exit_code == 0
    assert list(csv.DictReader(io.StringIO(result.stdout))) == [
        {"node": "root", "value": "0.7"}, {"node": "a", "value": "0.8"}, {"node": "m", "value": "0.85"}]
    result = run("sql", "--store", str(loop_store.root), query, "--format", "json")
    assert [orjson.loads(line) for line in result.stdout.splitlines()] == [
        {"node": "root", "value": "0.7"}, {"node": "a", "value": "0.8"}, {"node": "m", "value": "0.85"}]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM event_log WHERE seq = 1",
        "UPDATE event_log SET actor = 'human:me'",
        "INSERT INTO store_meta VALUES ('a', 'b')",
        "DROP TABLE event_log",
        "SELECT 1; DELETE FROM event_log",
        "CREATE TABLE t AS SELECT * FROM events",
        "COPY event_log TO '/tmp/lineage-test-out.csv'",
        "ATTACH ':memory:' AS other",
    ],
)
def test_sql_refuses_a_statement_that_would_write(loop_store, statement):
    result = run("sql", "--store", str(loop_store.root), statement)
    assert result.exit_code == 2
    assert "read-only" in flat(result.output)
    assert "Traceback" not in result.output
    assert loop_store.count() == 10
    assert not Path("/tmp/lineage-test-out.csv").exists()


def test_sql_reports_a_bad_query_without_a_traceback(loop_store):
    result = run("sql", "--store", str(loop_store.root), "SELECT nope FROM events")
    assert result.exit_code == 2
    assert "nope" in result.output and "Traceback" not in result.output


# -- the installed console script --------------------------------------------------------------------------------


def test_the_console_script_round_trip(tmp_path):
    """The real `lineage` executable, real stdin and exit codes, store from $LINEAGE_STORE."""
    exe = Path(sys.executable).with_name("lineage")
    if not exe.exists():
        pytest.skip("the lineage console script is not installed next to this interpreter")
    env = {**os.environ, "LINEAGE_STORE": str(tmp_path / "s")}

    def sh(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(exe), *args], input=stdin, capture_output=True, text=True, env=env, timeout=60)

    assert sh("init").returncode == 0
    line = '{"lineage": "packing", "kind": "score", "actor": "system:eval", "node": "n1", "payload": {"metric": "fill", "value": 0.5}}'
    assert sh("record", stdin=line).returncode == 0
    bad = sh("record", stdin=line.replace("system:eval", "eval"))
    assert bad.returncode == 2 and "actor" in bad.stderr
    assert sh("verify").returncode == 0
    out = sh("sql", "SELECT count(*) AS n FROM events", "--format", "json")
    assert out.returncode == 0 and json.loads(out.stdout) == {"n": 1}


def test_the_lazy_command_table_names_every_core_command_and_no_other():
    import importlib
    import pkgutil

    import click

    import lineage.commands as pkg
    from lineage.cli import CORE_COMMANDS

    defined = {}
    for module in (m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")):
        group = click.Group()
        importlib.import_module(f"lineage.commands.{module}").register(group)
        defined.update(dict.fromkeys(group.commands, module))
    assert defined == CORE_COMMANDS


@pytest.mark.parametrize(("command", "absent"), [("sql", "pydantic"), ("tui", "lineage.commands.ingest")])
def test_a_command_imports_only_what_it_needs(command, absent):
    """Every command used to import every other's modules first: ~0.3 s of each start, and of
    the terminal UI's first screen."""
    code = ("import sys; from lineage.cli import cli\n"
            f"try:\n    cli([{command!r}, '--help'], prog_name='lineage')\nexcept SystemExit:\n    pass\n"
            f"print('LOADED' if {absent!r} in sys.modules else 'ABSENT')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "ABSENT", out.stdout + out.stderr


def test_help_lists_the_commands_of_every_layer():
    listed = run("--help").output
    for name in ("ingest", "sql", "verify", "import-git", "replay", "checkout", "tui"):
        assert f"  {name} " in listed


def test_the_cli_sets_arrows_allocator_before_arrow_loads():
    """main() keeps freed memory for the next ingest batch (MIMALLOC_PURGE_DELAY), which
    mimalloc reads only when pyarrow loads: importing the CLI must not load it."""
    code = ("import os, sys\nfrom lineage import cli\nprint('pyarrow' in sys.modules)\n"
            "cli.cli = lambda **kw: print(os.environ.get('MIMALLOC_PURGE_DELAY'))\ncli.main()")
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_PURGE_DELAY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.split() == ["False", "1000"], out.stdout + out.stderr
