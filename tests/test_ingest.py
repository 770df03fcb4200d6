"""Ingest: JSONL and Parquet files into the log, idempotent, partial-line safe, nothing dropped.

Real files, real DuckDB stores, the real `lineage` command where the behaviour is the CLI's.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage.fastprepare import PAYLOAD_CHECKS, EnvelopeChecker
from lineage.ingest import Ingester, chain, hot_rows, ingest, iter_quarantine, parse_jsonl
from lineage.store import Store
from lineage.verify import verify
from schemas import Draft, SchemaError, prepare
from schemas.chain import GENESIS_HASH, SEP, canonical_body, chain_hash
from schemas.envelope import validate_payload
from schemas.payloads import MODELS

CORPUS = Path(__file__).parent / "corpus" / "mixed.jsonl"


def stored(store: Store, sql: str = "SELECT event_id, kind, node, payload::VARCHAR FROM events ORDER BY seq") -> list[tuple]:
    with store.reader() as con:
        return con.execute(sql).fetchall()


def line(i: int, **extra) -> bytes:
    env = {
        "event_id": f"01937f2a-0000-7000-8000-{i:012d}", "lineage": "bulk", "node": f"n{i % 7}",
        "kind": "score", "actor": "system:eval", "occurred_at": "2025-03-01T12:00:00.000001+00:00",
        "payload": {"metric": "acc", "value": i / 1000, "split": "eval", "note": "x" * 50},
    }
    env.update(extra)
    return orjson.dumps(env) + b"\n"


def write_lines(path: Path, lines: list[bytes] | range, mode: str = "wb") -> Path:
    with open(path, mode) as f:
        for x in lines:
            f.write(line(x) if isinstance(x, int) else x)
    return path


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from lineage.cli import main; main()", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"}, timeout=120)


# -- the bad-input corpus ----------------------------------------------------------------------


def test_every_bad_line_is_quarantined_whole_with_its_line_and_reason_and_the_rest_is_ingested(store, tmp_path):
    big = tmp_path / "big-line.jsonl"
    ten_mb = orjson.dumps({"lineage": "corpus", "kind": "annotation", "actor": "human:ana",
                           "payload": {"text": "y" * (10 << 20)}})
    big.write_bytes(line(101) + ten_mb + b"\n" + line(102))

    report = ingest(store, [CORPUS, big])

    assert report.ingested == 5 + 2
    assert report.duplicates == 1  # the corpus repeats an event_id
    assert report.quarantined == 10 + 1
    records = {(Path(r["file"]).name, r["line"]): r for r in iter_quarantine(store)}
    reasons = {line_no: r["reason"] for (name, line_no), r in records.items() if name == "mixed.jsonl"}
    assert sorted(reasons) == list(range(3, 13))
    assert "truncated" in reasons[3]
    assert "not JSON" in reasons[4]
    assert "expected a JSON object" in reasons[5]
    assert "unknown kind 'telepathy'" in reasons[6]
    assert "payload.value" in reasons[7] and records[("mixed.jsonl", 7)]["field"] == "payload.value"
    assert "actor: an actor is required" in reasons[8]
    assert "payload.value: expected a finite number, got nan" in reasons[9]
    assert "got inf" in reasons[10] and "got -inf" in reasons[11]
    assert "not valid UTF-8" in reasons[12]
    # Whole: the raw bytes come back exactly, even when they are not UTF-8.
    raw_lines = CORPUS.read_bytes().split(b"\n")
    assert base64.b64decode(records[("mixed.jsonl", 12)]["raw_base64"]) == raw_lines[11]
    assert records[("mixed.jsonl", 3)]["raw"].encode() == raw_lines[2]
    huge = records[("big-line.jsonl", 2)]
    assert huge["raw"].encode() == ten_mb and "over the 1 MB limit" in huge["reason"]


def test_an_event_whose_parent_is_unknown_is_kept(store):
    ingest(store, [CORPUS])
    nodes = {r[2] for r in stored(store) if r[1] == "node_created"}
    assert "n2" in nodes  # its parent "ghost" was never recorded; projections flag it, ingest keeps it


def test_the_cli_prints_a_summary_and_exits_1_when_anything_was_quarantined(store):
    first = run_cli("ingest", "--store", str(store.root), str(CORPUS))
    assert first.returncode == 1, first.stderr
    assert "5 ingested, 1 duplicates skipped, 10 quarantined" in first.stdout
    assert f"{CORPUS}:9: invalid event: payload.value: expected a finite number" in " ".join(first.stderr.split())
    again = run_cli("ingest", "--store", str(store.root), str(CORPUS))
    assert again.returncode == 0, again.stderr
    assert "0 ingested, 0 duplicates skipped, 0 quarantined" in again.stdout
    assert verify(store).ok


# -- idempotence ---------------------------------------------------------------------------


def test_a_file_ingested_twice_adds_nothing(store, tmp_path):
    f = write_lines(tmp_path / "a.jsonl", range(300))
    assert ingest(store, [f]).ingested == 300
    again = ingest(store, [f])
    assert (again.ingested, again.duplicates, again.quarantined) == (0, 0, 0)
    assert len(stored(store)) == 300


def test_events_already_stored_are_skipped_even_from_another_file(store, tmp_path):
    ingest(store, [write_lines(tmp_path / "a.jsonl", range(100))])
    report = ingest(store, [write_lines(tmp_path / "b.jsonl", range(50, 150))])
    assert (report.ingested, report.duplicates) == (50, 50)
    assert len({r[0] for r in stored(store)}) == len(stored(store)) == 150
    assert verify(store).ok


def test_events_without_an_id_get_the_same_derived_id_every_time(store, tmp_path):
    f = tmp_path / "noid.jsonl"
    f.write_bytes(line(1, event_id=None) + line(2, event_id=None) + line(1, event_id=None))  # a repeat is a new line
    assert ingest(store, [f]).ingested == 3
    ids = [r[0] for r in stored(store)]
    assert len(set(ids)) == 3
    # Forget the progress: re-reading from the start still adds nothing.
    with store.writer() as w:
        w.con.execute("DELETE FROM ingest_progress")
    report = ingest(store, [f])
    assert (report.ingested, report.duplicates) == (0, 3)


def test_a_replaced_file_is_read_again_from_the_start_and_only_new_events_are_added(store, tmp_path):
    f = write_lines(tmp_path / "a.jsonl", range(10))
    ingest(store, [f])
    write_lines(f, [*range(5), *range(100, 103)])  # rewritten, shorter and different
    report = ingest(store, [f])
    assert report.files[0].restarted
    assert (report.ingested, report.duplicates) == (3, 5)


# -- partly written and growing files -------------------------------------------------------


def test_a_line_still_being_written_is_left_for_later_and_then_taken_exactly_once(store, tmp_path):
    f = tmp_path / "growing.jsonl"
    whole = line(2)
    f.write_bytes(line(1) + whole[:40])
    report = ingest(store, [f])
    assert (report.ingested, report.quarantined, report.pending_bytes) == (1, 0, 40)
    with open(f, "ab") as out:
        out.write(whole[40:] + line(3))
    report = ingest(store, [f])
    assert (report.ingested, report.quarantined, report.pending_bytes) == (2, 0, 0)
    assert [r[0][-2:] for r in stored(store)] == ["01", "02", "03"]


def test_complete_reads_an_unterminated_last_line(store, tmp_path):
    f = tmp_path / "finished.jsonl"
    f.write_bytes(line(1) + line(2).rstrip(b"\n"))
    assert ingest(store, [f], complete=True).ingested == 2


def test_a_growing_file_continues_where_it_left_off(store, tmp_path):
    f = write_lines(tmp_path / "g.jsonl", [*range(20), b"not json\n"])
    first = ingest(store, [f])
    assert (first.ingested, first.quarantined) == (20, 1)
    write_lines(f, range(20, 30), mode="ab")
    second = ingest(store, [f])
    # Only the new lines were read: the bad line is not quarantined a second time.
    assert (second.ingested, second.duplicates, second.quarantined) == (10, 0, 0)
    assert sum(1 for _ in iter_quarantine(store)) == 1


# -- Parquet -----------------------------------------------------------------------------------


def envelope_table(n: int, start: int = 0) -> pa.Table:
    return pa.table({
        "event_id": [f"01937f2a-0000-7000-8000-{i:012d}" for i in range(start, start + n)],
        "lineage": ["pq"] * n,
        "node": [f"n{i % 5}" for i in range(start, start + n)],
        "kind": ["score"] * n,
        "actor": ["system:eval"] * n,
        "occurred_at": pa.array([1_740_000_000_000_000 + i for i in range(start, start + n)], pa.int64()).cast(pa.timestamp("us")),
        "payload": [json.dumps({"metric": "acc", "value": i / 7}) for i in range(start, start + n)],
    })


def test_a_parquet_file_with_the_envelope_columns_is_ingested_once(store, tmp_path):
    f = tmp_path / "events.parquet"
    pq.write_table(envelope_table(1000), f, row_group_size=300)
    assert ingest(store, [f], parquet_rows=256).ingested == 1000
    assert ingest(store, [f]).ingested == 0
    rows = stored(store, "SELECT occurred_at, payload->>'metric', (payload->>'value')::DOUBLE FROM events ORDER BY seq")
    assert rows[1][1:] == ("acc", pytest.approx(1 / 7))
    assert int(rows[1][0].timestamp() * 1_000_000) == 1_740_000_000_000_001  # naive Parquet time is UTC
    assert verify(store).ok


def test_bad_parquet_rows_are_quarantined_with_their_row_number(store, tmp_path):
    t = envelope_table(5)
    payload = t.column("payload").to_pylist()
    payload[3] = '{"metric": "acc", "value": NaN}'
    f = tmp_path / "some-bad.parquet"
    pq.write_table(t.set_column(t.schema.get_field_index("payload"), "payload", pa.array(payload)), f)
    report = ingest(store, [f])
    assert (report.ingested, report.quarantined) == (4, 1)
    (rec,) = list(iter_quarantine(store))
    assert rec["row"] == 3 and "payload.value: expected a finite number" in rec["reason"]


def test_one_odd_id_or_name_among_thousands_of_good_ones_is_judged_as_prepare_judges_it(store, tmp_path):
    """Ids and names of a batch are first checked all at once (one search over the column's
    bytes); a single odd one must still get exactly what prepare() gives it."""
    t = envelope_table(3000)
    ids, nodes = t.column("event_id").to_pylist(), t.column("node").to_pylist()
    upper = ids[1234] = ids[1234].upper()  # a UUID, written otherwise than str(uuid.UUID(...)) does
    ids[1500] = "zzzzzzzz" + ids[1500][8:]  # 36 characters, but no UUID
    nodes[2345] = "n\x7f1"  # a control character
    caused = [None] * 3000
    caused[10], caused[11] = ids[0], ids[0][:-1] + "\n"  # 36 characters each; UUID() reads the second too
    t = (t.set_column(t.schema.get_field_index("event_id"), "event_id", pa.array(ids))
          .set_column(t.schema.get_field_index("node"), "node", pa.array(nodes))
          .append_column("caused_by", pa.array(caused, pa.string())))
    f = tmp_path / "batch.parquet"
    pq.write_table(t, f)
    report = ingest(store, [f])
    assert (report.ingested, report.quarantined) == (2998, 2)
    assert sorted(r["row"] for r in iter_quarantine(store)) == [1500, 2345]
    assert stored(store, f"SELECT count(*) FROM events WHERE event_id = '{upper.lower()}'") == [(1,)]
    assert stored(store, "SELECT caused_by FROM events WHERE caused_by IS NOT NULL ORDER BY seq") == \
        [(ids[0],), (prepare(Draft(lineage="L", kind="annotation", actor="human:a", payload={"text": "x"},
                                   caused_by=caused[11])).caused_by,)]
    assert verify(store).ok


def test_an_unreadable_or_foreign_parquet_file_is_copied_to_quarantine_with_the_reason(store, tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not really parquet")
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"lineage": ["x"], "kind": ["score"], "actor": ["ai:x"], "colour": ["red"]}), foreign)
    report = ingest(store, [broken, foreign])
    assert report.quarantined == 2 and report.ingested == 0
    reasons = [r["reason"] for r in iter_quarantine(store)]
    assert any("not a readable Parquet file" in r for r in reasons)
    assert any("unknown column(s) colour" in r for r in reasons)
    copies = sorted(p.name for p in store.quarantine.glob("*.parquet"))
    assert len(copies) == 2
    assert (store.quarantine / next(c for c in copies if c.startswith("broken"))).read_bytes() == broken.read_bytes()
    assert ingest(store, [broken]).quarantined == 0  # the same broken file is not quarantined twice


# -- where events land, and worker processes --------------------------------------------------


def test_bulk_commits_go_straight_to_segments_after_the_hot_tail_and_the_chain_holds(store, tmp_path):
    small = write_lines(tmp_path / "small.jsonl", range(30))
    big = write_lines(tmp_path / "big.jsonl", range(30, 2030))
    ingest(store, [small])
    with Ingester(store, bulk_bytes=100_000, commit_events=700, chunk_bytes=64 << 10) as ing:
        report = ing.ingest([big])
    assert report.ingested == 2000
    with store.reader() as con:
        segs = con.execute("SELECT first_seq, last_seq FROM segments ORDER BY first_seq").fetchall()
        hot = con.execute("SELECT count(*) FROM event_log").fetchone()[0]
    assert segs[0] == (1, 30)  # the hot tail was sealed first
    assert segs[-1][1] == 2030 and hot == 0
    assert all(b[0] == a[1] + 1 for a, b in zip(segs, segs[1:], strict=False))
    assert [r[0] for r in stored(store)] == [f"01937f2a-0000-7000-8000-{i:012d}" for i in range(2030)]
    assert verify(store).ok
    # and a later small append goes on from the segment's head
    with store.writer() as w:
        w.append(prepare(Draft(lineage="bulk", kind="annotation", actor="human:a", payload={"text": "after"})))
    assert verify(store).ok


def test_worker_processes_give_the_same_log_as_one_process(tmp_path):
    f = write_lines(tmp_path / "w.jsonl", [*range(3000), b"[]\n", *range(3000, 4000)])
    results = []
    for workers in (0, 2):
        store = Store.init(tmp_path / f"store{workers}")
        with Ingester(store, workers=workers, parallel_bytes=0, chunk_bytes=50_000) as ing:
            report = ing.ingest([f])
        assert (report.ingested, report.quarantined) == (4000, 1)
        assert verify(store).ok
        results.append(stored(store, "SELECT seq, event_id, payload::VARCHAR, prev_hash IS NOT NULL FROM events ORDER BY seq"))
        assert [r["line"] for r in iter_quarantine(store)] == [3001]
    assert results[0] == results[1]


@pytest.mark.parametrize("shared", [True, False], ids=["shared-memory", "pipe"])
def test_large_results_cross_from_workers_in_shared_memory_or_through_the_pipe_alike(tmp_path, monkeypatch, shared):
    import socket

    import lineage.ingest_workers as workers_module

    monkeypatch.setattr(workers_module, "_CAN_SHARE", shared)
    received = []
    real = socket.recv_fds

    def counting(*args, **kwargs):
        out = real(*args, **kwargs)
        received.append(len(out[1]))
        return out

    monkeypatch.setattr(workers_module.socket, "recv_fds", counting)
    f = write_lines(tmp_path / "big.jsonl", [*range(80_000), b"not json\n", *range(80_000, 84_000)])
    results = []
    for workers in (0, 1):
        store = Store.init(tmp_path / f"store{workers}")
        with Ingester(store, workers=workers, parallel_bytes=0, chunk_bytes=2 << 20) as ing:
            report = ing.ingest([f])
        assert (report.ingested, report.quarantined) == (84_000, 1)
        assert verify(store).ok
        results.append(stored(store, "SELECT seq, event_id, payload::VARCHAR FROM events ORDER BY seq"))
    assert results[0] == results[1]
    # results of ~2 MB chunks are over SHARED_MIN: those of the worker crossed in a memfd
    # each (this process validates the first ones itself while the worker starts), or none did
    assert (len(received) >= 2 and all(n == 1 for n in received)) if shared else received == []


def test_the_hot_log_rows_of_an_ingested_event_are_exactly_what_a_direct_append_writes():
    d = Draft(lineage="L", kind="score", actor="ai:gpt-5", node="n1", payload={"metric": "acc", "value": 1},
              occurred_at="2025-01-01T00:00:00Z", event_id="01937f2a-0000-7000-8000-000000000009")
    p = prepare(d)
    parsed = parse_jsonl(orjson.dumps({"lineage": "L", "kind": "score", "actor": "ai:gpt-5", "node": "n1",
                                       "payload": {"metric": "acc", "value": 1}, "occurred_at": "2025-01-01T00:00:00Z",
                                       "event_id": p.event_id}) + b"\n", 0, "src")
    table, keyed, seq, h = chain(parsed.events, 41, "a" * 64, 1_700_000_000_000_000)
    body = canonical_body(42, p.event_id, p.lineage, p.branch, p.node, p.kind, p.actor_kind, p.actor, p.actor_node,
                          p.occurred_us, 1_700_000_000_000_000, p.payload_json, p.schema_version, p.caused_by)
    assert (seq, h) == (42, chain_hash("a" * 64, body))
    assert keyed.to_pylist() == [SEP + body]  # what the chain hashes after prev_hash
    assert hot_rows(table).column("body").to_pylist() == [body]
    assert table.column("prev_hash").to_pylist() == ["a" * 64]


# -- the fast path agrees with prepare() ------------------------------------------------------

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_value = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                              st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                          max_leaves=6)
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)


def field_values(name: str) -> st.SearchStrategy:
    """Mostly plausible values for a declared field, sometimes anything."""
    plausible = {
        "value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 5)),
        "higher_is_better": st.booleans(), "parents": st.lists(st.text(max_size=4), max_size=3),
        "verdict": st.sampled_from(["approve", "reject", "comment", "maybe"]),
        "purpose": st.sampled_from(["parent", "best", "promote", "x"]),
        "role": st.sampled_from(["train", "eval", "heldout", "test"]),
        "status": st.sampled_from(["ok", "failed", "candidate", "running"]),
        "outcome": st.sampled_from(["reproduced", "drifted", "nope"]),
        "command": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=3), max_size=3)),
        "environment": st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), st.integers(-9, 9)), max_size=2),
        "rows": st.integers(-3, 10**12), "bytes": st.integers(-3, 10), "step": st.integers(-3, 10),
        "lines_added": st.integers(-3, 10), "duration_s": st.one_of(st.floats(-1, 10), st.integers(-1, 5)),
        "content_hash": st.one_of(hex64, st.just("ABC"), hex64.map(lambda h: h + "\n")),
        "diff_object": hex64, "event_id": st.text("0123456789abcdefABCDEF-", min_size=30, max_size=38),
        "cost": st.dictionaries(st.sampled_from(["tokens", "dollars", "gpu_hours", "x"]),
                                st.one_of(st.integers(-1, 9), st.floats(-1, 5), st.none(), st.booleans(), st.text(max_size=2)),
                                max_size=3),
        "files": st.lists(st.fixed_dictionaries({"path": st.text(max_size=3)}, optional={
            "change": st.sampled_from(["added", "modified", "x"]), "lines_added": st.integers(-1, 5),
            "old_path": st.one_of(st.none(), st.text(max_size=2)), "extra": json_value}), max_size=2),
        "metrics": st.lists(st.fixed_dictionaries({"metric": st.text(max_size=3)}, optional={
            "recorded": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-2, 2), st.none(),
                                  st.text(max_size=2)), "split": st.one_of(st.text(max_size=2), st.none())}), max_size=2),
    }
    return st.one_of(plausible.get(name, st.text(max_size=6)), json_value)


@st.composite
def payloads(draw, kind: str) -> dict:
    fields = list(MODELS[kind].model_fields)
    chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields))) if fields else []
    p = {name: draw(field_values(name)) for name in chosen}
    p.update(draw(st.dictionaries(st.sampled_from(["extra", "note", "n", "tags"]), json_value, max_size=2)))
    return orjson.loads(orjson.dumps(p))  # what ingest sees: orjson's output


def _slow(kind: str, payload: dict) -> str | None:
    try:
        data, _ = validate_payload(kind, payload)
    except SchemaError:
        return None
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


@pytest.mark.parametrize("kind", sorted(MODELS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_payload_check_accepts_only_what_pydantic_accepts_and_stores_the_same_json(kind, data):
    payload = data.draw(payloads(kind))
    fast = PAYLOAD_CHECKS[kind](payload)
    slow = _slow(kind, payload)
    if fast is not None:
        assert orjson.dumps(fast, option=orjson.OPT_SORT_KEYS).decode() == slow


names = st.one_of(st.sampled_from(["main", "n1", "L", "exp-2", ""]), st.text(max_size=6), st.integers(-9, 9), st.none())
actors = st.one_of(st.sampled_from(["ai:gpt-5", "human:ana", "system:eval", "bot:x", "ai:", "Human:x"]), st.text(max_size=6), st.none())
uuids = st.one_of(st.none(), st.just("01937f2a-0000-7000-8000-000000000001"), st.just("01937F2A-0000-7000-8000-000000000001"),
                  st.just("01937f2a00007000800000000000000"), st.text(max_size=4))
times = st.one_of(st.none(), st.sampled_from(["2025-01-01T00:00:00Z", "2025-01-01 10:00:00+02:00", "2025-01-01", "yesterday",
                                              "2025-01-01T00:00:00.123456"]), st.integers(0, 2**31))


@settings(max_examples=200, deadline=None)
@given(lineage=names, branch=names, node=names, actor=actors, actor_node=names, eid=uuids, caused_by=uuids,
       occurred=times, version=st.one_of(st.none(), st.integers(0, 3), st.booleans()),
       kind=st.sampled_from(["score", "proposal", "annotation", "nope"]), data=st.data())
def test_the_fast_envelope_check_agrees_with_prepare(lineage, branch, node, actor, actor_node, eid, caused_by,
                                                     occurred, version, kind, data):
    payload = data.draw(payloads(kind)) if kind in MODELS else {}
    branch = branch or "main"
    caused_by = caused_by or None
    eid = eid or "01937f2a-0000-7000-8000-00000000000f"
    fast = EnvelopeChecker().prepare(123, eid, lineage, branch, node, kind, actor, actor_node, occurred, None,
                                     caused_by, version, payload)
    try:
        p = prepare(Draft(lineage=lineage, kind=kind, actor=actor, payload=payload, node=node, branch=branch,
                          actor_node=actor_node, occurred_at=occurred if occurred is not None else "1970-01-01T00:00:00.000123Z",
                          caused_by=caused_by, event_id=eid, schema_version=version))
    except (SchemaError, TypeError, ValueError):
        assert fast is None
        return
    if fast is not None:
        assert fast == (p.event_id, p.lineage, p.branch, p.node, p.kind, p.actor_kind, p.actor, p.actor_node,
                        p.occurred_us, p.payload_json, p.schema_version, p.caused_by)


def test_an_integer_beyond_64_bits_is_refused_not_rounded(store, tmp_path):
    f = tmp_path / "big-int.jsonl"
    big = json.dumps({"lineage": "L", "kind": "score", "actor": "system:eval",
                      "payload": {"metric": "acc", "value": 1.0, "count": 10**25}})
    f.write_bytes(big.encode() + b"\n" + line(2))
    report = ingest(store, [f])
    assert (report.ingested, report.quarantined) == (1, 1)
    assert "64-bit" in next(iter_quarantine(store))["reason"]


def test_events_of_a_store_segment_can_be_ingested_into_another_store(store, tmp_path):
    ingest(store, [write_lines(tmp_path / "a.jsonl", range(50))])
    store.seal()
    (segment,) = store.segments_dir.glob("*.parquet")
    other = Store.init(tmp_path / "other")
    assert ingest(other, [segment]).ingested == 50
    assert stored(other, "SELECT event_id, payload::VARCHAR FROM events ORDER BY seq") == \
        stored(store, "SELECT event_id, payload::VARCHAR FROM events ORDER BY seq")
    with other.reader() as con:
        assert con.execute("SELECT min(prev_hash) FROM events WHERE seq = 1").fetchone()[0] == GENESIS_HASH


def mostly(good: list, *bad: st.SearchStrategy) -> st.SearchStrategy:
    """Valid values most of the time (so rows get accepted), now and then something else."""
    return st.one_of(st.sampled_from(good), st.sampled_from(good), st.sampled_from(good), *bad)


parquet_rows = st.fixed_dictionaries({
    "event_id": mostly([f"01937f2a-0000-7000-8000-00000000000{i}" for i in range(10)],
                       st.sampled_from(["01937F2A-0000-7000-8000-000000000001", None, ""]), st.text(max_size=3)),
    "lineage": mostly(["L", "exp"], st.sampled_from(["", None]), st.text(max_size=3)),
    "branch": mostly([None, "", "main", "b2"], st.text(max_size=3)),
    "node": mostly([None, "n1", "n2"], st.just(""), st.text(max_size=3)),
    "kind": mostly(["score", "annotation", "proposal"], st.just("nope")),
    "actor": mostly(["ai:gpt-5", "human:ana", "system:eval"], st.sampled_from(["bot:x", None])),
    "actor_node": mostly([None, None, "n0"], st.just("")),
    "occurred_at": st.one_of(st.none(), st.integers(0, 2_000_000_000_000_000), st.integers(-2**62, 2**62)),
    "caused_by": mostly([None, "", "01937f2a-0000-7000-8000-0000000000cc"], st.just("nope")),
    "schema_version": mostly([None, None, 1, 2], st.integers(0, 3)),
    "payload": mostly(['{"metric": "acc", "value": 1, "text": "hi", "idea": "x"}',  # fits all three kinds
                       '{"metric": "a", "value": 2.5, "text": "t", "idea": "i", "n": null, "split": "eval"}'],
                      st.sampled_from([None, '{"idea": ""}', '{"metric": "m", "value": NaN}', "[]", "{",
                                       '{"metric": "m", "value": 12345678901234567890123}'])),
})
PARQUET_SCHEMA = pa.schema([("event_id", pa.string()), ("lineage", pa.string()), ("branch", pa.string()),
                            ("node", pa.string()), ("kind", pa.string()), ("actor", pa.string()),
                            ("actor_node", pa.string()), ("occurred_at", pa.timestamp("us")),
                            ("caused_by", pa.string()), ("schema_version", pa.int64()), ("payload", pa.string())])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(parquet_rows, min_size=1, max_size=12))
def test_parquet_rows_are_judged_exactly_as_prepare_judges_them_one_by_one(rows):
    from datetime import UTC, datetime, timedelta

    from lineage.ingest import derived_event_id, parse_parquet

    table = pa.Table.from_pylist(
        [r | {"occurred_at": None if r["occurred_at"] is None else datetime(1970, 1, 1) + timedelta(microseconds=r["occurred_at"])}
         for r in rows if r["occurred_at"] is None or -62_135_596_800_000_000 < r["occurred_at"] < 253_402_300_799_000_000],
        schema=PARQUET_SCHEMA)
    if table.num_rows == 0:
        return
    batch = table.to_batches()[0]
    parsed = parse_parquet(batch, 0, "src")
    got = iter(parsed.events.to_pylist())
    bad = {b.index for b in parsed.bad}
    for i, r in enumerate(batch.to_pylist()):
        payload = r["payload"]
        try:
            payload = {} if payload is None else json.loads(payload)
            eid = r["event_id"] or derived_event_id("src", f"row {i}", b"")
            p = prepare(Draft(lineage=r["lineage"], kind=r["kind"], actor=r["actor"], payload=payload, node=r["node"],
                              branch=r["branch"] or "main", actor_node=r["actor_node"],
                              occurred_at=r["occurred_at"].replace(tzinfo=UTC) if r["occurred_at"] else None,
                              caused_by=r["caused_by"] or None, event_id=eid, schema_version=r["schema_version"]))
        except (SchemaError, ValueError):
            assert i in bad, (i, r)
            continue
        assert i not in bad, (i, r, [b.reason for b in parsed.bad])
        row = next(got)
        assert (row["lineage"], row["branch"], row["node"], row["kind"], row["actor_kind"], row["actor"],
                row["actor_node"], row["payload"], row["schema_version"], row["caused_by"]) == \
               (p.lineage, p.branch, p.node, p.kind, p.actor_kind, p.actor, p.actor_node, p.payload_json,
                p.schema_version, p.caused_by)
        if r["event_id"]:
            assert row["event_id"] == p.event_id
        if r["occurred_at"] is not None:
            assert int(row["occurred_at"].timestamp() * 1e6) == p.occurred_us or \
                abs(int(row["occurred_at"].timestamp() * 1e6) - p.occurred_us) < 2


@settings(max_examples=150, deadline=None)
@given(lineage=names, branch=names, node=names, actor=actors, actor_node=names, eid=uuids, caused_by=uuids,
       occurred=times, kind=st.sampled_from(["score", "proposal", "annotation", "nope"]), data=st.data())
def test_a_jsonl_line_is_judged_exactly_as_prepare_judges_it(lineage, branch, node, actor, actor_node, eid,
                                                             caused_by, occurred, kind, data):
    from lineage.ingest import derived_event_id

    payload = data.draw(payloads(kind)) if kind in MODELS else {}
    env = {k: v for k, v in dict(lineage=lineage, branch=branch, node=node, actor=actor, actor_node=actor_node,
                                 event_id=eid, caused_by=caused_by, occurred_at=occurred, kind=kind,
                                 payload=payload).items() if v is not None or data.draw(st.booleans())}
    raw = orjson.dumps(env)
    parsed = parse_jsonl(raw + b"\n", 0, "src")
    g = env.get
    try:
        p = prepare(Draft(lineage=g("lineage"), kind=g("kind"), actor=g("actor"), payload=g("payload", {}),
                          node=g("node"), branch=g("branch") or "main", actor_node=g("actor_node"),
                          occurred_at=g("occurred_at") if g("occurred_at") is not None else "2000-01-01T00:00:00Z",
                          caused_by=g("caused_by") or None, event_id=g("event_id") or derived_event_id("src", 0, raw)))
        if not -62_135_596_800_000_000 <= p.occurred_us <= 253_402_300_799_999_999:
            raise ValueError("out of range")
    except (SchemaError, TypeError, ValueError):
        assert parsed.events.num_rows == 0 and len(parsed.bad) == 1
        return
    assert not parsed.bad, parsed.bad[0].reason
    (row,) = parsed.events.to_pylist()
    assert (row["event_id"], row["lineage"], row["branch"], row["node"], row["actor_kind"], row["actor_node"],
            row["payload"], row["caused_by"]) == (p.event_id, p.lineage, p.branch, p.node, p.actor_kind,
                                                  p.actor_node, p.payload_json, p.caused_by)
    if g("occurred_at") is not None:
        assert int(row["occurred_at"].timestamp() * 1_000_000) == p.occurred_us


def test_a_time_given_in_nanoseconds_is_quarantined_not_stored(store, tmp_path):
    f = tmp_path / "ns.jsonl"
    f.write_bytes(line(1, occurred_at=1_795_000_000_000_000_000) + line(2))
    report = ingest(store, [f])
    assert (report.ingested, report.quarantined) == (1, 1)
    assert "occurred_at" in next(iter_quarantine(store))["reason"]
    assert verify(store).ok and store.seal() is not None


def test_a_batch_that_fails_part_way_leaves_nothing_and_the_next_run_completes_it(store, tmp_path, monkeypatch):
    import lineage.ingest as ingest_module

    f = write_lines(tmp_path / "a.jsonl", range(500))
    ingest(store, [write_lines(tmp_path / "first.jsonl", range(1000, 1010))])

    def disk_full(*_a, **_k):
        raise OSError("No space left on device")

    monkeypatch.setattr(ingest_module, "_put_in_place", disk_full)  # (how every segment gets its name)
    with pytest.raises(OSError, match="No space"), Ingester(store, bulk_bytes=0) as ing:
        ing.ingest([f])
    assert store.count() == 10 and verify(store).ok
    monkeypatch.undo()
    with Ingester(store, bulk_bytes=0) as ing:
        assert ing.ingest([f]).ingested == 500
    assert store.count() == 510 and verify(store).ok


def test_quarantined_lines_of_a_replaced_file_are_kept_beside_the_new_ones(store, tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_bytes(line(1) + b"first version, bad\n")
    ingest(store, [f])
    f.write_bytes(b"second version, bad too\n" + line(2))
    assert ingest(store, [f]).quarantined == 1
    raws = sorted(r["raw"] for r in iter_quarantine(store))
    assert raws == ["first version, bad", "second version, bad too"]


# -- the bulk fast path: column-wise checks, payloads all at once, worker processes -------------

EID = "01937f2a-0000-7000-8000-0000000000aa"


def _reference(kind: str, payload_text: str) -> str | None:
    """What prepare() stores for a payload written as this JSON text (parsed exactly, by the
    stdlib), or None where it refuses it."""
    try:
        return prepare(Draft(lineage="L", kind=kind, actor="ai:x", payload=json.loads(payload_text),
                             event_id=EID)).payload_json
    except (SchemaError, TypeError, ValueError, OverflowError):
        return None


def _fast_paths(kind: str, payload_texts: list[str]) -> tuple[list[str | None], list[str | None]]:
    """The stored payload of each text (None where refused), through parse_jsonl and parse_parquet."""
    from lineage.ingest import parse_parquet

    lines = b"".join(b'{"lineage":"L","kind":"%s","actor":"ai:x","event_id":"%s","payload":%s}\n'
                     % (kind.encode(), EID.encode(), t.encode()) for t in payload_texts)
    batch = pa.RecordBatch.from_pydict({"lineage": ["L"] * len(payload_texts), "kind": [kind] * len(payload_texts),
                                        "actor": ["ai:x"] * len(payload_texts), "event_id": [EID] * len(payload_texts),
                                        "payload": payload_texts})
    results = []
    for parsed in (parse_jsonl(lines, 0, "src"), parse_parquet(batch, 0, "src")):
        stored_payloads = iter(parsed.events.column("payload").to_pylist())
        bad = {b.index for b in parsed.bad}
        results.append([None if i in bad else next(stored_payloads) for i in range(len(payload_texts))])
    return results[0], results[1]


def test_orjson_writes_every_float_from_1e16_on_with_an_exponent():
    # What the fast path's screening for integers beyond 64 bits relies on (_drop_rounded):
    # orjson reads such an integer as a float of magnitude 2**63 or more, and writes that
    # float with "e+", so a canonical payload without "e+" never held one.
    for literal in (b"-9223372036854775809", b"18446744073709551616", b"-99999999999999999999",
                    b"1" + b"0" * 300):
        assert abs(orjson.loads(literal)) >= 2.0**63
    for f in (1e16, -1e16, 2.0**63, -(2.0**63), 2.0**64, 1.5e17, 9.999999999999999e22, 1e300, 1.7976931348623157e308):
        assert b"e+" in orjson.dumps(f), f
    assert b"e+" not in orjson.dumps(9999999999999998.0)


@pytest.mark.parametrize("literal", [
    "-9223372036854775809", "-9999999999999999999", "18446744073709551616", "123456789012345678901234567890",
    "-12345678901234567890123", "-9223372036854775808", "18446744073709551615", "9999999999999999999",
    "1e16", "12345678901234567890.5", "1E+400", "-0", "-0.0", "0.1e-400",
])
def test_a_number_in_a_payload_is_stored_as_prepare_stores_it_or_refused_as_it_refuses_it(literal):
    for where in ('{"metric": "m", "value": %s}', '{"metric": "m", "value": 1.5, "extra": [1, {"n": %s}]}'):
        text = where % literal
        assert _fast_paths("score", [text]) == ([_reference("score", text)], [_reference("score", text)]), text


def test_payloads_with_escapes_nesting_nulls_and_repeated_keys_are_stored_as_prepare_stores_them():
    texts = [
        '{"text": "caf\\u00e9 \\ud83d\\ude00 \\"quoted\\" \\\\ \\n\\t", "topic": null}',
        '{"text": "t", "topic": "a", "topic": "b"}',  # the last of a repeated key counts
        '{"text": "t", "n": null, "deep": {"a": null, "b": [null, {"c": null}], "d": {}}, "e": []}',
        '{"text": "t", "big": 1e16, "small": 5e-324, "neg": -0.0, "int_like": 3.0}',
        '{"text": "t", "k\\u0000ey": "v\\u001f", "\\u00e9": 1}',
        '{"text": ""}', '{"text": 5}', '{"topic": "only"}', '{}', '[]', 'null', '"text"',
        '{"text": "lone \\ud800 surrogate"}',
    ]
    jsonl, parquet = _fast_paths("annotation", texts)
    expected = [_reference("annotation", t) for t in texts]
    assert jsonl == expected and parquet == expected
    assert expected[0] is not None and expected[-1] is None  # both kinds of case are there


@pytest.mark.parametrize("kind", sorted(MODELS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_bulk_payload_checks_store_what_prepare_stores(kind, data):
    from lineage.fastprepare import OWNED_CHECKS

    batch = data.draw(st.lists(payloads(kind), min_size=1, max_size=6))
    texts = [json.dumps(p, ensure_ascii=data.draw(st.booleans())) for p in batch]
    jsonl, parquet = _fast_paths(kind, texts)
    expected = [_reference(kind, t) for t in texts]
    assert jsonl == expected and parquet == expected
    for p in batch:  # a check that completes its payload in place gives what the copying one returns
        assert OWNED_CHECKS[kind](copy.deepcopy(p)) == PAYLOAD_CHECKS[kind](p)


envelopes = st.fixed_dictionaries({}, optional={
    "event_id": mostly([f"01937f2a-0000-7000-8000-0000000001{i:02d}" for i in range(20)],
                       st.sampled_from(["", None, 7, "01937F2A-0000-7000-8000-000000000001"])),
    "lineage": mostly(["L", "exp"], st.sampled_from(["", None, 3, "a\x01b"])),
    "branch": mostly(["main", "b2", ""], st.sampled_from([None, 0, False])),
    "node": mostly(["n1", "n2", None], st.sampled_from(["", 1.5])),
    "kind": mostly(["score", "annotation"], st.sampled_from(["nope", None, ["score"]])),
    "actor": mostly(["ai:gpt-5", "system:eval"], st.sampled_from(["bot:x", None, 1])),
    "actor_node": mostly([None, "n0"], st.just("")),
    "occurred_at": mostly(["2025-03-01T12:00:00.000001+00:00", "2025-03-01T12:00:00Z", None],
                          st.sampled_from([1_700_000_000, 1_700_000_000.5, "yesterday", "2025-02-30T00:00:00", True])),
    "caused_by": mostly([None, "", "01937f2a-0000-7000-8000-0000000000cc"], st.just("nope")),
    "schema_version": mostly([None, 1, 2], st.sampled_from([0, True, 1.0, "1", 2**70])),
    "payload": mostly([{"metric": "acc", "value": 1, "text": "hi"}, {"metric": "a", "value": 0.5, "text": "t", "n": None}],
                      st.sampled_from([None, {}, [], {"metric": "m", "value": "1"}])),
    "colour": st.just("red"),
})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.one_of(envelopes, envelopes, st.sampled_from([b"", b"  ", b"not json", b"[1]", b"{"])),
                     min_size=1, max_size=15), slice_rows=st.sampled_from([1, 4, 4096]))
def test_lines_are_judged_in_bulk_exactly_as_prepare_judges_each(rows, slice_rows):
    """Many lines at once (in slices of any size) come out as each line alone through prepare()."""
    from lineage import ingest_parse
    from lineage.ingest import derived_event_id

    raws = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows]  # (2**70 too)
    data = b"\n".join(raws) + b"\n"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ingest_parse, "SLICE_ROWS", slice_rows)
        parsed = parse_jsonl(data, 1000, "src")
    events = iter(parsed.events.to_pylist())
    bad = {b.index: b for b in parsed.bad}
    offset = 1000
    for i, (row, raw) in enumerate(zip(rows, raws, strict=True)):
        where, offset = offset, offset + len(raw) + 1
        if isinstance(row, bytes) and not row.strip():
            assert i not in bad  # blank lines are skipped
            continue
        try:
            if isinstance(row, bytes):
                raise ValueError("not an envelope")
            if row.keys() - {"event_id", "lineage", "branch", "node", "kind", "actor", "actor_node",
                             "occurred_at", "caused_by", "schema_version", "payload"}:
                raise ValueError("unknown field")
            g = row.get
            p = prepare(Draft(lineage=g("lineage"), kind=g("kind"), actor=g("actor"), payload=g("payload", {}),
                              node=g("node"), branch=g("branch") or "main", actor_node=g("actor_node"),
                              occurred_at=g("occurred_at") if g("occurred_at") is not None else "2000-01-01T00:00:00Z",
                              caused_by=g("caused_by") or None, schema_version=g("schema_version"),
                              event_id=g("event_id") or derived_event_id("src", where, raw)))
        except (SchemaError, TypeError, ValueError):
            assert i in bad and bad[i].offset == where and bad[i].raw == raw, (i, row)
            continue
        assert i not in bad, (row, bad[i].reason)
        got = next(events)
        assert (got["event_id"], got["lineage"], got["branch"], got["node"], got["kind"], got["actor_kind"],
                got["actor"], got["actor_node"], got["payload"], got["schema_version"], got["caused_by"]) == \
               (p.event_id, p.lineage, p.branch, p.node, p.kind, p.actor_kind, p.actor, p.actor_node,
                p.payload_json, p.schema_version, p.caused_by), row
        if row.get("occurred_at") is not None:
            assert int(got["occurred_at"].timestamp() * 1_000_000) == p.occurred_us
    assert next(events, None) is None


def test_a_parquet_file_validated_in_a_worker_gives_the_same_log_as_one_process(tmp_path):
    f = tmp_path / "w.parquet"
    t = envelope_table(3000)
    payload = t.column("payload").to_pylist()
    payload[2500] = '{"metric": "acc", "value": NaN}'
    pq.write_table(t.set_column(t.schema.get_field_index("payload"), "payload", pa.array(payload)), f,
                   row_group_size=700)
    results = []
    for workers in (0, 1):
        store = Store.init(tmp_path / f"store{workers}")
        with Ingester(store, workers=workers, parallel_rows=0, parquet_rows=256) as ing:
            report = ing.ingest([f])
        assert (report.ingested, report.quarantined) == (2999, 1)
        assert verify(store).ok
        assert [r["row"] for r in iter_quarantine(store)] == [2500]
        results.append(stored(store, "SELECT seq, event_id, payload::VARCHAR FROM events ORDER BY seq"))
    assert results[0] == results[1]


def test_a_parquet_file_stopped_inside_a_row_group_goes_on_from_the_row_it_reached(store, tmp_path):
    f = tmp_path / "p.parquet"
    pq.write_table(envelope_table(1000), f, row_group_size=300)
    batches = iter(range(100))
    with Ingester(store, parquet_rows=128, should_stop=lambda: next(batches) >= 5) as ing:
        first = ing.ingest([f]).ingested
    assert 0 < first < 1000 and first % 300 != 0
    assert ingest(store, [f], parquet_rows=128).ingested == 1000 - first
    assert [r[0] for r in stored(store)] == [f"01937f2a-0000-7000-8000-{i:012d}" for i in range(1000)]
    assert verify(store).ok


def test_chunks_end_after_the_last_whole_line_and_a_line_longer_than_a_chunk_is_kept_whole(tmp_path):
    from lineage.ingest import _chunk_end
    from lineage.ingest_parse import _work_jsonl

    f = tmp_path / "c.jsonl"
    f.write_bytes(b"a\nbb\n" + b"x" * 200_000 + b"\ncc")
    with open(f, "rb") as fh:
        fd = fh.fileno()
        assert _chunk_end(fd, 0, 4) == (2, 200_008)
        assert _chunk_end(fd, 0, 6) == (5, 200_008)
        assert _chunk_end(fd, 5, 10) == (200_006, 200_008)  # the long line, whole
        assert _chunk_end(fd, 200_006, 10) == (200_006, 200_008)  # an unterminated line: no chunk
    st = f.stat()
    f.write_bytes(b"a\nbb\n")  # rewritten, shorter, while being read
    with pytest.raises(OSError, match="changed while it was being read"):
        _work_jsonl(str(f), (st.st_dev, st.st_ino), 0, 9, False, "src")
    other = tmp_path / "other.jsonl"
    other.write_bytes(b"a\nbb\n")
    other.replace(f)  # replaced by another file, as long
    with pytest.raises(OSError, match="changed while it was being read"):
        _work_jsonl(str(f), (st.st_dev, st.st_ino), 0, 5, False, "src")


def test_many_lines_with_bad_ones_in_several_slices_keep_their_line_numbers(store, tmp_path, monkeypatch):
    import lineage.ingest_parse as ingest_parse

    monkeypatch.setattr(ingest_parse, "SLICE_ROWS", 64)
    lines = [line(i) for i in range(500)]
    for i in (3, 64, 200, 499):
        lines[i] = b'{"lineage": "bulk", "kind": "score", "actor": "system:eval", "payload": {"value": 1}}\n'
    f = write_lines(tmp_path / "s.jsonl", lines)
    report = ingest(store, [f])
    assert (report.ingested, report.quarantined) == (496, 4)
    assert sorted(r["line"] for r in iter_quarantine(store)) == [4, 65, 201, 500]
    assert [r[0][-3:] for r in stored(store)] == [f"{i:03d}" for i in range(500) if i not in (3, 64, 200, 499)]


def test_a_segment_that_fails_while_it_is_written_leaves_nothing_and_the_next_run_completes_it(store, tmp_path,
                                                                                               monkeypatch):
    import lineage.ingest as ingest_module

    f = write_lines(tmp_path / "a.jsonl", range(3000))
    monkeypatch.setattr(ingest_module, "ROW_GROUP", 1000)  # the segment is written in pieces as the group grows
    writes = iter(range(100))
    real_write = pq.ParquetWriter.write_table

    def fails_at_the_second_row_group(self, *args, **kwargs):
        if next(writes) == 1:
            raise OSError("No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fails_at_the_second_row_group)
    with pytest.raises(OSError, match="No space"), Ingester(store, bulk_bytes=0, chunk_bytes=40_000) as ing:
        ing.ingest([f])
    assert store.count() == 0 and not list(store.segments_dir.glob("*"))
    monkeypatch.setattr(pq.ParquetWriter, "write_table", real_write)
    with Ingester(store, bulk_bytes=0, chunk_bytes=40_000) as ing:
        assert ing.ingest([f]).ingested == 3000
    assert store.count() == 3000 and verify(store).ok
    with store.reader() as con:
        (segment,) = con.execute("SELECT file FROM segments").fetchall()[0]
    meta = pq.ParquetFile(store.segments_dir / segment).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == 3000 and all(500 <= n <= 1000 for n in sizes[:-1]) and sizes[-1] <= 1000


@pytest.mark.parametrize("occurred", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_that_falls_outside_years_1_to_9999_in_utc_is_quarantined_from_jsonl_and_parquet(
        store, tmp_path, occurred):
    f = write_lines(tmp_path / "t.jsonl", [line(1, occurred_at=occurred), line(2)])
    t = pa.table({"lineage": ["L", "L"], "kind": ["score"] * 2, "actor": ["ai:x"] * 2,
                  "event_id": ["01937f2a-0000-7000-8000-000000000101", "01937f2a-0000-7000-8000-000000000102"],
                  "occurred_at": [occurred, "2025-01-01T00:00:00Z"], "payload": ['{"metric": "m", "value": 1}'] * 2})
    pq.write_table(t, tmp_path / "t.parquet")
    report = ingest(store, [f, tmp_path / "t.parquet"])
    assert (report.ingested, report.quarantined) == (2, 2)
    assert all(r["field"] == "occurred_at" for r in iter_quarantine(store))


def test_a_group_chained_onto_an_open_commit_is_redone_when_another_writer_appends_meanwhile(store, tmp_path,
                                                                                              monkeypatch):
    # A bulk group is chained while the one before is still being committed; if the lease is
    # handed over in between and another writer appends, that group must not be stored.
    f = write_lines(tmp_path / "a.jsonl", range(4000))
    real_hand_over = Ingester._hand_over
    moved = []

    def another_writer_appends_first(self, group):
        if not moved:
            self.writer.release()
            with store.writer() as w:
                w.append(prepare(Draft(lineage="other", kind="annotation", actor="human:a", payload={"text": "x"})))
            moved.append(group.base)
        return real_hand_over(self, group)

    monkeypatch.setattr(Ingester, "_hand_over", another_writer_appends_first)
    with Ingester(store, bulk_bytes=0, commit_events=500, chunk_bytes=16 << 10) as ing:
        report = ing.ingest([f])
    assert moved, "no group was chained onto an open commit"
    assert (report.ingested, report.duplicates, report.quarantined) == (4000, 0, 0)
    assert store.count() == 4001 and verify(store).ok
    ids = [r[0] for r in stored(store)]
    assert len(set(ids)) == 4001


def test_random_ids_already_stored_are_found_among_many_in_the_same_range(store, tmp_path):
    """With random (UUIDv4) ids every batch spans nearly the whole id range: the stored ids
    in it are too many to fetch, and the duplicates are found by a join instead."""
    import uuid

    ids = [str(uuid.uuid4()) for _ in range(3000)]
    first = write_lines(tmp_path / "a.jsonl", [line(i, event_id=e) for i, e in enumerate(ids)])
    assert ingest(store, [first]).ingested == 3000
    again = [ids[5], ids[1500], str(uuid.uuid4()), ids[2999], str(uuid.uuid4())]
    second = write_lines(tmp_path / "b.jsonl", [line(i, event_id=e) for i, e in enumerate(again)])
    report = ingest(store, [second])
    assert (report.ingested, report.duplicates) == (2, 3)
    assert stored(store, "SELECT count(*), count(DISTINCT event_id) FROM events") == [(3002, 3002)]


def test_a_producers_done_marker_is_neither_ingested_nor_reported_as_skipped(tmp_path):
    from lineage.ingest import expand_paths

    (tmp_path / "run.jsonl").write_text("")
    (tmp_path / "run.jsonl.done").touch()
    (tmp_path / "notes.txt.done").touch()  # not a marker of an event file: reported
    files, skipped = expand_paths([tmp_path])
    assert files == [tmp_path / "run.jsonl"]
    assert [p.name for p, _why in skipped] == ["notes.txt.done"]
