"""Tamper evidence: `verify` recomputes the chain and every hash, and names the first bad event or file."""

from __future__ import annotations

import hashlib
import shutil

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from lineage import Tracker
from lineage.cli import cli
from lineage.store import Store
from lineage.verify import verify

DIFF = """\
--- a/pack.py
+++ b/pack.py
@@ -1,2 +1,3 @@
 def pack(items):
-    return items
+    items = sorted(items, reverse=True)
+    return items
"""


def fill(store: Store, n: int, start: int = 0) -> None:
    with Tracker(store, lineage="packing", actor="ai:gpt-5") as t, t.batch():
        for i in range(start, start + n):
            t.record("score", {"metric": "fill", "value": i / 100}, node=f"n{i}")


@pytest.fixture
def sealed(store):
    """Events 1..20 sealed in one segment, 21..30 in a second, 31..40 in the hot tail, one object."""
    fill(store, 20)
    store.seal()
    fill(store, 10, 20)
    store.seal()
    fill(store, 10, 30)
    store.objects.put(DIFF)
    return store


def tamper_duckdb(store: Store, sql: str) -> None:
    """Edit the DuckDB file the way anyone with the duckdb package could."""
    con = duckdb.connect(str(store.db))
    try:
        con.execute(sql)
    finally:
        con.close()


def segment(store: Store, index: int):
    return sorted(store.segments_dir.glob("*.parquet"))[index]


def only_finding(report):
    assert not report.ok
    assert len(report.findings) == 1
    return str(report.findings[0])


# -- intact ---------------------------------------------------------------------------------


def test_an_intact_store_verifies(sealed):
    report = verify(sealed)
    assert report.ok, report.findings
    assert (report.events, report.segments, report.objects) == (40, 2, 1)


def test_an_empty_store_verifies(store):
    report = verify(store)
    assert report.ok and report.events == 0


def test_a_store_verifies_after_seal_and_more_appends_and_reopening(sealed):
    sealed.seal()
    fill(sealed, 5, 40)
    assert verify(Store.open(sealed.root)).ok


# -- tampering --------------------------------------------------------------------------------


def test_a_flipped_byte_in_a_parquet_segment_is_named(sealed):
    path = segment(sealed, 0)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    msg = only_finding(verify(sealed))
    assert path.name in msg
    assert "modified" in msg


def test_an_edited_duckdb_row_is_named_by_seq(sealed):
    tamper_duckdb(sealed, "UPDATE event_log SET body = replace(body, '\"value\":0.34', '\"value\":0.99') WHERE seq = 35")
    msg = only_finding(verify(sealed))
    assert "seq 35" in msg
    assert "edited" in msg


def test_an_edited_actor_is_caught_even_with_the_payload_untouched(sealed):
    tamper_duckdb(sealed, "UPDATE event_log SET body = replace(body, 'ai:gpt-5', 'human:alice') WHERE seq = 33")
    assert "seq 33" in only_finding(verify(sealed))


def test_a_deleted_event_in_the_duckdb_log_is_named(sealed):
    tamper_duckdb(sealed, "DELETE FROM event_log WHERE seq = 34")
    msg = only_finding(verify(sealed))
    assert "seq 34" in msg
    assert "missing" in msg


def test_a_deleted_event_inside_a_sealed_segment_is_caught_by_the_chain(sealed):
    """The attacker rewrites the segment without one row and updates its recorded file hash,
    so only the hash chain can tell."""
    path = segment(sealed, 0)
    table = pq.read_table(path)
    table = table.filter(pc.not_equal(table["seq"], 7))
    pq.write_table(table, path, compression="zstd")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    tamper_duckdb(sealed, f"UPDATE segments SET file_sha256 = '{digest}', events = 19 WHERE file = '{path.name}'")
    msg = only_finding(verify(sealed))
    assert "seq 7" in msg
    assert path.name in msg


def test_an_edited_row_inside_a_sealed_segment_with_its_file_hash_updated_is_named(sealed):
    path = segment(sealed, 1)
    table = pq.read_table(path)
    payload = table["payload"].to_pylist()
    payload[3] = payload[3].replace("fill", "FILL")
    table = table.set_column(table.column_names.index("payload"), "payload", [payload])
    pq.write_table(table, path, compression="zstd")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    tamper_duckdb(sealed, f"UPDATE segments SET file_sha256 = '{digest}' WHERE file = '{path.name}'")
    msg = only_finding(verify(sealed))
    assert "seq 24" in msg
    assert path.name in msg


def test_a_deleted_segment_file_is_named(sealed):
    path = segment(sealed, 1)
    path.unlink()
    msg = only_finding(verify(sealed))
    assert path.name in msg
    assert "missing" in msg


