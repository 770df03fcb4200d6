"""Ingest: move JSONL and Parquet files of events into the log, in batches, idempotently.

Producers in any language write one event envelope per line (the JSON Schemas of
``lineage schema``), or Parquet files with the envelope columns, and never open DuckDB.
``Ingester`` reads those files in chunks of complete lines (or Parquet record batches),
validates every event exactly as ``schemas.prepare`` does (through the fast path of
``lineage.fastprepare`` where it applies), chains the accepted events onto the log and
commits them together with how far each file has been read.

Three modules, by job: ``lineage.ingest_parse`` reads and validates (pure, no DuckDB),
``lineage.ingest_workers`` runs that in worker processes for a large input when a CPU
would otherwise idle, and this one de-duplicates, chains, writes, commits and quarantines,
under the writer lease. Validation works on columns (see ``ingest_parse``); only rows that
fail go one by one through ``prepare`` itself, which decides them.

Where events land. A small commit (a few lines a producer just wrote) goes to the hot
log in DuckDB, like any append. A bulk commit (``segment_events`` or more) is written
straight to a sealed Parquet segment and registered in the same transaction, which is
where a seal would have moved it anyway: a DuckDB insert plus a later seal cost ~15 µs an
event, a segment ~1 µs. The segment of a bulk input is written by a thread while its
events are still being chained.

What makes it safe to run again, or to crash at any moment:

- Event ids decide what is new. An event already in the store, or repeated in the same
  input, is skipped and counted as a duplicate. An event written without an ``event_id``
  gets one derived from where it sits and what it says: UUIDv5 of (source, byte offset
  or row number, SHA-256 of the line), where the source is the file's path relative to
  the store (absolute when outside it). The same line of the same file always gets the
  same id, so ingesting a file twice adds nothing; producers whose events may be re-sent
  from other files should write their own ``event_id`` (UUIDv7).
- Only complete lines are taken. A line still being written (no newline yet) is left for
  the next run and reported as pending; ``complete=True`` says the files are finished, so
  an unterminated last line is read as a line too.
- ``ingest_progress`` (migration m0003) records, per source, the byte offset after the
  last committed line, in the transaction that commits the events: a growing file
  continues where it left off, and a crash replays at most the uncommitted batch, which
  its event ids then make harmless.
- Bad input is never dropped: every line that fails is written whole to ``quarantine/``
  (``<file>.<source-hash>.L<first-line>.jsonl``, one JSON record per bad line with file,
  line, byte offset, field, reason and the raw line, base64 when it is not UTF-8) before
  its batch commits; the rest of the file is ingested. A redone chunk rewrites its own
  quarantine file; any other file of that name is kept (the new one gets a ``~N`` suffix).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lineage.db import first_row
from lineage.fastprepare import EnvelopeChecker
from lineage.inbox import marked_file
from lineage.ingest_parse import (
    _EMPTY_TEXT,
    _TASKS,
    _TS,
    ACCEPTED_FIELDS,
    ENVELOPE_FIELDS,
    REQUIRED_COLUMNS,
    SLICE_ROWS,
    Bad,
    Parsed,
    _close_parquet_reader,
    _no_gc,
    derived_event_id,
    parse_jsonl,
    parse_parquet,
)
from lineage.ingest_workers import WORKERS, _idle_cpu_seconds, _Workers, default_workers
from lineage.objects import fsync_dir, sha256_file
from lineage.segments import ROW_GROUP, _quote, events_view_sql, registered_files, segment_name
from lineage.store import ARROW_SCHEMA, HOT_SCHEMA, YIELD_AFTER, Store, Writer, _waiters
from schemas.chain import NULL, SEP, now_us

JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
PARQUET_MAGIC = b"PAR1"


CHUNK_BYTES = 8 << 20  # JSONL read and validated per task
PARQUET_BATCH_ROWS = 65_536
COMMIT_EVENTS = 200_000  # a transaction closes after this many events ...
COMMIT_SECONDS = 1.0  # ... or this long, so readers see a long ingest progress
SEGMENT_EVENTS = 50_000  # commits this large go straight to a sealed segment, and so do
BULK_BYTES = 16 << 20  # all commits of a JSONL input this large
# Inputs this large are validated in worker processes (when a CPU idles): a worker costs
# ~0.5 s of CPU to start, which a shorter ingest does not win back (measured on 2 CPUs:
# with workers, 200,000 events take ~20% longer, 500,000 take 5% (Parquet) to 20% (JSONL) less).
PARALLEL_BYTES = 128 << 20  # JSONL, ~300,000 lines ...
PARALLEL_ROWS = 400_000  # ... and Parquet rows
SAMPLE_SECONDS = 0.1  # how long a large input is ingested alone before deciding on workers
FINGERPRINT_BYTES = 4096
MAX_PROBLEMS = 20  # bad lines a report lists (all of them are in quarantine)
# zstd level of segments written by ingest: level 9 (seal) is 8x slower here for ~no gain,
# as ids and hashes, most of an event's bytes, do not compress.
SEGMENT_ZSTD_LEVEL = 1

_INSERT_PROGRESS = "INSERT OR REPLACE INTO ingest_progress VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)"



# -- results ------------------------------------------------------------------------------

@dataclass
class FileReport:
    path: Path
    source: str
    format: str = "jsonl"
    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0
    pending_bytes: int = 0
    restarted: bool = False  # the file changed under its recorded progress: read again from the start
    unreadable: str | None = None  # the whole file could not be read (reason)
    note: str | None = None
    quarantine_files: list[Path] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line or row, reason), the first few


@dataclass
class IngestReport:
    files: list[FileReport] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # not an event file (reason)
    interrupted: bool = False

    @property
    def ingested(self) -> int:
        return sum(f.ingested for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)

    @property
    def pending_bytes(self) -> int:
        return sum(f.pending_bytes for f in self.files)


# -- chaining and storing (this process, under the writer lease) ----------------------------

def _known_ids(con: duckdb.DuckDBPyConnection, store: Store, ids: pa.Array,
               pending: list[tuple[pa.Array, tuple[str, str]]]) -> set[str]:
    """Which of ``ids`` the store already holds (segments and hot log), or ``pending`` does
    (chunks of ids, each with its smallest and largest).

    Only ids between the smallest and largest asked for are looked at: segments written by
    ingest keep min/max statistics of event_id, so DuckDB skips the row groups that cannot
    match (with time-ordered UUIDv7 ids, all the old ones).
    """
    lo, hi = (v.as_py() for v in pc.min_max(ids).values())
    # (with time-ordered ids, a chunk of the group so far is mostly all below this one's)
    pending = [chunk for chunk, (first, last) in pending if first <= hi and last >= lo]
    sources = ["SELECT split_part(body, chr(31), 2) AS event_id FROM event_log"]
    files = registered_files(con, store)
    if files:
        sources.append(f"SELECT event_id FROM read_parquet([{', '.join(_quote(f) for f in files)}])")
    if pending:
        con.register("_ingest_pending", pa.table({"event_id": pa.chunked_array(pending, pa.string())}))
        sources.append("SELECT event_id FROM _ingest_pending")
    union = " UNION ALL ".join(sources)
    try:
        # The ids stored within that range, when there are few (with time-ordered ids, none:
        # the statistics answer without reading a row); else DuckDB joins them to ``ids``.
        cap = 4 * len(ids)
        near = con.execute(f"SELECT event_id FROM ({union}) WHERE event_id BETWEEN ? AND ? LIMIT {cap + 1}",
                           [lo, hi]).fetchall()
        if len(near) <= cap:
            return {r[0] for r in near} & set(ids.to_pylist()) if near else set()
        con.register("_ingest_ids", pa.table({"event_id": ids}))
        try:
            rows = con.execute(
                f"SELECT DISTINCT event_id FROM ({union}) "
                "WHERE event_id BETWEEN ? AND ? AND event_id IN (SELECT event_id FROM _ingest_ids)",
                [lo, hi]).fetchall()
        finally:
            con.unregister("_ingest_ids")
    finally:
        if pending:
            con.unregister("_ingest_pending")
    return {r[0] for r in rows}


def bodies(table: pa.Table | pa.RecordBatch, *, keyed: bool = False) -> pa.Array | pa.ChunkedArray:
    """``schemas.chain.canonical_body`` of every row of event-log columns, as one column;
    ``keyed``: each with the separator before it, as the chain hashes it after prev_hash."""
    def text(name: str):
        col = table.column(name)
        return pc.fill_null(col, _NULL_MARK) if col.null_count else col

    def number(name: str):
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        return col.cast(pa.string())

    return pc.binary_join_element_wise(
        *((_EMPTY_TEXT,) if keyed else ()), number("seq"), text("event_id"), text("lineage"), text("branch"), text("node"), text("kind"),
        text("actor_kind"), text("actor"), text("actor_node"), number("occurred_at"), number("recorded_at"),
        text("payload"), number("schema_version"), text("caused_by"), _SEP_TEXT)


_NULL_MARK, _SEP_TEXT = pa.scalar(NULL, pa.string()), pa.scalar(SEP, pa.string())
_ONE = pa.scalar(1, pa.int64())


def chain(events: pa.RecordBatch, seq: int, prev: str, recorded_us: int) -> tuple[pa.Table, pa.Array, int, str]:
    """Number, timestamp and hash validated events onto the chain head.

    Returns the event-log rows (``ARROW_SCHEMA``), their canonical bodies, each with the
    separator before it (``bodies(keyed=True)``), and the new head.
    hash = sha256(prev_hash SEP body), as ``schemas.chain.chain_hash``.
    """
    n = events.num_rows
    c = events.column
    table = pa.Table.from_arrays([
        pc.cumulative_sum(pa.repeat(_ONE, n), start=pa.scalar(seq, pa.int64())), c("event_id"), c("lineage"), c("branch"), c("node"),
        c("kind"), c("actor_kind"), c("actor"), c("actor_node"), c("occurred_at"),
        pa.repeat(pa.scalar(recorded_us, _TS), n), c("payload"), c("schema_version"), c("caused_by"),
        pa.nulls(n, pa.string()), pa.nulls(n, pa.string()),
    ], schema=ARROW_SCHEMA)
    # The separator joined on with the fields rather than per event in the loop below, which
    # is this process's busiest line: one concatenation an event instead of two.
    keyed = bodies(table, keyed=True)
    sha = hashlib.sha256
    head = prev.encode()
    hashes: list[bytes] = []
    with _no_gc():
        # A slice of bodies at a time, as Python bytes: those of a whole batch at once would
        # take fresh pages (see SLICE_ROWS). Each hash is the next one's prev_hash.
        binary = keyed.cast(pa.binary())
        for first in range(0, n, SLICE_ROWS):
            part = binary.slice(first, SLICE_ROWS).to_pylist()
            hashes += [head := sha(head + b).hexdigest().encode() for b in part]
    hash_column = pa.array(hashes, pa.binary()).cast(pa.string())
    prev_column = pa.concat_arrays([pa.array([prev], pa.string()), hash_column])[:n]
    table = table.set_column(14, "prev_hash", prev_column).set_column(15, "hash", hash_column)
    return table, keyed, seq + n, head.decode()


def hot_rows(table: pa.Table, body: pa.Array | pa.ChunkedArray | None = None) -> pa.Table:
    """Event-log rows as the hot log keeps them: (seq, canonical body, prev_hash, hash)."""
    return pa.Table.from_arrays([table.column("seq"), bodies(table) if body is None else body,
                                 table.column("prev_hash"), table.column("hash")], schema=HOT_SCHEMA)


_SEGMENT_OPTIONS = {
    "compression": "zstd", "compression_level": SEGMENT_ZSTD_LEVEL,
    "use_dictionary": ["lineage", "branch", "kind", "actor_kind", "actor", "actor_node", "node"],
    "write_statistics": ["seq", "event_id", "occurred_at", "recorded_at", "lineage", "kind"],
}


def write_segment(store: Store, table: pa.Table) -> tuple[Path, str, int]:
    """Write events as a segment file (fsynced, then renamed into place); not yet registered."""
    first, last = table["seq"][0].as_py(), table["seq"][-1].as_py()
    store.segments_dir.mkdir(parents=True, exist_ok=True)
    final = store.segments_dir / segment_name(first, last)
    tmp = final.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP, **_SEGMENT_OPTIONS)
    return _put_in_place(tmp, final)


def _put_in_place(tmp: Path, final: Path, digest: str | None = None) -> tuple[Path, str, int]:
    """Make a written segment file durable under its name: (path, sha256, size). ``digest``:
    its sha256, when taken as it was written (else the file is read again for it)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    with suppress(OSError):
        fsync_dir(final.parent)
    return final, digest or sha256_file(final), final.stat().st_size


