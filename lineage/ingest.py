"""Ingest: move JSONL and Parquet files of events into the log, in batches, idempotently.

Producers in any language write one event envelope per line (the JSON Schemas of
``lineage schema``), or Parquet files with the envelope columns, and never open DuckDB.
``Ingester`` reads those files in chunks of complete lines (or Parquet record batches),
validates every event exactly as ``schemas.prepare`` does (through the fast path of
``lineage.fastprepare`` where it applies), chains the accepted events onto the log and
commits them together with how far each file has been read.

Where events land. A small commit (a few lines a producer just wrote) goes to the hot
log in DuckDB, like any append. A bulk commit (``segment_events`` or more) is written
straight to a sealed Parquet segment and registered in the same transaction, which is
where a seal would have moved it anyway: a DuckDB insert plus a later seal cost ~15 µs an
event, a segment ~1 µs. Validation of large files runs in worker processes
(``workers``), while this process hashes the chain and writes.

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
import gc
import hashlib
import json
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lineage.db import first_row
from lineage.fastprepare import EnvelopeChecker, payload_json, timestamp_us
from lineage.objects import sha256_file
from lineage.segments import ROW_GROUP, _quote, events_view_sql, registered_files, segment_name
from lineage.store import ARROW_SCHEMA, HOT_SCHEMA, Store, Writer
from schemas import Draft, prepare
from schemas.envelope import DEFAULT_BRANCH, NULL, SEP, from_us, now_us
from schemas.errors import SchemaError
from schemas.payloads import VERSION

JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
PARQUET_MAGIC = b"PAR1"

# What a producer writes (see schemas.jsonschema), and the columns a store assigns itself:
# those are accepted (a segment of another store can be ingested) and recomputed here.
ENVELOPE_FIELDS = frozenset({
    "event_id", "lineage", "branch", "node", "kind", "actor", "actor_node", "occurred_at",
    "caused_by", "schema_version", "payload",
})
STORE_FIELDS = frozenset({"seq", "recorded_at", "prev_hash", "hash", "actor_kind"})
ACCEPTED_FIELDS = ENVELOPE_FIELDS | STORE_FIELDS
REQUIRED_COLUMNS = ("lineage", "kind", "actor")

# Namespace of the ids derived for events that arrive without one (UUIDv5).
ID_NAMESPACE = uuid.UUID("6c1f0e3a-5b7d-4e21-9a3c-1f7d2b8e4c60")

CHUNK_BYTES = 8 << 20  # JSONL read and validated per task
PARQUET_BATCH_ROWS = 32_768
COMMIT_EVENTS = 200_000  # a transaction closes after this many events ...
COMMIT_SECONDS = 1.0  # ... or this long, so readers see a long ingest progress
SEGMENT_EVENTS = 50_000  # commits this large go straight to a sealed segment, and so do
BULK_BYTES = 16 << 20  # all commits of a JSONL input this large
PARALLEL_BYTES = 24 << 20  # JSONL inputs this large are validated in worker processes ...
PARALLEL_ROWS = 100_000  # ... and Parquet inputs with this many rows
FINGERPRINT_BYTES = 4096
MAX_PROBLEMS = 20  # bad lines a report lists (all of them are in quarantine)
# zstd level of segments written by ingest: level 9 (seal) is 8x slower here for ~no gain,
# as ids and hashes, most of an event's bytes, do not compress.
SEGMENT_ZSTD_LEVEL = 1

# orjson reads integers beyond 64 bits as floats; a line with a run of 20+ digits goes
# through the stdlib parser instead, so such a number is refused rather than rounded.
# (Digits become "0", what may precede a float's digits becomes ".", all else " ": a JSON
# integer of 20+ digits then reads " 000…"; the digits of a float never do.)
_DIGITS = bytes(48 if 48 <= i <= 57 else 46 if i in b".eE" else 32 for i in range(256))
_LONG_DIGITS = b" " + b"0" * 20
_INSERT_PROGRESS = "INSERT OR REPLACE INTO ingest_progress VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)"

PARSED_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("lineage", pa.string()), ("branch", pa.string()), ("node", pa.string()),
    ("kind", pa.string()), ("actor_kind", pa.string()), ("actor", pa.string()), ("actor_node", pa.string()),
    ("occurred_at", pa.timestamp("us", tz="UTC")), ("payload", pa.string()), ("schema_version", pa.int32()),
    ("caused_by", pa.string()),
])
_TS = pa.timestamp("us", tz="UTC")
_UUID_RE = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"  # as str(uuid.UUID(...))
_MIN_US, _MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999  # years 1..9999


def _has_long_integer(raw: bytes) -> bool:
    """Whether ``raw`` may hold a JSON integer of 20 or more digits."""
    return _LONG_DIGITS in raw.translate(_DIGITS)


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


# -- validating (pure: no DuckDB, runs in worker processes) ---------------------------------

class _Reject(Exception):
    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass
class Bad:
    """One line (or row) that failed, with where it was and why."""

    index: int  # line (row) index within the chunk
    offset: int  # byte offset of the line in the file (JSONL), or row number (Parquet)
    reason: str
    field: str | None
    raw: bytes


@dataclass
class Parsed:
    """The validated events of one chunk (``PARSED_SCHEMA``: the envelope columns of the
    log but for seq, recorded_at and the hashes, which ``chain`` adds), and what failed."""

    events: pa.RecordBatch
    bad: list[Bad]
    lines: int


def derived_event_id(source: str, position: int | str, raw: bytes) -> str:
    """The id of an event that came without one: same source, place and bytes, same id."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{source}\x00{position}\x00{hashlib.sha256(raw).hexdigest()}"))


