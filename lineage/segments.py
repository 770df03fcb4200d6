"""Sealing: moving the hot tail of the event log into immutable zstd Parquet segments.

A segment is written beside its final name, flushed, and renamed into place; then, in
one DuckDB transaction, it is registered, the rows it holds leave the hot table, and the
``events`` view is redefined to include it. A crash before that commit leaves an
unregistered file that the next seal of the same range overwrites; a crash after it
leaves everything consistent. Each event is therefore in exactly one place at any time.

Segments are plain Parquet files sorted by ``seq`` under ``segments/``: DuckDB, Polars,
Spark or pyarrow read ``segments/*.parquet`` directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow.parquet as pq

from lineage.db import first_row
from lineage.objects import sha256_file

if TYPE_CHECKING:
    from lineage.store import Store

ZSTD_LEVEL = 1  # measured: as small as level 9 on event data, and ~6x faster to seal
ROW_GROUP = 128 * 1024

# Columns as the public `events` view exposes them (payload typed as JSON for ->> access).
_VIEW_COLUMNS = (
    "seq, event_id, lineage, branch, node, kind, actor_kind, actor, actor_node, occurred_at, "
    "recorded_at, payload::JSON AS payload, schema_version, caused_by, prev_hash, hash"
)

# The hot log stores each event's canonical body (schemas.chain.canonical_body); this
# splits it back into the envelope columns. chr(30) marks NULL, chr(31) separates fields;
# neither can occur inside a field, so the split is exact.
HOT_EVENTS = """
    SELECT seq,
           f[2] AS event_id, f[3] AS lineage, f[4] AS branch, nullif(f[5], chr(30)) AS node,
           f[6] AS kind, f[7] AS actor_kind, f[8] AS actor, nullif(f[9], chr(30)) AS actor_node,
           make_timestamptz(f[10]::BIGINT) AS occurred_at, make_timestamptz(f[11]::BIGINT) AS recorded_at,
           f[12] AS payload, f[13]::INTEGER AS schema_version, nullif(f[14], chr(30)) AS caused_by,
           prev_hash, hash
    FROM (SELECT seq, string_split(body, chr(31)) AS f, prev_hash, hash FROM event_log)
"""


# The newest seq without scanning: every event is in the hot table or in a registered
# segment, so the head is the larger of the two maxima (reading `events` would open every
# segment file: ~20 ms on a million events, paid by the UI on every poll).
HEAD_SEQ_SQL = ("SELECT greatest((SELECT coalesce(max(seq), 0) FROM event_log), "
                "(SELECT coalesce(max(last_seq), 0) FROM segments)) AS seq")


@dataclass(frozen=True)
class SealResult:
    file: Path
    first_seq: int
    last_seq: int
    events: int
    bytes: int


def segment_name(first: int, last: int) -> str:
    return f"seg-{first:012d}-{last:012d}.parquet"


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def events_view_sql(files: list[Path]) -> str:
    hot = f"SELECT {_VIEW_COLUMNS} FROM ({HOT_EVENTS})"
    if not files:
        return f"CREATE OR REPLACE VIEW events AS {hot}"
    listing = ", ".join(_quote(f) for f in files)
    sealed = f"SELECT {_VIEW_COLUMNS} FROM read_parquet([{listing}])"
    return f"CREATE OR REPLACE VIEW events AS {sealed} UNION ALL {hot}"


def registered_files(con: duckdb.DuckDBPyConnection, store: Store) -> list[Path]:
    rows = con.execute("SELECT file FROM segments ORDER BY first_seq").fetchall()
    return [store.segments_dir / r[0] for r in rows]


def ensure_events_view(con: duckdb.DuckDBPyConnection, store: Store) -> None:
    """(Re)define `events` if it is missing or the store has moved since it was defined."""
    here = str(store.segments_dir)
    row = first_row(con.execute("SELECT value FROM store_meta WHERE key = 'segments_dir'"))
    exists = first_row(con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'events' AND NOT internal"))[0]
    if exists and row and row[0] == here:
        return
    con.execute("BEGIN")
    con.execute(events_view_sql(registered_files(con, store)))
    con.execute("INSERT OR REPLACE INTO store_meta VALUES ('segments_dir', ?)", [here])
    con.execute("COMMIT")


def seal(con: duckdb.DuckDBPyConnection, store: Store) -> SealResult | None:
    """Move every hot event into one new segment. Returns None when there is nothing to seal."""
    table = con.sql(f"SELECT * FROM ({HOT_EVENTS}) ORDER BY seq").to_arrow_table()
    if table.num_rows == 0:
        return None
    from lineage.store import ARROW_SCHEMA

    table = table.cast(ARROW_SCHEMA)
    first, last = table["seq"][0].as_py(), table["seq"][-1].as_py()
    store.segments_dir.mkdir(parents=True, exist_ok=True)
    final = store.segments_dir / segment_name(first, last)
    tmp = final.with_suffix(".parquet.tmp")
    pq.write_table(
        table,
        tmp,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        row_group_size=ROW_GROUP,
        use_dictionary=["lineage", "branch", "kind", "actor_kind", "actor", "actor_node", "node"],
        write_statistics=["seq", "occurred_at", "recorded_at", "lineage", "kind"],
    )
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    digest = sha256_file(final)
    size = final.stat().st_size
    last_hash = table["hash"][-1].as_py()
    con.execute("BEGIN")
    try:
        con.execute(
            "INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, current_timestamp)",
            [final.name, first, last, table.num_rows, last_hash, digest, size],
        )
        con.execute("DELETE FROM event_log WHERE seq <= ?", [last])
        con.execute(events_view_sql(registered_files(con, store)))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    # Give the deleted rows' space back to DuckDB now, not at some later checkpoint.
    con.execute("CHECKPOINT")
    return SealResult(final, first, last, table.num_rows, size)