class _HashingSink(io.RawIOBase):
    """A file that hashes what is written to it: the segment's sha256 is known once it is
    written, instead of after reading ~100 MB back at the commit, which waits for it."""

    def __init__(self, path: Path):
        super().__init__()
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        n = self._file.write(data)
        self.sha.update(memoryview(data)[:n])
        self.size += n
        return n

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        super().close()  # (flushes first)
        self._file.close()


class _SegmentFile:
    """The segment of a bulk group, written while the group is still being chained.

    Each chained piece goes to a thread of its own, which writes a row group whenever half
    of ``ROW_GROUP`` events or more are waiting (at most ``ROW_GROUP`` of them; the Parquet
    writer lets go of the GIL): by the commit, all but the last few events are written.
    (Row groups of exactly ``ROW_GROUP``, as ``write_segment`` makes, would leave up to
    that many for the commit to wait for.) The file gets its name, for the seqs it holds,
    only when complete; until the commit registers it, nothing refers to it. A write that
    fails fails every later one, and the group with it.
    """

    def __init__(self, store: Store, first_seq: int):
        store.segments_dir.mkdir(parents=True, exist_ok=True)
        self.dir = store.segments_dir
        self.tmp = self.dir / f"seg-{first_seq:012d}-open.parquet.tmp"
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="ingest-segment")
        self._writes: deque[Future] = deque()
        self._writer: pq.ParquetWriter | None = None
        self._sink: _HashingSink | None = None
        self._buffered: list[pa.Table] = []
        self._rows = 0  # buffered
        self._written = 0  # events in the file
        self._error: BaseException | None = None

    def add(self, table: pa.Table) -> None:
        while self._writes and self._writes[0].done():
            self._writes.popleft().result()  # a write that failed fails the group now
        self._writes.append(self._thread.submit(self._write, table))

    def _write(self, table: pa.Table | None) -> None:
        if self._error is not None:
            raise OSError(f"{self.tmp}: an earlier write failed") from self._error
        try:
            if table is not None:
                self._buffered.append(table)
                self._rows += table.num_rows
            while self._rows >= ROW_GROUP // 2 or (table is None and self._rows):
                rows = pa.concat_tables(self._buffered)
                if self._writer is None:
                    self._sink = _HashingSink(self.tmp)
                    self._writer = pq.ParquetWriter(self._sink, rows.schema, **_SEGMENT_OPTIONS)
                group = rows.slice(0, ROW_GROUP)
                self._writer.write_table(group, row_group_size=ROW_GROUP)
                self._written += group.num_rows
                rest = rows.slice(ROW_GROUP)
                self._buffered, self._rows = ([rest] if rest.num_rows else []), rest.num_rows
            if table is None and self._writer is not None:
                self._writer.close()
                self._sink.close()
        except BaseException as exc:
            self._error = exc
            raise

    def finish(self, first: int, last: int) -> Future:
        """Write the rest, close, and put the file in place for events ``first``..``last``,
        in the thread: the future's result is (path, sha256, size)."""
        done = self._thread.submit(self._finish, first, last)
        self._thread.shutdown(wait=False)
        return done

    def _finish(self, first: int, last: int) -> tuple[Path, str, int]:
        while self._writes:
            with suppress(Exception):  # the first failure is raised below
                self._writes.popleft().result()
        if self._error is not None:
            raise self._error
        self._write(None)
        if self._written != last - first + 1:
            raise RuntimeError(f"{self.tmp}: {self._written} events written, not {last - first + 1}")
        return _put_in_place(self.tmp, self.dir / segment_name(first, last), self._sink.sha.hexdigest())

    def abort(self) -> None:
        self._thread.shutdown(cancel_futures=True)
        with suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        with suppress(Exception):
            if self._sink is not None:
                self._sink.close()
        self.tmp.unlink(missing_ok=True)