def test_a_modified_object_is_named(sealed):
    (digest, path) = next(iter(sealed.objects))
    path.write_text(DIFF.replace("reverse=True", "reverse=False"))
    msg = only_finding(verify(sealed))
    assert digest in msg
    assert "modified" in msg


def test_objects_can_be_skipped_for_a_quick_check(sealed):
    (_, path) = next(iter(sealed.objects))
    path.write_text("changed")
    assert verify(sealed, objects=False).ok


def test_the_first_bad_event_is_the_one_named(sealed):
    tamper_duckdb(sealed, "UPDATE event_log SET body = replace(body, 'fill', 'FILL') WHERE seq IN (32, 38)")
    assert "seq 32" in only_finding(verify(sealed))


def test_a_copy_of_a_tampered_store_still_fails(sealed, tmp_path):
    tamper_duckdb(sealed, "DELETE FROM event_log WHERE seq = 36")
    copy = tmp_path / "copy"
    shutil.copytree(sealed.root, copy)
    assert not verify(Store.open(copy)).ok


# -- through the command line ------------------------------------------------------------------


def test_lineage_verify_exits_zero_on_an_intact_store(sealed):
    result = CliRunner().invoke(cli, ["verify", "--store", str(sealed.root)])
    assert result.exit_code == 0, result.output


def test_lineage_verify_exits_one_naming_the_edited_seq(sealed):
    tamper_duckdb(sealed, "UPDATE event_log SET body = replace(body, 'fill', 'FILL') WHERE seq = 37")
    result = CliRunner().invoke(cli, ["verify", "--store", str(sealed.root)])
    assert result.exit_code == 1
    assert "seq 37" in " ".join(result.output.split())


def test_lineage_verify_exits_one_naming_the_modified_segment_file(sealed):
    path = segment(sealed, 0)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["verify", "--store", str(sealed.root)])
    assert result.exit_code == 1
    assert path.name in "".join(result.output.split())  # the console may wrap a long path


# -- anchors: what a chain cannot see by itself ---------------------------------------------


def rehash_hot_tail(store: Store, first: int) -> None:
    """Recompute hash and prev_hash of hot events from seq ``first`` on, as someone covering
    an edit would (the canonical body is stored; the chain is sha256(prev SEP body))."""
    con = duckdb.connect(str(store.db))
    try:
        rows = con.execute("SELECT seq, body FROM event_log WHERE seq >= ? ORDER BY seq", [first]).fetchall()
        prev = con.execute("SELECT hash FROM event_log WHERE seq = ?", [first - 1]).fetchone()[0]
        for seq, body in rows:
            digest = hashlib.sha256((prev + "\x1f" + body).encode()).hexdigest()
            con.execute("UPDATE event_log SET prev_hash = ?, hash = ? WHERE seq = ?", [prev, digest, seq])
            prev = digest
    finally:
        con.close()


def test_the_head_kept_elsewhere_catches_deleted_newest_events(sealed):
    head = verify(sealed).head
    assert head[0] == 40 and len(head[1]) == 64
    fill(sealed, 5, 40)  # the log goes on: the anchor is still in it
    assert verify(sealed, anchors=[head]).ok
    tamper_duckdb(sealed, "DELETE FROM event_log WHERE seq > 38")
    assert verify(sealed).ok  # the chain alone cannot tell
    msg = only_finding(verify(sealed, anchors=[head]))
    assert "seq 40" in msg and "events 39..40 were deleted" in msg


def test_the_head_kept_elsewhere_catches_an_edit_covered_by_rehashing(sealed):
    head = verify(sealed).head
    tamper_duckdb(sealed, "UPDATE event_log SET body = replace(body, '\"value\":0.34', '\"value\":0.99') WHERE seq = 35")
    rehash_hot_tail(sealed, 35)
    assert verify(sealed).ok
    msg = only_finding(verify(sealed, anchors=[head]))
    assert "seq 40" in msg and "rewritten" in msg


def test_verify_prints_the_head_and_takes_it_back_as_an_anchor(sealed):
    first = CliRunner().invoke(cli, ["verify", "--store", str(sealed.root)])
    assert first.exit_code == 0
    anchor = next(line.split(" ", 1)[1] for line in first.output.splitlines() if line.startswith("head: "))
    again = CliRunner().invoke(cli, ["verify", "--store", str(sealed.root), "--anchor", anchor])
    assert again.exit_code == 0 and "1 anchor(s) found" in " ".join(again.output.split())
    tamper_duckdb(sealed, "DELETE FROM event_log WHERE seq = 40")
    assert CliRunner().invoke(cli, ["verify", "--store", str(sealed.root), "--anchor", anchor]).exit_code == 1
    bad = CliRunner().invoke(cli, ["verify", "--store", str(sealed.root), "--anchor", "40:abc"])
    assert bad.exit_code == 2 and "SEQ:HASH" in bad.output