def _json_type(value: object) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _lenient_json(raw: bytes) -> object:
    """Parse a line orjson refused (or might round), to say precisely what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Reject(f"not valid UTF-8 (byte {exc.start} of the line is {raw[exc.start:exc.start + 1]!r}); "
                      "write UTF-8 JSON. The raw line is kept base64-encoded") from None
    try:
        # The stdlib parser accepts NaN and Infinity, so that validation can name the field.
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise _Reject(f"not JSON: the line ends inside a JSON value (truncated?): {exc.msg} (column {exc.colno})") from None
        raise _Reject(f"not JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise _Reject("not JSON this parser can read: nested too deeply") from None


def _slow(eid, lineage, branch, node, kind, actor, actor_node, occurred, caused_by, version, payload) -> tuple:
    try:
        e = prepare(Draft(
            lineage=lineage, kind=kind, actor=actor, payload=payload, node=node, branch=branch,
            actor_node=actor_node, occurred_at=occurred, caused_by=caused_by, event_id=eid,
            schema_version=version,
        ))
    except SchemaError as exc:
        raise _Reject(str(exc), exc.field) from None
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. a number beyond 64 bits
        raise _Reject(f"invalid event: {exc}") from None
    if not _MIN_US <= e.occurred_us <= _MAX_US:
        # e.g. nanoseconds where seconds were meant: stored, such a time breaks every reader
        raise _Reject(f"occurred_at: {occurred!r} is not a time between years 1 and 9999 "
                      "(a number is read as seconds since 1970)", "occurred_at")
    return (e.event_id, e.lineage, e.branch, e.node, e.kind, e.actor_kind, e.actor, e.actor_node,
            e.occurred_us, e.payload_json, e.schema_version, e.caused_by)


def _envelope(obj: object, trusted: bool, ck: EnvelopeChecker, now: int, source: str, where: int, raw: bytes) -> tuple:
    if type(obj) is not dict:
        raise _Reject(f"expected a JSON object (one event envelope per line), got {_json_type(obj)}")
    if not obj.keys() <= ACCEPTED_FIELDS:
        unknown = sorted(set(obj) - ACCEPTED_FIELDS)
        raise _Reject(f"unknown envelope field(s) {', '.join(unknown)}: extra data belongs in payload", unknown[0])
    g = obj.get
    eid = g("event_id") or derived_event_id(source, where, raw)
    branch = g("branch") or DEFAULT_BRANCH
    caused_by = g("caused_by") or None
    payload = g("payload", {})
    if trusted:
        done = ck.prepare(now, eid, g("lineage"), branch, g("node"), g("kind"), g("actor"), g("actor_node"),
                          g("occurred_at"), None, caused_by, g("schema_version"), payload)
        if done is not None:
            return done
    return _slow(eid, g("lineage"), branch, g("node"), g("kind"), g("actor"), g("actor_node"),
                 g("occurred_at"), caused_by, g("schema_version"), payload)


def _to_batch(rows: list[tuple]) -> pa.RecordBatch:
    cols = list(zip(*rows, strict=True)) if rows else [()] * 12
    return pa.RecordBatch.from_arrays(
        [pa.array(c, pa.int64()).cast(_TS) if i == 8 else pa.array(c, PARSED_SCHEMA.field(i).type)
         for i, c in enumerate(cols)], schema=PARSED_SCHEMA)


@contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector over a hot loop that makes millions of small,
    acyclic objects (it would otherwise run every few hundred allocations: ~20% slower)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def parse_jsonl(data: bytes, start: int, source: str, ck: EnvelopeChecker | None = None) -> Parsed:
    """Validate the lines of ``data``: complete lines read from byte ``start`` of ``source``."""
    ck = ck or EnvelopeChecker()
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    long_numbers = _LONG_DIGITS in data.translate(_DIGITS)
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    now = now_us()
    rows: list[tuple] = []
    bad: list[Bad] = []
    offset = start
    with _no_gc():
        for i, raw in enumerate(lines):
            where = offset
            offset += len(raw) + 1
            if raw[:1] != b"{" and (not raw or raw.isspace()):
                continue
            try:
                trusted = not (long_numbers and _has_long_integer(raw))
                try:
                    obj = loads(raw) if trusted else _lenient_json(raw)
                except decode_error:
                    obj, trusted = _lenient_json(raw), False
                rows.append(_envelope(obj, trusted, ck, now, source, where, raw))
            except _Reject as exc:
                bad.append(Bad(i, where, exc.reason, exc.field, raw))
        return Parsed(_to_batch(rows), bad, len(lines))


def _valid_values(arr: pa.Array, check: Callable[[object], object]) -> pa.Array:
    """The distinct non-null values of ``arr`` that pass ``check`` (called once per value)."""
    return pa.array([v for v in pc.unique(arr).to_pylist() if v is not None and check(v)], pa.string())


def _vector_checks(batch: pa.RecordBatch, ck: EnvelopeChecker) -> tuple[pa.Array, dict[str, pa.Array]]:
    """The envelope checks of ``EnvelopeChecker.prepare`` on whole columns: a mask of rows that
    pass (the others go one by one through the slow path) and the columns to store."""
    n = batch.num_rows
    names = set(batch.schema.names)
    text_columns = ("event_id", "lineage", "branch", "node", "kind", "actor", "actor_node", "caused_by")
    if any(not (pa.types.is_string(batch.schema.field(c).type) or pa.types.is_null(batch.schema.field(c).type))
           for c in text_columns if c in names):
        # e.g. a number where a name belongs: Python's truthiness decides defaults there
        return pa.array([False] * n), {}

    def col(name: str) -> pa.Array:
        return batch.column(name).cast(pa.string()) if name in names else pa.nulls(n, pa.string())

    ok = pa.array([True] * n)
    out: dict[str, pa.Array] = {}
    for name, required in (("lineage", True), ("branch", False), ("node", False), ("actor_node", False)):
        c = col(name)
        if name == "branch":  # missing or "" is the main branch, as Draft says
            c = pc.if_else(pc.or_kleene(pc.is_null(c), pc.equal(c, "")), DEFAULT_BRANCH, c)
        valid = pc.is_in(c, value_set=_valid_values(c, lambda v, f=name: ck.name(v, f)))
        ok = pc.and_(ok, valid if required or name == "branch" else pc.or_(pc.is_null(c), valid))
        out[name] = c
    actor = col("actor")
    actors = [v for v in pc.unique(actor).to_pylist() if v is not None and ck.actor_kind(v)]
    idx = pc.index_in(actor, value_set=pa.array(actors, pa.string()))
    ok = pc.and_(ok, pc.is_valid(idx))
    out["actor"] = actor
    out["actor_kind"] = pc.take(pa.array([ck.actor_kind(a) for a in actors], pa.string()), idx)
    ok = pc.and_(ok, pc.or_(pc.is_null(out["actor_node"]), pc.equal(out["actor_kind"], "ai")))
    kind = col("kind")
    kinds = sorted(VERSION)
    kidx = pc.index_in(kind, value_set=pa.array(kinds, pa.string()))
    ok = pc.and_(ok, pc.is_valid(kidx))
    out["kind"] = kind
    out["schema_version"] = pc.take(pa.array([VERSION[k] for k in kinds], pa.int32()), kidx)
    if "schema_version" in names:
        given = batch.column("schema_version")
        t = given.type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            # prepare() upcasts unless version == VERSION[kind] (as Python compares them)
            same = pc.equal(given.cast(pa.float64()), out["schema_version"].cast(pa.float64()))
            ok = pc.and_(ok, pc.or_(pc.is_null(given), pc.fill_null(same, False)))
        else:
            ok = pc.and_(ok, pc.is_null(given))
    eid = col("event_id")
    ok = pc.and_(ok, pc.fill_null(pc.match_substring_regex(eid, _UUID_RE), False))
    out["event_id"] = eid
    cause = col("caused_by")
    cause = pc.if_else(pc.equal(cause, ""), pa.scalar(None, pa.string()), cause)
    ok = pc.and_(ok, pc.or_(pc.is_null(cause), pc.fill_null(pc.match_substring_regex(cause, _UUID_RE), False)))
    out["caused_by"] = cause
    return pc.fill_null(ok, False), out


def parse_parquet(batch: pa.RecordBatch, first_row: int, source: str, ck: EnvelopeChecker | None = None) -> Parsed:
    """Validate one record batch of a Parquet file whose columns are envelope fields.

    Envelope columns are checked column-wise (each distinct name once); the payload of each
    row through the fast path; any row that fails either goes through ``prepare`` itself.
    """
    ck = ck or EnvelopeChecker()
    n = batch.num_rows
    now = now_us()
    names = set(batch.schema.names)
    # occurred_at: microseconds when it is a timestamp column (naive is UTC, as in to_us;
    # digits below a microsecond are cut); anything else is left to prepare's parsing.
    occurred_us = None
    if "occurred_at" in names and pa.types.is_timestamp(batch.column("occurred_at").type):
        c = batch.column("occurred_at")
        occurred_us = c.cast(pa.timestamp(c.type.unit, tz="UTC")).cast(_TS, safe=False).cast(pa.int64())
    ok, cols = _vector_checks(batch, ck)
    if not cols:
        return _parse_parquet_slowly(batch, first_row, source, now, occurred_us)
    if occurred_us is not None:
        in_range = pc.and_(pc.greater_equal(occurred_us, _MIN_US), pc.less_equal(occurred_us, _MAX_US))
        ok = pc.and_(ok, pc.fill_null(in_range, True))
        cols["occurred_at"] = pc.fill_null(occurred_us, now)
    else:
        cols["occurred_at"] = pa.array([now] * n, pa.int64())
    occurred_text = None
    if "occurred_at" in names and occurred_us is None:
        c = batch.column("occurred_at")
        if pa.types.is_string(c.type) or pa.types.is_large_string(c.type):
            occurred_text = c.to_pylist()  # parsed row by row, below
        else:
            ok = pc.and_(ok, pc.is_null(c))  # numbers mean what to_us says: prepare() decides
    ptype = batch.schema.field("payload").type if "payload" in names else None
    text_payload = ptype is None or pa.types.is_string(ptype) or pa.types.is_large_string(ptype) \
        or pa.types.is_binary(ptype) or pa.types.is_large_binary(ptype)
    if not text_payload:  # a struct payload did not come through orjson: only prepare() may judge it
        ok = pa.array([False] * n)
    payloads = batch.column("payload").cast(pa.binary()).to_pylist() if ptype is not None and text_payload else [None] * n
    long_numbers = any(p is not None for p in payloads) and _LONG_DIGITS in b"\n".join(
        p for p in payloads if p is not None).translate(_DIGITS)
    kinds = cols["kind"].to_pylist()
    fast = ok.to_pylist()
    loads, decode_error, check = orjson.loads, orjson.JSONDecodeError, payload_json
    keep: list[bool] = []
    texts: list[str | None] = []
    slow_rows: dict[int, tuple] = {}
    bad: list[Bad] = []
    occurred_list = None
    if occurred_text is not None:
        occurred_list = cols["occurred_at"].to_pylist()
        for i, t in enumerate(occurred_text):
            if t is not None and fast[i]:
                us = timestamp_us(t) if type(t) is str else None
                if us is None:
                    fast[i] = False
                else:
                    occurred_list[i] = us
        cols["occurred_at"] = pa.array(occurred_list, pa.int64())
    with _no_gc():
        for i in range(n):
            text = None
            if fast[i]:
                p = payloads[i]
                if p is None:
                    text = check(kinds[i], {}, None)
                elif not (long_numbers and _has_long_integer(p)):
                    try:
                        text = check(kinds[i], loads(p), None)
                    except decode_error:
                        text = None
            if text is None:
                try:
                    slow_rows[i] = _parquet_row_slow(batch, i, first_row, source, now, occurred_us)
                except _Reject as exc:
                    bad.append(Bad(i, first_row + i, exc.reason, exc.field, _row_bytes(batch, i)))
                    keep.append(False)
                    texts.append(None)
                    continue
            keep.append(True)
            texts.append(text)
    cols["payload"] = pa.array(texts, pa.string())
    if slow_rows:  # the rows prepare() decided: their columns come from its result
        fields = [f.name for f in PARSED_SCHEMA]
        for name in fields:
            values = cols[name].to_pylist()
            j = fields.index(name)
            for i, row in slow_rows.items():
                values[i] = row[j]
            cols[name] = pa.array(values, pa.int64() if name == "occurred_at" else PARSED_SCHEMA.field(name).type)
    cols["occurred_at"] = cols["occurred_at"].cast(_TS)
    events = pa.RecordBatch.from_arrays([cols[f.name] for f in PARSED_SCHEMA], schema=PARSED_SCHEMA)
    if bad:
        events = events.filter(pa.array(keep))
    return Parsed(events, bad, n)


def _parse_parquet_slowly(batch: pa.RecordBatch, first_row: int, source: str, now: int,
                          occurred_us: pa.Array | None) -> Parsed:
    rows, bad = [], []
    for i in range(batch.num_rows):
        try:
            rows.append(_parquet_row_slow(batch, i, first_row, source, now, occurred_us))
        except _Reject as exc:
            bad.append(Bad(i, first_row + i, exc.reason, exc.field, _row_bytes(batch, i)))
    return Parsed(_to_batch(rows), bad, batch.num_rows)


def _parquet_row_slow(batch: pa.RecordBatch, i: int, first_row: int, source: str, now: int,
                      occurred_us: pa.Array | None) -> tuple:
    """One Parquet row through ``prepare``, as the JSONL path would take it."""
    row = batch.slice(i, 1).to_pylist()[0]
    g = row.get
    payload = g("payload")
    if payload is None:
        payload = {}
    elif isinstance(payload, str | bytes):
        text = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
        payload = _payload_lenient(text)
    occurred = g("occurred_at")
    if occurred_us is not None and occurred_us[i].is_valid:
        us = occurred_us[i].as_py()
        if not _MIN_US <= us <= _MAX_US:
            raise _Reject("occurred_at: not a time between years 1 and 9999", "occurred_at")
        occurred = from_us(us)
    eid = g("event_id") or derived_event_id(source, f"row {first_row + i}", _row_bytes(batch, i))
    return _slow(eid, g("lineage"), g("branch") or DEFAULT_BRANCH, g("node"), g("kind"), g("actor"), g("actor_node"),
                 occurred, g("caused_by") or None, g("schema_version"), payload)


def _payload_lenient(text: bytes) -> object:
    try:
        return _lenient_json(text)
    except _Reject as exc:
        raise _Reject(f"payload: {exc.reason}", "payload") from None


def _row_bytes(batch: pa.RecordBatch, i: int) -> bytes:
    row = batch.slice(i, 1).to_pylist()[0]
    return orjson.dumps(row, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


_worker_checker: EnvelopeChecker | None = None


def _work_jsonl(data: bytes, start: int, source: str) -> Parsed:
    global _worker_checker
    _worker_checker = _worker_checker or EnvelopeChecker()
    return parse_jsonl(data, start, source, _worker_checker)


def _work_parquet(batch: pa.RecordBatch, first_row: int, source: str) -> Parsed:
    global _worker_checker
    _worker_checker = _worker_checker or EnvelopeChecker()
    return parse_parquet(batch, first_row, source, _worker_checker)


_TASKS = {"jsonl": _work_jsonl, "parquet": _work_parquet}


def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=5)
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream) -> object:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    (size,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(size))


def worker_main() -> None:
    """A validation worker: tasks arrive pickled on stdin, results leave on stdout, in order.

    Run as ``python -c "from lineage.ingest import worker_main; worker_main()"``; a process
    of its own rather than multiprocessing, so the caller's main module is never imported.
    """
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints must not corrupt the result stream
    inbox: deque = deque()
    ready = threading.Condition()

    def read() -> None:  # always draining stdin, so the parent never blocks sending
        while True:
            try:
                task = _receive(sys.stdin.buffer)
            except EOFError:
                task = None
            with ready:
                inbox.append(task)
                ready.notify()
            if task is None:
                return

    threading.Thread(target=read, daemon=True).start()
    while True:
        with ready:
            ready.wait_for(lambda: inbox)
            task = inbox.popleft()
        if task is None:
            return
        name, args = task
        try:
            result = (True, _TASKS[name](*args))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            result = (False, f"{type(exc).__name__}: {exc}")
        _send(out, result)


class _Workers:
    """Validation worker processes, fed round robin; results come back in task order."""

    def __init__(self, n: int):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else root
        self.procs = [
            subprocess.Popen([sys.executable, "-c", "from lineage.ingest import worker_main; worker_main()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            for _ in range(n)
        ]
        self._next = 0

    def run(self, tasks: Iterator[tuple]) -> Iterator[tuple[Parsed, tuple]]:
        pending: deque = deque()
        clean = False
        try:
            for name, args, meta in tasks:
                proc = self.procs[self._next % len(self.procs)]
                self._next += 1
                _send(proc.stdin, (name, args))
                pending.append((proc, meta))
                if len(pending) >= 2 * len(self.procs):
                    yield self._result(*pending.popleft())
            while pending:
                yield self._result(*pending.popleft())
            clean = True
        finally:
            if not clean:
                self.close()  # results still in flight would come back out of step

    def _result(self, proc: subprocess.Popen, meta: tuple) -> tuple[Parsed, tuple]:
        try:
            ok, value = _receive(proc.stdout)
        except EOFError:
            raise RuntimeError(f"an ingest worker process died (exit code {proc.poll()})") from None
        if not ok:
            raise RuntimeError(f"an ingest worker failed: {value}")
        return value, meta

    def close(self) -> None:
        for p in self.procs:
            with suppress(OSError):
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            with suppress(OSError):
                p.stdout.close()
        self.procs = []


# -- chaining and storing (this process, under the writer lease) ----------------------------

def _known_ids(con: duckdb.DuckDBPyConnection, store: Store, ids: pa.Array, pending: list[pa.Array]) -> set[str]:
    """Which of ``ids`` the store already holds (segments and hot log), or ``pending`` does.

    Only ids between the smallest and largest asked for are looked at: segments written by
    ingest keep min/max statistics of event_id, so DuckDB skips the row groups that cannot
    match (with time-ordered UUIDv7 ids, all the old ones).
    """
    lo, hi = pc.min_max(ids).values()
    sources = ["SELECT split_part(body, chr(31), 2) AS event_id FROM event_log"]
    files = registered_files(con, store)
    if files:
        sources.append(f"SELECT event_id FROM read_parquet([{', '.join(_quote(f) for f in files)}])")
    if pending:
        con.register("_ingest_pending", pa.table({"event_id": pa.chunked_array(pending, pa.string())}))
        sources.append("SELECT event_id FROM _ingest_pending")
    con.register("_ingest_ids", pa.table({"event_id": ids}))
    try:
        rows = con.execute(
            f"SELECT DISTINCT event_id FROM ({' UNION ALL '.join(sources)}) "
            "WHERE event_id BETWEEN ? AND ? AND event_id IN (SELECT event_id FROM _ingest_ids)",
            [lo.as_py(), hi.as_py()]).fetchall()
    finally:
        con.unregister("_ingest_ids")
        if pending:
            con.unregister("_ingest_pending")
    return {r[0] for r in rows}


def bodies(table: pa.Table | pa.RecordBatch) -> pa.Array | pa.ChunkedArray:
    """``schemas.envelope.canonical_body`` of every row of event-log columns, as one column."""
    def text(name: str):
        return pc.fill_null(table.column(name), NULL)

    def number(name: str):
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        return col.cast(pa.string())

    return pc.binary_join_element_wise(
        number("seq"), text("event_id"), text("lineage"), text("branch"), text("node"), text("kind"),
        text("actor_kind"), text("actor"), text("actor_node"), number("occurred_at"), number("recorded_at"),
        text("payload"), number("schema_version"), text("caused_by"), SEP)


def chain(events: pa.RecordBatch, seq: int, prev: str, recorded_us: int) -> tuple[pa.Table, pa.Array, int, str]:
    """Number, timestamp and hash validated events onto the chain head.

    Returns the event-log rows (``ARROW_SCHEMA``), their canonical bodies, and the new head.
    hash = sha256(prev_hash SEP body), as ``schemas.envelope.chain_hash``.
    """
    n = events.num_rows
    c = events.column
    table = pa.Table.from_arrays([
        pa.array(range(seq + 1, seq + 1 + n), pa.int64()), c("event_id"), c("lineage"), c("branch"), c("node"),
        c("kind"), c("actor_kind"), c("actor"), c("actor_node"), c("occurred_at"),
        pa.array([recorded_us] * n, pa.int64()).cast(_TS), c("payload"), c("schema_version"), c("caused_by"),
        pa.nulls(n, pa.string()), pa.nulls(n, pa.string()),
    ], schema=ARROW_SCHEMA)
    body = bodies(table)
    sha = hashlib.sha256
    prev_b = prev.encode()
    prevs: list[bytes] = []
    hashes: list[bytes] = []
    with _no_gc():
        for b in body.cast(pa.binary()).to_pylist():
            prevs.append(prev_b)
            prev_b = sha(prev_b + b"\x1f" + b).hexdigest().encode()
            hashes.append(prev_b)
    table = table.set_column(14, "prev_hash", pa.array(prevs, pa.binary()).cast(pa.string()))
    table = table.set_column(15, "hash", pa.array(hashes, pa.binary()).cast(pa.string()))
    return table, body, seq + n, prev_b.decode()


def hot_rows(table: pa.Table, body: pa.Array | pa.ChunkedArray | None = None) -> pa.Table:
    """Event-log rows as the hot log keeps them: (seq, canonical body, prev_hash, hash)."""
    return pa.Table.from_arrays([table.column("seq"), bodies(table) if body is None else body,
                                 table.column("prev_hash"), table.column("hash")], schema=HOT_SCHEMA)


def write_segment(store: Store, table: pa.Table) -> tuple[Path, str, int]:
    """Write events as a segment file (fsynced, then renamed into place); not yet registered."""
    first, last = table["seq"][0].as_py(), table["seq"][-1].as_py()
    store.segments_dir.mkdir(parents=True, exist_ok=True)
    final = store.segments_dir / segment_name(first, last)
    tmp = final.with_suffix(".parquet.tmp")
    pq.write_table(
        table, tmp, compression="zstd", compression_level=SEGMENT_ZSTD_LEVEL, row_group_size=ROW_GROUP,
        use_dictionary=["lineage", "branch", "kind", "actor_kind", "actor", "actor_node", "node"],
        write_statistics=["seq", "event_id", "occurred_at", "recorded_at", "lineage", "kind"],
    )
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    with suppress(OSError):
        fd = os.open(store.segments_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return final, sha256_file(final), final.stat().st_size


def _remove_orphan_segments(con: duckdb.DuckDBPyConnection, store: Store, head_seq: int) -> None:
    """Segment files beyond the chain head were written by a commit that never happened."""
    known = {p.name for p in registered_files(con, store)}
    for f in store.segments_dir.glob("seg-*.parquet"):
        with suppress(ValueError, IndexError):
            if f.name not in known and int(f.stem.split("-")[1]) > head_seq:
                f.unlink()


# -- the ingester ---------------------------------------------------------------------------

def default_workers() -> int:
    """Validation workers worth starting: one per idle CPU beyond this process's own, at most 4.

    A worker only helps when a core would otherwise idle (this process keeps one busy
    chaining and writing); on a loaded machine they compete with it and ingest is slower.
    """
    cpus = os.cpu_count() or 1
    try:
        idle = cpus - os.getloadavg()[0]
    except OSError:
        idle = cpus - 1
    return max(0, min(4, cpus - 1, int(idle - 0.5)))


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
                elif not f.name.startswith(".") and not f.name.endswith(".tmp"):
                    skipped.append((f, "not an event file (expected .jsonl, .ndjson or .parquet)"))
        elif p.exists():
            files.append(p)
        else:
            skipped.append((p, "no such file"))
    return files, skipped


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
    pieces: list[pa.Table] = field(default_factory=list)
    bodies: list[pa.Array] = field(default_factory=list)
    ids: list[pa.Array] = field(default_factory=list)  # of the events chained so far
    events: int = 0
    duplicates: int = 0
    bad: int = 0
    started: float = field(default_factory=time.monotonic)
    released: bool = False  # committed, and the writer's mutex given back


class Ingester:
    """Moves event files into one store through one writer. Use as a context manager.

    ``complete``: the files are finished, so an unterminated last line is read too.
    ``quarantine_unreadable``: copy a Parquet file that cannot be read to quarantine (watch
    turns this off and retries, since the file may still be being written).
    ``workers``: processes validating large inputs (None: ``default_workers()``; 0: none).
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
        self.workers = default_workers() if workers is None else workers
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
        if fmt == "parquet":
            self._ingest_parquet(path, source, report)
        else:
            self._ingest_jsonl(path, source, report)
        return report

    # -- validation, in order, in workers when it pays ----------------------------------

    def _validated(self, tasks: Iterator[tuple], parallel: bool) -> Iterator[tuple[Parsed, tuple]]:
        """Run ``(task, args, meta)`` tasks; yield (result, meta) in task order."""
        if not parallel or self.workers < 1:
            for name, args, meta in tasks:
                yield _TASKS[name](*args), meta
            return
        if self._pool is None or not self._pool.procs:
            self._pool = _Workers(self.workers)
        yield from self._pool.run(tasks)

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
            f.seek(prog.position)
            tail = {"carry": b"", "eof": False}

            def tasks() -> Iterator[tuple]:
                pos, carry = prog.position, b""
                while not self.should_stop():
                    data = f.read(self.chunk_bytes)
                    if not data:
                        tail["eof"] = True
                        break
                    buf = carry + data if carry else data
                    cut = buf.rfind(b"\n")
                    if cut < 0:
                        carry = buf
                        continue
                    chunk, carry = buf[:cut + 1], buf[cut + 1:]
                    yield "jsonl", (chunk, pos, source), (pos, len(chunk))
                    pos += len(chunk)
                if tail["eof"] and carry:
                    if self.complete:
                        yield "jsonl", (carry, pos, source), (pos, len(carry))
                    else:
                        tail["carry"] = carry

            parallel = size - prog.position >= self.parallel_bytes
            bulk = size - prog.position >= self.bulk_bytes
            group: _Group | None = None
            try:
                for parsed, (start, length) in self._validated(tasks(), parallel):
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
            finally:
                if group is not None and not group.released:
                    self._abandon()
            report.pending_bytes = len(tail["carry"])

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
            row = first
            for batch in pf.iter_batches(batch_size=self.parquet_rows, row_groups=groups, columns=columns):
                if self.should_stop():
                    return
                if row + batch.num_rows <= done:
                    row += batch.num_rows
                    continue
                if row < done:
                    batch = batch.slice(done - row)
                    row = done
                yield "parquet", (batch, row, source), (row, batch.num_rows)
                row += batch.num_rows

        group: _Group | None = None
        try:
            for parsed, (row, count) in self._validated(tasks(), total - done >= self.parallel_rows):
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
        except (pa.ArrowException, OSError) as exc:
            if group is not None and not group.released:
                self._abandon()
            group = None
            self._reject_file(path, source, report, prog, f"Parquet file unreadable after row {prog.position}: {exc}")
        finally:
            if group is not None and not group.released:
                self._abandon()

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

    def _begin(self, bulk: bool) -> _Group:
        """Take the writer lease for a group; it is held until the group commits."""
        w = self.writer
        w._mutex.acquire()
        try:
            w._maybe_yield()
            w.con  # noqa: B018 - take the lease and read the chain head
        except BaseException:
            w._mutex.release()
            raise
        return _Group(w._head_seq, w._head_hash, bulk)

    def _abandon(self) -> None:
        """Drop an uncommitted group: nothing of it reached the store; re-read the head next time."""
        w = self.writer
        try:
            w.release()
        finally:
            w._mutex.release()

    def _due(self, group: _Group) -> bool:
        return group.events >= self.commit_events or time.monotonic() - group.started >= self.commit_seconds

    def _add(self, group: _Group, path: Path, source: str, fmt: str, parsed: Parsed, report: FileReport,
             *, first_line: int) -> None:
        if parsed.bad:
            report.quarantine_files.append(self._quarantine(path, source, fmt, parsed, first_line))
            group.bad += len(parsed.bad)
            for b in parsed.bad[: max(0, MAX_PROBLEMS - len(report.problems))]:
                report.problems.append((first_line + b.index if fmt == "jsonl" else b.offset, b.reason))
        events = parsed.events
        if events.num_rows == 0:
            return
        ids = events.column("event_id")
        known = _known_ids(self.writer.con, self.store, ids, group.ids)
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
        group.ids.append(ids)
        table, body, group.head_seq, group.head_hash = chain(events, group.head_seq, group.head_hash, now_us())
        group.pieces.append(table)
        group.bodies.append(body)
        group.events += table.num_rows
        self.writer._last_used = time.monotonic()

    def _commit(self, group: _Group, path: Path, source: str, fmt: str, prog: _Progress, report: FileReport,
                head: bytes | None) -> None:
        # On any exception the caller abandons the group (which releases the lease and the
        # mutex); once committed, this method releases the mutex itself (group.released).
        w = self.writer
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
            table = pa.concat_tables(group.pieces)
            _remove_orphan_segments(con, self.store, w._head_seq)
            segment = write_segment(self.store, table)
        con.execute("BEGIN")
        try:
            if segment is not None:
                file, digest, size = segment
                con.execute("INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, current_timestamp)",
                            [file.name, group.head_seq - group.events + 1, group.head_seq, group.events,
                             group.head_hash, digest, size])
                con.execute(events_view_sql(registered_files(con, self.store)))
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
        if group.events:
            w._head_seq, w._head_hash = group.head_seq, group.head_hash
            if segment is None:
                w._hot += group.events
        w._last_used = time.monotonic()
        prog.ingested += group.events
        prog.duplicates += group.duplicates
        prog.quarantined += group.bad
        report.ingested += group.events
        report.duplicates += group.duplicates
        report.quarantined += group.bad
        try:
            if segment is None:
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