def _remove_orphan_segments(con: duckdb.DuckDBPyConnection, store: Store, head_seq: int) -> None:
    """Segment files beyond the chain head were written by a commit that never happened."""
    known = {p.name for p in registered_files(con, store)}
    for f in store.segments_dir.glob("seg-*.parquet"):
        with suppress(ValueError, IndexError):
            if f.name not in known and int(f.stem.split("-")[1]) > head_seq:
                f.unlink()


# -- the ingester ---------------------------------------------------------------------------

def _chunk_end(fd: int, start: int, size: int) -> tuple[int, int]:
    """Where a chunk of whole lines from ``start`` ends: after the last newline within
    ``size`` bytes (further when a line is longer); ``start`` when no newline follows it.
    Also returns the end of the file as it is now."""
    while True:
        end = os.fstat(fd).st_size
        limit = min(start + size, end)
        hi = limit
        while hi > start:  # look back from the limit, a little at a time
            lo = max(start, hi - 65536)
            at = os.pread(fd, hi - lo, lo).rfind(b"\n")
            if at >= 0:
                return lo + at + 1, end
            hi = lo
        if limit == end:
            return start, end
        size *= 2  # a line longer than a chunk


def source_key(store: Store, path: Path) -> str:
    """How progress and derived ids name a file: relative to the store when inside it."""
    p = path.resolve()
    try:
        return p.relative_to(store.root).as_posix()
    except ValueError:
        return str(p)


