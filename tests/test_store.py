"""The store: an append-only, hash-chained event log in DuckDB, sealed into plain Parquet."""

from __future__ import annotations

import threading
import time

import duckdb
import orjson
import pyarrow.parquet as pq
import pytest

from lineage.errors import StoreNotFound
from lineage.store import DB_FILE, Store, resolve_store_path
from lineage.verify import verify
from schemas import GENESIS_HASH, Draft, SchemaError, canonical_body, chain_hash, prepare
from schemas.envelope import COLUMNS


def note(i: int, **kw) -> Draft:
    fields = {"lineage": "packing", "kind": "annotation", "actor": "ai:gpt-5", "node": f"n{i % 7}", "payload": {"text": f"lesson {i}"}}
    fields.update(kw)
    return Draft(**fields)


def rows(store: Store, sql: str = "SELECT seq, prev_hash, hash FROM events ORDER BY seq") -> list[tuple]:
    with store.reader() as con:
        return con.execute(sql).fetchall()


def plain_duckdb(store: Store, sql: str) -> list[tuple]:
    """Read the store's DuckDB file with nothing of this project in the way."""
    con = duckdb.connect(str(store.db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def assert_chain(store: Store, expected: int) -> None:
    chain = rows(store)
    assert [r[0] for r in chain] == list(range(1, expected + 1))
    prev = GENESIS_HASH
    for _seq, prev_hash, h in chain:
        assert prev_hash == prev
        prev = h
    assert verify(store).ok


# -- layout and location ------------------------------------------------------------------


def test_init_creates_the_store_layout(tmp_path):
    store = Store.init(tmp_path / "s")
    root = tmp_path / "s"
    assert (root / DB_FILE).is_file()
    for sub in ("segments", "objects", "inbox", "quarantine"):
        assert (root / sub).is_dir()
    tables = {r[0] for r in plain_duckdb(store, "SELECT table_name FROM information_schema.tables")}
    assert {"event_log", "segments", "events"} <= tables
    assert store.count() == 0


def test_init_twice_keeps_what_is_stored(tmp_path):
    store = Store.init(tmp_path / "s")
    store.append(note(1))
    again = Store.init(tmp_path / "s")
    assert again.count() == 1


def test_opening_a_missing_store_says_how_to_create_one(tmp_path):
    with pytest.raises(StoreNotFound, match="lineage init"):
        Store.open(tmp_path / "nowhere")


def test_store_location_prefers_the_flag_then_the_environment_then_dot_lineage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LINEAGE_STORE", raising=False)
    assert resolve_store_path() == tmp_path / ".lineage"
    monkeypatch.setenv("LINEAGE_STORE", str(tmp_path / "from-env"))
    assert resolve_store_path() == tmp_path / "from-env"
    assert resolve_store_path(tmp_path / "from-flag") == tmp_path / "from-flag"
    assert resolve_store_path("relative") == tmp_path / "relative"


def test_init_without_a_location_uses_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINEAGE_STORE", str(tmp_path / "env-store"))
    Store.init()
    assert (tmp_path / "env-store" / DB_FILE).exists()
    monkeypatch.delenv("LINEAGE_STORE")
    Store.init()
    assert (tmp_path / ".lineage" / DB_FILE).exists()


# -- appending -------------------------------------------------------------------------------


def test_appends_get_gap_free_seq_from_one_and_a_hash_chain(store):
    acks = [store.append(note(i))[0] for i in range(5)]
    assert [a.seq for a in acks] == [1, 2, 3, 4, 5]
    chain = rows(store)
    assert chain[0][1] == GENESIS_HASH
    for before, after in zip(chain, chain[1:], strict=False):
        assert after[1] == before[2]
    assert [r[2] for r in chain] == [a.hash for a in acks]


def test_the_stored_hash_is_the_canonical_envelope_hash(store):
    store.append(note(1, occurred_at="2025-01-02T03:04:05.123456Z", caused_by="0190f7a2-6b1c-7c3e-8e1f-2a3b4c5d6e7f"))
    (row,) = rows(store, f"SELECT {', '.join(COLUMNS)}, epoch_us(occurred_at), epoch_us(recorded_at) FROM events")
    e = dict(zip((*COLUMNS, "occ_us", "rec_us"), row, strict=True))
    body = canonical_body(
        e["seq"], e["event_id"], e["lineage"], e["branch"], e["node"], e["kind"], e["actor_kind"],
        e["actor"], e["actor_node"], e["occ_us"], e["rec_us"], e["payload"], e["schema_version"], e["caused_by"],
    )
    assert e["hash"] == chain_hash(GENESIS_HASH, body)
    assert e["occurred_at"].isoformat() == "2025-01-02T03:04:05.123456+00:00"


def test_an_event_keeps_every_envelope_field(store):
    (ack,) = store.append(note(3, actor="ai:gen-2", actor_node="n2", branch="explore"))
    ((event_id, lineage, branch, node, actor_kind, actor, actor_node, payload),) = rows(
        store, "SELECT event_id, lineage, branch, node, actor_kind, actor, actor_node, payload FROM events")
    assert (event_id, lineage, branch, node) == (ack.event_id, "packing", "explore", "n3")
    assert (actor_kind, actor, actor_node) == ("ai", "ai:gen-2", "n2")
    assert orjson.loads(payload) == {"text": "lesson 3"}


def test_a_batch_is_appended_in_one_transaction(store):
    acks = store.append([note(i) for i in range(100)])
    assert [a.seq for a in acks] == list(range(1, 101))
    assert_chain(store, 100)


def test_a_batch_with_one_invalid_event_stores_nothing(store):
    store.append([note(i) for i in range(3)])
    before = rows(store, "SELECT * FROM events ORDER BY seq")
    bad = [note(10), note(11), note(12, actor="bob"), note(13)]
    with pytest.raises(SchemaError, match="actor"):
        store.append(bad)
    assert rows(store, "SELECT * FROM events ORDER BY seq") == before
    (ack,) = store.append(note(14))
    assert ack.seq == 4
    assert_chain(store, 4)


def test_a_batch_that_fails_part_way_leaves_the_store_and_the_writer_unchanged(store):
    with store.writer() as w:
        w.append_many([prepare(note(i)) for i in range(3)])
        poisoned = prepare(note(4))
        object.__setattr__(poisoned, "payload_json", None)  # cannot be serialized: fails while chaining
        with pytest.raises(TypeError):
            w.append_many([prepare(note(3)), poisoned])
        assert w.head[0] == 3
        assert w.append(prepare(note(5))).seq == 4
    assert_chain(store, 4)


def test_a_nanosecond_timestamp_cannot_make_the_store_unreadable(store):
    store.append(note(1))
    with pytest.raises(SchemaError, match="occurred_at"):
        store.append(note(2, occurred_at=1_795_000_000_000_000_000))
    assert store.count() == 1
    assert store.seal() is not None
    assert verify(store).ok


def test_a_missing_parent_is_allowed_and_stored(store):
    (ack,) = store.append(Draft(lineage="packing", kind="node_created", actor="ai:x", node="child", payload={"parents": ["ghost"]}))
    ((payload,),) = rows(store, f"SELECT payload FROM events WHERE seq = {ack.seq}")
    assert orjson.loads(payload)["parents"] == ["ghost"]


def test_skip_existing_makes_resending_a_batch_a_no_op(store):
    batch = [prepare(note(i)) for i in range(5)]
    with store.writer() as w:
        assert len(w.append_many(batch, skip_existing=True)) == 5
        assert w.append_many(batch, skip_existing=True) == []
        fresh = prepare(note(99))
        acks = w.append_many([batch[0], fresh, fresh], skip_existing=True)
    assert [(a.seq, a.event_id) for a in acks] == [(6, fresh.event_id)]
    assert_chain(store, 6)


def test_skip_existing_sees_events_that_were_already_sealed(store):
    batch = [prepare(note(i)) for i in range(4)]
    with store.writer() as w:
        w.append_many(batch)
        w.seal()
        assert w.append_many(batch, skip_existing=True) == []
    assert store.count() == 4


# -- sealing -------------------------------------------------------------------------------------


def test_seal_moves_events_into_a_zstd_parquet_segment(store):
    store.append([note(i) for i in range(10)])
    result = store.seal()
    assert (result.first_seq, result.last_seq, result.events) == (1, 10, 10)
    assert result.file.parent == store.segments_dir and result.file.exists()
    assert plain_duckdb(store, "SELECT count(*) FROM event_log") == [(0,)]
    meta = pq.ParquetFile(result.file).metadata
    assert meta.num_rows == 10
    codecs = {meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
    assert codecs == {"ZSTD"}
    assert store.seal() is None  # nothing left to seal


def test_sealed_segments_are_read_by_plain_duckdb_and_pyarrow(store):
    store.append([note(i) for i in range(10)])
    store.seal()
    store.append([note(i) for i in range(10, 15)])
    store.seal()
    glob = str(store.segments_dir / "*.parquet")
    con = duckdb.connect()
    got = con.execute(f"SELECT min(seq), max(seq), count(*), count(DISTINCT hash) FROM read_parquet('{glob}')").fetchall()
    assert got == [(1, 15, 15, 15)]
    kinds = con.execute(f"SELECT DISTINCT payload::JSON->>'text' FROM read_parquet('{glob}') WHERE seq = 13").fetchall()
    assert kinds == [("lesson 12",)]
    table = pq.read_table(store.segments_dir)
    assert table.num_rows == 15
    assert table.column_names == list(COLUMNS)
    assert sorted(table["seq"].to_pylist()) == list(range(1, 16))


def test_sealed_segments_are_read_by_polars(store):
    pl = pytest.importorskip("polars")
    store.append([note(i) for i in range(10)])
    store.seal()
    df = pl.read_parquet(str(store.segments_dir / "*.parquet"))
    assert df.height == 10
    assert df["seq"].to_list() == list(range(1, 11))


def test_the_events_view_returns_every_event_in_order_across_segments_and_the_hot_tail(store):
    store.append([note(i) for i in range(6)])
    store.seal()
    store.append([note(i) for i in range(6, 9)])
    store.seal()
    store.append([note(i) for i in range(9, 12)])
    got = rows(store, "SELECT seq, payload->>'text' FROM events ORDER BY seq")
    assert got == [(i + 1, f"lesson {i}") for i in range(12)]
    assert plain_duckdb(store, "SELECT count(*) FROM events") == [(12,)]
    assert_chain(store, 12)


def test_appends_past_the_seal_threshold_seal_automatically(store):
    with store.writer(seal_threshold=5) as w:
        for i in range(12):
            w.append(prepare(note(i)))
    segs = sorted(p.name for p in store.segments_dir.glob("*.parquet"))
    assert segs == ["seg-000000000001-000000000005.parquet", "seg-000000000006-000000000010.parquet"]
    assert plain_duckdb(store, "SELECT seq FROM event_log ORDER BY seq") == [(11,), (12,)]
    assert_chain(store, 12)


def test_a_large_batch_past_the_threshold_is_sealed_whole(store):
    with store.writer(seal_threshold=50) as w:
        w.append_many([prepare(note(i)) for i in range(120)])
    assert plain_duckdb(store, "SELECT count(*) FROM event_log") == [(0,)]
    assert plain_duckdb(store, "SELECT first_seq, last_seq FROM segments") == [(1, 120)]


def test_the_chain_continues_after_a_seal_and_after_reopening(tmp_path):
    root = tmp_path / "s"
    store = Store.init(root)
    store.append([note(i) for i in range(4)])
    store.seal()
    (ack,) = store.append(note(4))
    assert ack.seq == 5
    reopened = Store.open(root)
    with reopened.writer() as w:
        assert w.head == (5, ack.hash)
        w.seal()
    with Store.open(root).writer() as w:
        assert w.head == (5, ack.hash)  # the head is read from the segments when the hot tail is empty
        assert w.append(prepare(note(5))).seq == 6
    assert_chain(Store.open(root), 6)


def test_a_moved_store_still_finds_its_segments(tmp_path):
    store = Store.init(tmp_path / "a")
    store.append([note(i) for i in range(3)])
    store.seal()
    (tmp_path / "a").rename(tmp_path / "b")
    moved = Store.open(tmp_path / "b")
    with moved.writer() as w:
        w.append(prepare(note(3)))
    assert [r[0] for r in rows(moved)] == [1, 2, 3, 4]
    assert verify(moved).ok


# -- several writers ----------------------------------------------------------------------------


def test_two_writers_in_one_process_take_turns_without_forking_the_chain(store):
    errors: list[BaseException] = []

    def produce(offset: int) -> None:
        try:
            for i in range(10):
                with store.writer() as w:
                    w.append(prepare(note(offset + i)))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(k * 100,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert_chain(store, 20)


def test_two_writers_open_in_the_same_thread_do_not_fork_the_chain(store):
    w1, w2 = store.writer(), store.writer()
    try:
        w1.append(prepare(note(1)))
        w2.append(prepare(note(2)))
        w1.append(prepare(note(3)))
    finally:
        w1.close()
        w2.close()
    assert_chain(store, 3)


def test_an_idle_writer_lets_a_writer_in_another_thread_in(store):
    idle = store.writer(idle_release=0.05)
    idle.append(prepare(note(1)))
    time.sleep(0.3)
    done: list = []

    def other() -> None:
        try:
            with store.writer(lock_timeout=2) as w:
                done.append(w.append(prepare(note(2))).seq)
        except BaseException as exc:  # noqa: BLE001
            done.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    idle.close()
    assert done == [2]
