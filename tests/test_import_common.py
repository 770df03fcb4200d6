"""Importers: what every format shares (ids, cleaning, unmapped records, the CLI), plus the
helpers the per-format tests use. The per-format tests work out their expectations from the
raw source files themselves, never through the importer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import orjson
import pytest
import unidiff
from click.testing import CliRunner

from lineage.cli import cli
from lineage.importers import FORMATS, import_source
from lineage.importers.base import ImportSession, clean
from lineage.store import Store

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def sample(*parts: str) -> Path:
    """A sample under ../shared/samples, or skip the test saying why."""
    p = SAMPLES.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"sample {p} is absent (the real loop samples live in <repo>/../shared/samples)")
    return p


def events(store: Store, lineage: str | None = None, kind: str | None = None) -> list[dict]:
    """Events as dicts with the payload decoded, in store order."""
    where, params = [], []
    if lineage is not None:
        where.append("lineage = ?")
        params.append(lineage)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    sql = ("SELECT seq, event_id, lineage, node, kind, actor_kind, actor, actor_node, payload, caused_by FROM events"
           + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY seq")
    rows = store.query_arrow(sql, params).to_pylist()
    for r in rows:
        r["payload"] = json.loads(r["payload"])
    return rows


def by_node(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for r in rows:
        assert r["node"] not in out, f"two {r['kind']} events for node {r['node']}"
        out[r["node"]] = r
    return out


def apply_diff(old: str, diff_text: str, path: str) -> str:
    """Apply the hunks for ``path`` of a unified diff to ``old`` (what a checkout does)."""
    files = [f for f in unidiff.PatchSet(diff_text) if f.path == path]
    if not files:
        return old
    src = old.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    for hunk in files[0]:
        start = hunk.source_start - 1 if hunk.source_length else hunk.source_start
        out.extend(src[i:start])
        i = start
        last = None
        for line in hunk:
            if line.line_type == "\\":
                if last in ("+", " ") and out:
                    out[-1] = out[-1][:-1] if out[-1].endswith("\n") else out[-1]
                continue
            if line.is_context:
                assert src[i].rstrip("\n") == line.value.rstrip("\n"), f"context mismatch at line {i + 1}"
                out.append(src[i])
                i += 1
            elif line.is_removed:
                assert src[i].rstrip("\n") == line.value.rstrip("\n"), f"removed line mismatch at line {i + 1}"
                i += 1
            elif line.is_added:
                out.append(line.value)
            last = line.line_type
    out.extend(src[i:])
    return "".join(out)


def code_from_snapshot(store: Store, payload: dict) -> dict[str, bytes]:
    manifest = orjson.loads(store.objects.get(payload["snapshot_object"]))
    return {path: store.objects.get(sha) for path, sha in manifest.items()}


# -- shared behaviour ------------------------------------------------------------------------


def test_every_format_is_registered():
    assert FORMATS[:6] == ("openevolve", "ai-scientist", "adas", "shinkaevolve", "aide", "dgm")


def test_clean_maps_non_finite_numbers_to_strings():
    assert clean({"a": -math.inf, "b": [math.nan, math.inf, 1.5], 3: (1, 2)}) == {
        "a": "-Infinity", "b": ["NaN", "Infinity", 1.5], "3": [1, 2]}


def test_event_ids_are_deterministic_and_scoped_by_lineage(tmp_path):
    store = Store.init(tmp_path / "s")
    with ImportSession(store, "x", tmp_path) as s:
        a = s.event_id("L1", "rec", "node")
        assert a == s.event_id("L1", "rec", "node")
        assert a != s.event_id("L2", "rec", "node")
        assert a != s.event_id("L1", "rec", "run")


def test_large_fields_move_to_objects_and_come_back(tmp_path):
    store = Store.init(tmp_path / "s")
    big = "x" * 100_000
    with ImportSession(store, "x", tmp_path) as s:
        s.event("annotation", {"text": "t", "log": big, "small": "y"}, lineage="L", record="r", role="a",
                actor="system:test")
    (ev,) = events(store, "L")
    ref = ev["payload"]["log"]
    assert ref["format"] == "text" and store.objects.get(ref["$object"]).decode() == big
    assert ev["payload"]["small"] == "y"


def test_a_refused_event_is_kept_as_an_unmapped_annotation(tmp_path):
    store = Store.init(tmp_path / "s")
    with ImportSession(store, "x", tmp_path) as s:
        s.event("score", {"metric": "m", "value": "not a number"}, lineage="L", record="r1", role="score",
                actor="system:test", node="n1", raw={"m": "not a number"})
    (ev,) = events(store, "L")
    assert ev["kind"] == "annotation" and ev["payload"]["topic"] == "unmapped"
    assert ev["payload"]["raw"] == {"m": "not a number"}
    assert "payload.value" in ev["payload"]["reason"]
    assert [u.source for u in s.summary.unmapped] == ["r1"]


def test_openevolve_broken_program_file_is_kept_not_dropped(tmp_path):
    src = tmp_path / "db" / "programs"
    src.mkdir(parents=True)
    (src / "p1.json").write_text(json.dumps({"id": "p1", "code": "x = 1\n", "parent_id": None, "generation": 0,
                                             "timestamp": 1.0, "metrics": {"combined_score": 0.5}, "metadata": {}}))
    (src / "broken.json").write_text('{"id": "broken", "code": ')
    store = Store.init(tmp_path / "s")
    summary = import_source(store, "openevolve", tmp_path / "db")
    assert [u.source for u in summary.unmapped] == ["programs/broken.json"]
    notes = [e for e in events(store, "db", "annotation") if e["payload"].get("topic") == "unmapped"]
    assert len(notes) == 1
    raw = notes[0]["payload"]["raw"]
    assert store.objects.get(raw["$object"]) == b'{"id": "broken", "code": '
    assert summary.nodes == 1


def test_cli_import_prints_a_summary_and_is_idempotent(tmp_path):
    store_dir = tmp_path / "store"
    runner = CliRunner()
    args = ["import", "dgm", str(FIXTURES / "dgm" / "20250601120000_000000"), "--store", str(store_dir)]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "events appended" in first.output and "20250601120000_000000" in first.output
    n = Store.open(store_dir).count()
    second = runner.invoke(cli, args)
    assert second.exit_code == 0, second.output
    assert "already present" in second.output
    assert Store.open(store_dir).count() == n


def test_cli_import_json_lists_missing_parents(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["import", "aide", str(FIXTURES / "aide" / "house_prices"), "--store",
                              str(tmp_path / "s"), "--json", "--lineage", "hp"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["lineages"] == ["hp"]
    assert summary["missing_parents"] == {"f6a5": ["9999-gone"]}


def test_cli_rejects_an_unknown_format(tmp_path):
    res = CliRunner().invoke(cli, ["import", "nope", str(tmp_path), "--store", str(tmp_path / "s")])
    assert res.exit_code == 2
    assert "unknown format" in res.output


def test_cli_ai_actor_override(tmp_path):
    res = CliRunner().invoke(cli, ["import", "adas", str(FIXTURES / "aide" / "house_prices" / "journal.json"),
                                   "--store", str(tmp_path / "s"), "--ai-actor", "human:x"])
    assert res.exit_code == 2
    assert "expected 'ai:<name>'" in res.output