def file_format(path: Path) -> str | None:
    """``jsonl``, ``parquet``, or None when the name says neither."""
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return None


def is_event_file(path: Path) -> bool:
    name = path.name
    return not name.startswith(".") and not name.endswith(("~", ".tmp", ".part")) and file_format(path) is not None


def expand_paths(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files to ingest (directories are searched, in name order), and what was skipped there and why."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                if is_event_file(f):
                    files.append(f)
                elif not f.name.startswith(".") and not f.name.endswith(".tmp") and not _is_marker(f):
                    skipped.append((f, "not an event file (expected .jsonl, .ndjson or .parquet)"))
        elif p.exists():
            files.append(p)
        else:
            skipped.append((p, "no such file"))
    return files, skipped


def _is_marker(path: Path) -> bool:
    """A producer's mark that an event file is done (``lineage.inbox``): not a file to report."""
    target = marked_file(path)
    return target is not None and is_event_file(target)


@dataclass
class _Progress:
    position: int = 0
    lines: int = 0
    fingerprint: str = ""
    fingerprint_bytes: int = 0
    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0


@dataclass
class _Group:
    """Chunks of one file chained but not yet committed (one transaction)."""

    head_seq: int
    head_hash: str
    bulk: bool = False  # part of a large input: straight to a segment, however it ends
    base: tuple[int, str] = (0, "")  # the head it was chained onto
    segment: _SegmentFile | None = None  # of a bulk group, written as the group grows; the
    pieces: list[pa.Table] = field(default_factory=list)  # others keep their chained pieces
    bodies: list[pa.Array] = field(default_factory=list)  # (and bodies, for the hot log)
    ids: list[tuple[pa.Array, tuple[str, str]]] = field(default_factory=list)  # of the events chained so far, (min, max)
    events: int = 0
    duplicates: int = 0
    bad: int = 0
    started: float = field(default_factory=time.monotonic)
    released: bool = False  # committed, and the writer's mutex given back


@dataclass
class _Committing:
    """A bulk group whose segment file a thread is still finishing; its transaction (the
    file registered, and how far the input was read) follows once the file is durable."""

    group: _Group
    file: Future  # -> (path, sha256, size)
    row: list  # of ingest_progress
    prog: _Progress
    report: FileReport


class _HeadMoved(Exception):
    """Another writer appended while the lease was handed over, under a group chained onto
    the head before: the group is dropped, and the input read on from what was committed."""


class Ingester:
    """Moves event files into one store through one writer. Use as a context manager.

    ``complete``: the files are finished, so an unterminated last line is read too.
    ``quarantine_unreadable``: copy a Parquet file that cannot be read to quarantine (watch
    turns this off and retries, since the file may still be being written).
    ``workers``: processes validating large inputs (None: as many as pay, see
    ``default_workers``; 0: none).
    ``on_progress(path, done, total)`` is called after each chunk (bytes, or Parquet rows);
    ``should_stop()`` is asked between chunks: a clean stop leaves no half-done batch.
    """

    def __init__(
        self,
        store: Store,
        *,
        writer: Writer | None = None,
        complete: bool = False,
        quarantine_unreadable: bool = True,
        workers: int | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        parquet_rows: int = PARQUET_BATCH_ROWS,
        commit_events: int = COMMIT_EVENTS,
        commit_seconds: float = COMMIT_SECONDS,
        segment_events: int = SEGMENT_EVENTS,
        bulk_bytes: int = BULK_BYTES,
        parallel_bytes: int = PARALLEL_BYTES,
        parallel_rows: int = PARALLEL_ROWS,
        on_progress: Callable[[Path, int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ):
        self.store = store
        self._own_writer = writer is None
        self.writer = writer or store.writer(idle_release=0.25, max_hold=1.0)
        self.complete = complete
        self.quarantine_unreadable = quarantine_unreadable
        self.workers = workers
        self.chunk_bytes = chunk_bytes
        self.parquet_rows = parquet_rows
        self.commit_events = commit_events
        self.commit_seconds = commit_seconds
        self.segment_events = segment_events
        self.bulk_bytes = bulk_bytes
        self.parallel_bytes = parallel_bytes
        self.parallel_rows = parallel_rows
        self.on_progress = on_progress or (lambda _p, _d, _t: None)
        self.should_stop = should_stop or (lambda: False)
        self.checker = EnvelopeChecker()
        self._pool: _Workers | None = None
        self._committing: _Committing | None = None  # a bulk commit still open
        self._overlap = True  # chain a group onto an open commit

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._own_writer:
            self.writer.close()

    def __enter__(self) -> Ingester:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- entry points ---------------------------------------------------------------------

    def ingest(self, paths: Iterable[str | os.PathLike]) -> IngestReport:
        files, skipped = expand_paths(paths)
        report = IngestReport(skipped=skipped)
        for f in files:
            if self.should_stop():
                break
            report.files.append(self.ingest_file(f))
        report.interrupted = self.should_stop()
        return report

    def ingest_file(self, path: str | os.PathLike, fmt: str | None = None) -> FileReport:
        path = Path(path)
        source = source_key(self.store, path)
        fmt = fmt or file_format(path)
        if fmt is None:
            with open(path, "rb") as f:
                fmt = "parquet" if f.read(4) == PARQUET_MAGIC else "jsonl"
        report = FileReport(path, source, fmt)
        ingest = self._ingest_parquet if fmt == "parquet" else self._ingest_jsonl
        with _no_gc():  # see _no_gc: the pauses it saves come to ~10% of an ingest
            try:
                ingest(path, source, report)
            except _HeadMoved:
                self._overlap = False
                try:
                    ingest(path, source, report)  # on from the progress committed
                finally:
                    self._overlap = True
        return report

    def finished(self, path: str | os.PathLike) -> bool:
        """Whether all of ``path`` is in the store: every line (or row) ingested, skipped as
        a duplicate or quarantined, as far as the file reaches now."""
        path = Path(path)
        prog = self._progress(source_key(self.store, path))
        try:
            if (file_format(path) or "jsonl") == "parquet":
                return prog.position >= pq.ParquetFile(path).metadata.num_rows
            return prog.position >= path.stat().st_size
        except (OSError, pa.ArrowException):
            return False

    # -- validation, in order, in workers when it pays ----------------------------------

    def _validated(self, tasks: Iterator[tuple], parallel: bool, fmt: str) -> Iterator[tuple[Parsed, tuple]]:
        """Run ``(task, args, meta)`` tasks; yield (result, meta) in task order: for a large
        (``parallel``) input, in worker processes when they pay."""
        tasks = iter(tasks)
        parallel = parallel and self.workers != 0
        if parallel and not (self._pool and self._pool.procs):
            workers = self.workers
            if workers is None:
                # Ingest here for a moment and see how much CPU the rest of the machine uses
                # meanwhile. Workers start at once, as if they will pay (they take ~0.4 s to
                # import what they need), and stop if they will not.
                idle = _idle_cpu_seconds()
                if idle is None:
                    guess = default_workers(fmt)  # by the load average
                else:
                    guess = WORKERS[fmt] if (os.cpu_count() or 1) > 1 else 0
                self._pool = _Workers(guess) if guess else None
                mine, started = time.process_time(), time.monotonic()
                for name, args, meta in tasks:
                    yield _TASKS[name](*args), meta
                    if time.monotonic() - started >= SAMPLE_SECONDS:
                        break
                else:
                    return
                idle_now, elapsed = _idle_cpu_seconds(), time.monotonic() - started
                if idle is None or idle_now is None:
                    workers = guess
                else:
                    # what neither this process nor its workers used, nor the CPUs idled away
                    used = time.process_time() - mine + (self._pool.cpu_seconds() if self._pool else 0.0)
                    others = ((os.cpu_count() or 1) * elapsed - (idle_now - idle) - used) / elapsed
                    workers = default_workers(fmt, (os.cpu_count() or 1) - 1 - others)
                if self._pool is not None and len(self._pool.procs) != workers:
                    self._pool.close(abort=True)
                    self._pool = None
            if workers and self._pool is None:
                self._pool = _Workers(workers)
        if parallel and self._pool and self._pool.procs:
            yield from self._pool.run(tasks)
            return
        for name, args, meta in tasks:
            yield _TASKS[name](*args), meta

    # -- JSONL ----------------------------------------------------------------------------

    def _ingest_jsonl(self, path: Path, source: str, report: FileReport) -> None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = os.pread(f.fileno(), FINGERPRINT_BYTES, 0)
            prog = self._progress(source)
            if prog.position:
                same = (size >= prog.position and prog.fingerprint_bytes <= len(head)
                        and hashlib.sha256(head[:prog.fingerprint_bytes]).hexdigest() == prog.fingerprint)
                if not same:
                    report.restarted = True
                    prog = _Progress(ingested=prog.ingested, duplicates=prog.duplicates, quarantined=prog.quarantined)
            if size == prog.position:
                return
            pending = {"bytes": 0}

            def tasks() -> Iterator[tuple]:
                # Chunks of whole lines; the task reads its chunk itself (here, or in a worker).
                pos = prog.position
                st = os.fstat(f.fileno())
                file = (str(path), (st.st_dev, st.st_ino))
                while not self.should_stop():
                    cut, end = _chunk_end(f.fileno(), pos, self.chunk_bytes)
                    if cut > pos:
                        yield "jsonl", (*file, pos, cut - pos, False, source), (pos, cut - pos)
                        pos = cut
                    elif end > pos and self.complete:  # an unterminated last line
                        yield "jsonl", (*file, pos, end - pos, True, source), (pos, end - pos)
                        return
                    else:
                        pending["bytes"] = end - pos  # a line still being written
                        return

            parallel = size - prog.position >= self.parallel_bytes
            bulk = size - prog.position >= self.bulk_bytes
            group: _Group | None = None
            try:
                for parsed, (start, length) in self._validated(tasks(), parallel, "jsonl"):
                    group = group or self._begin(bulk)
                    self._add(group, path, source, "jsonl", parsed, report, first_line=prog.lines + 1)
                    prog.lines += parsed.lines
                    prog.position = start + length
                    if self._due(group):
                        self._commit(group, path, source, "jsonl", prog, report, head)
                        group = None
                    self.on_progress(path, prog.position, max(size, prog.position))
                if group is not None:
                    self._commit(group, path, source, "jsonl", prog, report, head)
                    group = None
                self._settle()
            finally:
                if group is not None and not group.released:
                    self._abandon(group)
                self._drop_open_commit()
            report.pending_bytes = pending["bytes"]

    # -- Parquet --------------------------------------------------------------------------

    def _ingest_parquet(self, path: Path, source: str, report: FileReport) -> None:
        size = path.stat().st_size
        with open(path, "rb") as f:
            footer = os.pread(f.fileno(), 65536, max(0, size - 65536))
        fingerprint = hashlib.sha256(str(size).encode() + b"\x00" + footer).hexdigest()
        prog = self._progress(source)
        if prog.fingerprint != fingerprint:
            if prog.position or prog.quarantined:
                report.restarted = True
            prog = _Progress(fingerprint=fingerprint, ingested=prog.ingested, duplicates=prog.duplicates,
                             quarantined=prog.quarantined)
        elif prog.position == 0 and prog.quarantined:
            report.note = "already quarantined as unreadable; nothing new"
            return
        try:
            pf = pq.ParquetFile(path)
            names = set(pf.schema_arrow.names)
        except (pa.ArrowException, OSError) as exc:
            self._reject_file(path, source, report, prog, f"not a readable Parquet file (partly written?): {exc}")
            return
        unknown = sorted(names - ACCEPTED_FIELDS)
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if unknown or missing:
            why = []
            if unknown:
                why.append(f"unknown column(s) {', '.join(unknown)} (extra data belongs in payload)")
            if missing:
                why.append(f"missing column(s) {', '.join(missing)}")
            self._reject_file(path, source, report, prog, "; ".join(why))
            return
        total = pf.metadata.num_rows
        done = prog.position
        if done >= total:
            return
        # Skip whole row groups already taken, then the rest of a partly taken one.
        groups, first = [], 0
        for g in range(pf.metadata.num_row_groups):
            rows = pf.metadata.row_group(g).num_rows
            if first + rows > done or groups:
                groups.append(g)
            else:
                first += rows
        columns = [c for c in pf.schema_arrow.names if c in ENVELOPE_FIELDS]

        def tasks() -> Iterator[tuple]:
            # Slices of row groups; the task reads its rows itself (here, or in a worker).
            start = first  # row of the file that row group g starts with
            for g in groups:
                rows = pf.metadata.row_group(g).num_rows
                slices = -(-rows // self.parquet_rows)
                step = -(-rows // slices) if slices else 1  # even slices: none much smaller
                for offset in range(0, rows, step):
                    if self.should_stop():
                        return
                    lo, hi = max(start + offset, done), start + min(offset + step, rows)
                    if lo < hi:
                        yield "parquet", (str(path), fingerprint, g, lo - start, hi - lo, columns, step, lo,
                                          source), (lo, hi - lo)
                start += rows

        group: _Group | None = None
        try:
            for parsed, (row, count) in self._validated(tasks(), total - done >= self.parallel_rows, "parquet"):
                group = group or self._begin(total - done >= self.segment_events)
                self._add(group, path, source, "parquet", parsed, report, first_line=row)
                prog.position = prog.lines = row + count
                if self._due(group):
                    self._commit(group, path, source, "parquet", prog, report, None)
                    group = None
                self.on_progress(path, prog.position, total)
            if group is not None:
                self._commit(group, path, source, "parquet", prog, report, None)
                group = None
            self._settle()
        except (pa.ArrowException, OSError) as exc:
            if group is not None and not group.released:
                self._abandon(group)
            group = None
            self._settle()  # what was read before is fine (a failed segment write is settled already)
            self._reject_file(path, source, report, prog, f"Parquet file unreadable after row {prog.position}: {exc}")
        finally:
            _close_parquet_reader()
            if group is not None and not group.released:
                self._abandon(group)
            self._drop_open_commit()

    def _reject_file(self, path: Path, source: str, report: FileReport, prog: _Progress, reason: str) -> None:
        """A whole file that cannot be read as events: keep a copy in quarantine, with the reason."""
        report.unreadable = reason
        report.problems.append((prog.position, reason))
        if not self.quarantine_unreadable:
            return  # it may still be being written (watch retries it)
        q = self._quarantine_name(path, source, f"row{prog.position}")
        copy = q.with_name(q.name[: -len(".jsonl")] + path.suffix)
        tmp = copy.with_name(copy.name + ".tmp")
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, copy)
        self._write_records(q, [{"file": str(path), "source": source, "row": prog.position, "reason": reason,
                                 "copy": copy.name}])
        report.quarantined += 1
        report.quarantine_files += [q, copy]
        with self.writer._mutex:
            self.writer.con.execute(_INSERT_PROGRESS, [
                source, str(path), report.format, prog.position, prog.lines, prog.fingerprint, 0,
                prog.ingested, prog.duplicates, prog.quarantined + 1])

    # -- progress and quarantine ------------------------------------------------------------

    def _progress(self, source: str) -> _Progress:
        with self.writer._mutex:
            row = first_row(self.writer.con.execute(
                "SELECT position, lines, fingerprint, fingerprint_bytes, ingested, duplicates, quarantined "
                "FROM ingest_progress WHERE source = ?", [source]))
        return _Progress(*row) if row else _Progress()

    def _quarantine_name(self, path: Path, source: str, where: str) -> Path:
        tag = hashlib.sha256(source.encode()).hexdigest()[:8]
        return self.store.quarantine / f"{path.name}.{tag}.{where}.jsonl"

    @staticmethod
    def _write_records(target: Path, records: list[dict]) -> None:
        """Write atomically: a chunk redone after a crash rewrites the same file, whole."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as f:
            for r in records:
                f.write(orjson.dumps(r) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    def _quarantine(self, path: Path, source: str, fmt: str, parsed: Parsed, first_line: int) -> Path:
        records = []
        for b in parsed.bad:
            rec: dict = {"file": str(path), "source": source}
            if fmt == "jsonl":
                rec |= {"line": first_line + b.index, "offset": b.offset}
            else:
                rec |= {"row": b.offset}
            rec |= {"reason": b.reason, "field": b.field}
            try:
                rec["raw"] = b.raw.decode("utf-8")
            except UnicodeDecodeError:
                rec["raw_base64"] = base64.b64encode(b.raw).decode("ascii")
            records.append(rec)
        target = self._quarantine_name(path, source, f"L{first_line}" if fmt == "jsonl" else f"row{first_line}")
        target = _free_target(target, records)
        self._write_records(target, records)
        return target

    # -- groups: chained chunks committed as one transaction -------------------------------
    #
    # The segment of a bulk group is finished (its last rows written, the file made
    # durable) by a thread while the next group is already being chained onto it: that
    # group starts from the head the open commit will leave, under the same lease. The
    # open commit is settled (its transaction run) as soon as its file is ready, or before
    # anything that must follow it: the next commit, a hand-over of the lease, the end.
    # A lease handed over meanwhile may come back with a head another writer moved: the
    # group chained onto the old one is then dropped, and the file read on from what was
    # committed, without overlapping again (_HeadMoved).

    def _begin(self, bulk: bool) -> _Group:
        """Take the writer lease for a group; it is held until the group commits."""
        w = self.writer
        w._mutex.acquire()
        try:
            c = self._committing
            if c is not None and self._overlap and not self._lease_wanted():
                seq, head = c.group.head_seq, c.group.head_hash
            else:
                self._settle()
                w._maybe_yield()
                w.con  # noqa: B018 - take the lease and read the chain head
                seq, head = w._head_seq, w._head_hash
            return _Group(seq, head, bulk, base=(seq, head), segment=_SegmentFile(self.store, seq + 1) if bulk else None)
        except BaseException:
            w._mutex.release()
            raise

    def _lease_wanted(self) -> bool:
        """Whether the lease is due to be handed over, as ``Writer._maybe_yield`` decides."""
        w = self.writer
        held = time.monotonic() - w._held_since
        return (bool(w.max_hold) and held >= w.max_hold) or (held >= YIELD_AFTER and bool(_waiters(self.store.db)))

    def _abandon(self, group: _Group) -> None:
        """Drop an uncommitted group: nothing of it reached the store; re-read the head next time."""
        w = self.writer
        try:
            if group.segment is not None:
                group.segment.abort()
            w.release()
        finally:
            w._mutex.release()

    def _drop_open_commit(self) -> None:
        """On the way out of a failed ingest: drop a commit still open (its events are read
        again next time, from the progress committed before it)."""
        c, self._committing = self._committing, None
        if c is not None:
            with suppress(Exception):
                c.file.result()
            self._abandon(c.group)

    def _due(self, group: _Group) -> bool:
        return group.events >= self.commit_events or time.monotonic() - group.started >= self.commit_seconds

    def _add(self, group: _Group, path: Path, source: str, fmt: str, parsed: Parsed, report: FileReport,
             *, first_line: int) -> None:
        if self._committing is not None and self._committing.file.done():
            self._settle()
            self._hand_over(group)
        if parsed.bad:
            report.quarantine_files.append(self._quarantine(path, source, fmt, parsed, first_line))
            group.bad += len(parsed.bad)
            for b in parsed.bad[: max(0, MAX_PROBLEMS - len(report.problems))]:
                report.problems.append((first_line + b.index if fmt == "jsonl" else b.offset, b.reason))
        events = parsed.events
        if events.num_rows == 0:
            return
        ids = events.column("event_id")
        pending = group.ids + (self._committing.group.ids if self._committing is not None else [])
        known = _known_ids(self.writer.con, self.store, ids, pending)
        if known or pc.count_distinct(ids).as_py() != len(ids):
            seen = set(known)
            mask = []
            for eid in ids.to_pylist():
                mask.append(eid not in seen)
                seen.add(eid)
            events = events.filter(pa.array(mask))
            group.duplicates += len(ids) - events.num_rows
            ids = events.column("event_id")
        if events.num_rows == 0:
            return
        group.ids.append((ids, tuple(v.as_py() for v in pc.min_max(ids).values())))
        table, keyed, group.head_seq, group.head_hash = chain(events, group.head_seq, group.head_hash, now_us())
        if group.segment is not None:
            group.segment.add(table)
        else:
            group.pieces.append(table)
            group.bodies.append(pc.utf8_slice_codeunits(keyed, 1))  # the hot log keeps the bodies
        group.events += table.num_rows
        self.writer._last_used = time.monotonic()

    def _hand_over(self, group: _Group) -> None:
        """Hand the lease over if it is due (as ``_begin`` does); ``group`` stands only if the
        head is still the one it was chained onto."""
        w = self.writer
        w._maybe_yield()
        w.con  # noqa: B018 - take the lease (back) and read the chain head
        if (w._head_seq, w._head_hash) != group.base:
            raise _HeadMoved

    def _commit(self, group: _Group, path: Path, source: str, fmt: str, prog: _Progress, report: FileReport,
                head: bytes | None) -> None:
        # On any exception the caller abandons the group (which releases the lease and the
        # mutex); once committed, the mutex is released (group.released), by _settle for a
        # commit left open.
        w = self.writer
        self._settle()
        if (w._head_seq, w._head_hash) != group.base:
            raise _HeadMoved  # (only after a hand-over; checked there)
        con = w.con
        if fmt == "jsonl":
            fp_len = min(FINGERPRINT_BYTES, prog.position, len(head or b""))
            prog.fingerprint = hashlib.sha256((head or b"")[:fp_len]).hexdigest()
            prog.fingerprint_bytes = fp_len
        row = [source, str(path), fmt, prog.position, prog.lines, prog.fingerprint, prog.fingerprint_bytes,
               prog.ingested + group.events, prog.duplicates + group.duplicates, prog.quarantined + group.bad]
        segment = None
        if group.events and (group.bulk or group.events >= self.segment_events):
            if w._hot:
                w.seal()  # the hot tail first: segments stay in seq order
            _remove_orphan_segments(con, self.store, w._head_seq)
            if group.segment is not None:  # finished by its thread; committed by _settle
                first = group.head_seq - group.events + 1
                self._committing = _Committing(group, group.segment.finish(first, group.head_seq), row, prog, report)
                return
            segment = write_segment(self.store, pa.concat_tables(group.pieces))
        elif group.segment is not None:
            group.segment.abort()  # no events after all
        con.execute("BEGIN")
        try:
            if segment is not None:
                self._register(segment, group)
            elif group.events:
                body = pa.chunked_array([c for b in group.bodies for c in getattr(b, "chunks", [b])], pa.string())
                con.register("_ingest_batch", hot_rows(pa.concat_tables(group.pieces), body))
                con.execute("INSERT INTO event_log SELECT * FROM _ingest_batch")
                con.unregister("_ingest_batch")
            con.execute(_INSERT_PROGRESS, row)
            con.execute("COMMIT")
        except BaseException:
            with suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
        self._committed(group, prog, report, hot=segment is None)

    def _settle(self) -> None:
        """Run the transaction of the open commit, once its segment file is durable."""
        c, self._committing = self._committing, None
        if c is None:
            return
        try:
            segment = c.file.result()
            con = self.writer.con
            con.execute("BEGIN")
            try:
                self._register(segment, c.group)
                con.execute(_INSERT_PROGRESS, c.row)
                con.execute("COMMIT")
            except BaseException:
                with suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
        except BaseException:
            self._abandon(c.group)
            raise
        self._committed(c.group, c.prog, c.report, hot=False)

    def _register(self, segment: tuple[Path, str, int], group: _Group) -> None:
        """Within the commit's transaction: the group's segment file joins the log."""
        file, digest, size = segment
        con = self.writer.con
        con.execute("INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, current_timestamp)",
                    [file.name, group.head_seq - group.events + 1, group.head_seq, group.events, group.head_hash,
                     digest, size])
        con.execute(events_view_sql(registered_files(con, self.store)))

    def _committed(self, group: _Group, prog: _Progress, report: FileReport, *, hot: bool) -> None:
        """After a group's transaction: the head moves on, the counts add up, the mutex is given back."""
        w = self.writer
        if group.events:
            w._head_seq, w._head_hash = group.head_seq, group.head_hash
            if hot:
                w._hot += group.events
        w._last_used = time.monotonic()
        prog.ingested += group.events
        prog.duplicates += group.duplicates
        prog.quarantined += group.bad
        report.ingested += group.events
        report.duplicates += group.duplicates
        report.quarantined += group.bad
        try:
            if hot:
                w._seal_if_due()
        finally:
            group.released = True
            w._mutex.release()


def _record_key(r: dict) -> tuple:
    return (r.get("line"), r.get("row"), r.get("offset"), r.get("raw"), r.get("raw_base64"))


def _free_target(target: Path, records: list[dict]) -> Path:
    """``target``, unless it holds records these do not repeat (the same file name and line
    in a file since replaced): then the next free ``.N`` name, so nothing is overwritten.
    A chunk redone after a crash repeats its records, and rewrites its own file."""
    n = 1
    new = {_record_key(r) for r in records}
    while target.exists():
        with open(target, "rb") as f:
            old = {_record_key(orjson.loads(line)) for line in f if line.strip()}
        if old <= new:
            return target
        n += 1
        stem = target.name.split(".jsonl")[0].rsplit("~", 1)[0]
        target = target.with_name(f"{stem}~{n}.jsonl")
    return target


def ingest(store: Store, paths: Iterable[str | os.PathLike], **options) -> IngestReport:
    """Ingest files or directories into ``store``; see ``Ingester`` for the options."""
    with Ingester(store, **options) as ing:
        return ing.ingest(paths)


def iter_quarantine(store: Store) -> Iterator[dict]:
    """Every quarantined record, oldest file first."""
    for q in sorted(store.quarantine.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
        with open(q, "rb") as f:
            for line in f:
                if line.strip():
                    yield orjson.loads(line)


__all__ = ["Bad", "FileReport", "IngestReport", "Ingester", "Parsed", "chain", "derived_event_id",
           "expand_paths", "file_format", "hot_rows", "ingest", "is_event_file", "iter_quarantine",
           "parse_jsonl", "parse_parquet", "source_key", "write_segment"]
