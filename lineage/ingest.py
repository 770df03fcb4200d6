"""Ingest: move JSONL and Parquet files of events into the log, in batches, idempotently.

Producers in any language write one event envelope per line (the JSON Schemas of
``lineage schema``), or Parquet files with the envelope columns, and never open DuckDB.
``Ingester`` reads those files in chunks of complete lines (or Parquet record batches),
validates every event exactly as ``schemas.prepare`` does (through the fast path of
``lineage.fastprepare`` where it applies), chains the accepted events onto the log and
commits them together with how far each file has been read.

How it is fast. Validation works on columns: the envelope fields of a whole chunk are
checked at once, each distinct name once; payloads are parsed, checked and serialized
in one comprehension a slice at a time; only the rows that fail go one by one through
``prepare`` itself, which decides them. Validation of a large input runs in worker
processes (``workers``) when a CPU would otherwise idle, while this process hashes the
chain and writes.

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
import gc
import hashlib
import json
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lineage.db import first_row
from lineage.fastprepare import EnvelopeChecker, payload_texts, timestamp_us
from lineage.objects import sha256_file
from lineage.payload_shapes import canonical_payloads, place
from lineage.segments import ROW_GROUP, _quote, events_view_sql, registered_files, segment_name
from lineage.store import ARROW_SCHEMA, HOT_SCHEMA, YIELD_AFTER, Store, Writer, _waiters
from schemas import Draft, prepare
from schemas.chain import NULL, SEP, now_us
from schemas.envelope import DEFAULT_BRANCH, from_us
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
# Validation workers that keep this process busy chaining and writing (measured on 2 CPUs):
# validating a JSONL line costs about twice what chaining and writing its event does, a
# Parquet row about as much. With more, this process is what they all wait for.
WORKERS = {"jsonl": 2, "parquet": 1}
SAMPLE_SECONDS = 0.1  # how long a large input is ingested alone before deciding on workers
FINGERPRINT_BYTES = 4096
MAX_PROBLEMS = 20  # bad lines a report lists (all of them are in quarantine)
# zstd level of segments written by ingest: level 9 (seal) is 8x slower here for ~no gain,
# as ids and hashes, most of an event's bytes, do not compress.
SEGMENT_ZSTD_LEVEL = 1

# orjson reads an integer beyond 64 bits as a float, rounded; the stdlib parser keeps it
# exact, and prepare() then refuses it. So text that may hold one is parsed by the stdlib.
# Such an integer has 20 or more digits, or 19 after a minus sign (-9223372036854775809).
# Screened, digits read "0", what may precede a fraction or exponent (".eE") reads ".", "-"
# stays, all else reads " ": the integer then reads " 000…" (20 zeros) or "-000…" (19). A
# false alarm (say, a float with 20 digits before its point) only costs the exact path.
_DIGITS = bytes(48 if 48 <= i <= 57 else 46 if i in b".eE" else 45 if i == 45 else 32 for i in range(256))
_LONG_INTEGERS = (b" " + b"0" * 20, b"-" + b"0" * 19)
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


def _may_hold_long_integer(raw: bytes) -> bool:
    """Whether ``raw`` may hold a JSON integer beyond 64 bits (see ``_DIGITS``)."""
    screened = raw.translate(_DIGITS)
    return any(pattern in screened for pattern in _LONG_INTEGERS)


def _drop_rounded(texts: list[str | None], raws: list[bytes | None]) -> None:
    """Leave to the slow path (None) each payload that may have held an integer orjson rounded.

    Screening every text would cost more than parsing it. But the float orjson makes of
    such an integer is at least 2**63 in magnitude (one beyond the range of a double it
    refuses), every float of the payload reaches its canonical text, and orjson writes any
    float of magnitude 1e16 or more with an exponent, as Python's repr does ("9.2e+18"): so
    only a text with "e+" in it needs a look at the raw input it came from.
    """
    if "e+" not in "".join(filter(None, texts)):
        return
    for i, t in enumerate(texts):
        if t is not None and "e+" in t and _may_hold_long_integer(raws[i]):
            texts[i] = None


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
        if done is not None and _MIN_US <= done[8] <= _MAX_US:  # (out of range: _slow says why)
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
    """Validate the lines of ``data``: complete lines read from byte ``start`` of ``source``.

    Lines are parsed a slice at a time into columns (``_line_columns``), whose envelope
    fields are then checked column by column, as those of a Parquet file are
    (``_vector_checks``): per line, that costs little more than parsing it and serializing
    its payload. A line that is not a plain envelope (not JSON orjson can be trusted with,
    an unknown field, a number where a name belongs, ...) or that fails a check there is
    judged on its own, by ``_judge_line``.
    """
    ck = ck or EnvelopeChecker()
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    n = len(lines)
    if n == 0:
        return Parsed(_to_batch([]), [], 0)
    now = now_us()
    offsets: list[int] = []

    def where(i: int) -> int:  # byte offset of line i in the file
        if not offsets:
            offsets.extend(accumulate((len(raw) + 1 for raw in lines), initial=start))
        return offsets[i]

    with _no_gc():
        parts = [_line_columns(lines[i:i + SLICE_ROWS], now) for i in range(0, n, SLICE_ROWS)]
    columns = {name: pa.concat_arrays([p[name] for p in parts]) for name in parts[0]}
    taken = columns.pop("taken")
    ids = columns["event_id"]
    if ids.null_count or pc.any(pc.equal(ids, _EMPTY_TEXT)).as_py():
        # an event written without an id gets its derived id, as on the slow path
        ids = ids.to_pylist()
        for i in pc.indices_nonzero(taken).to_pylist():
            if not ids[i]:
                ids[i] = derived_event_id(source, where(i), lines[i])
        columns["event_id"] = pa.array(ids, pa.string())
    occurred, payload = columns.pop("occurred_at"), columns.pop("payload")
    ok, cols = _vector_checks(pa.RecordBatch.from_pydict(columns), ck)
    ok = pc.and_(pc.and_(ok, taken), pc.and_(pc.is_valid(payload), pc.fill_null(_in_range(occurred), _FALSE)))
    cols["occurred_at"], cols["payload"] = occurred.cast(_TS), payload
    slow_rows, slow_index, bad = [], [], []
    for i in pc.indices_nonzero(pc.invert(ok)).to_pylist():
        raw = lines[i]
        if raw[:1] != b"{" and (not raw or raw.isspace()):
            continue  # a blank line
        try:
            slow_rows.append(_judge_line(raw, ck, now, source, where(i)))
            slow_index.append(i)
        except _Reject as exc:
            bad.append(Bad(i, where(i), exc.reason, exc.field, raw))
    return Parsed(_merge(cols, ok, slow_rows, slow_index), bad, n)


def _line_columns(lines: list[bytes], now: int) -> dict[str, pa.Array]:
    """The envelope columns of ``lines``, parsed: texts (null where absent), ``schema_version``,
    ``occurred_at`` in µs (null where not a time string), ``payload`` as canonical JSON (null
    where the slow path must decide), and ``taken``: whether the column-wise checks may
    judge the line (a plain envelope, with a value of the expected type in every field)."""
    n = len(lines)
    objs = _load_all(lines)
    if set(map(type, objs)) == {dict} and set().union(*objs) <= ACCEPTED_FIELDS:
        taken = [True] * n
    else:
        taken = [type(o) is dict and o.keys() <= ACCEPTED_FIELDS for o in objs]
        objs = [o if t else _NO_FIELDS for o, t in zip(objs, taken, strict=True)]
    columns = {name: _text_column(list(map(dict.get, objs, repeat(name))), taken) for name in _TEXT_FIELDS}
    versions = list(map(dict.get, objs, repeat("schema_version")))
    if versions.count(None) != n:
        for i, v in enumerate(versions):
            if v is not None and (type(v) is not int or v not in _VERSIONS):
                taken[i] = False  # an upcast, or an error: prepare() decides
                versions[i] = None
    columns["schema_version"] = pa.array(versions, pa.int64())
    # a number is seconds, as to_us reads them: prepare() decides
    columns["occurred_at"] = pa.array([now if t is None else timestamp_us(t) if type(t) is str else None
                                       for t in map(dict.get, objs, repeat("occurred_at"))], pa.int64())
    # The payload checks pick the kind's check by the name alone; _vector_checks then says
    # whether the envelope holds. A missing payload is {}, as in Draft: one of its own, as
    # the checks complete payloads in place.
    kinds = [k if type(k) is str and t else None for k, t in zip(map(dict.get, objs, repeat("kind")), taken, strict=True)]
    payloads = [{} if p is _NO_FIELDS else p for p in map(dict.get, objs, repeat("payload"), repeat(_NO_FIELDS))]
    texts = payload_texts(kinds, payloads)
    _drop_rounded(texts, lines)
    columns["payload"] = pa.array(texts, pa.string())
    columns["taken"] = pa.array(taken, pa.bool_())
    return columns


# Rows are parsed a slice at a time. The Python objects of a slice (parsed lines and
# payloads, ~1.5 MB) stay in the CPU's caches, and in memory the allocator already holds;
# those of a whole 8 MB chunk make it map fresh pages, and a page fault (~3 µs in a VM)
# costs more than a line's checks. (Measured: 1,024 lines a slice take ~15% less time
# than 4,096, and half the time of whole chunks.)
SLICE_ROWS = 1024
_TEXT_FIELDS = ("event_id", "lineage", "branch", "node", "kind", "actor", "actor_node", "caused_by")
_VERSIONS = frozenset(VERSION.values())
_NO_FIELDS: dict = {}  # stands in for a missing field, or a line that is no plain envelope; never changed


def _load_all(texts: list[bytes | None]) -> list[object]:
    """``orjson.loads`` of each text; None for a text it refuses (blank, or not JSON), or None."""
    loads = orjson.loads
    try:
        return [None if t is None else loads(t) for t in texts]
    except orjson.JSONDecodeError:
        return [None if t is None else _loads_or_none(t) for t in texts]


def _loads_or_none(text: bytes) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _text_column(values: list, taken: list[bool]) -> pa.Array:
    """A string column of ``values``; a row holding anything but text or None is not taken
    (Python's truthiness decides the defaults there: prepare() judges such a row)."""
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        for i, v in enumerate(values):
            if v is not None and type(v) is not str:
                taken[i] = False
                values[i] = None
        return pa.array(values, pa.string())


def _judge_line(raw: bytes, ck: EnvelopeChecker, now: int, source: str, where: int) -> tuple:
    """One line on its own: the fast path of ``EnvelopeChecker`` where it applies, else prepare()."""
    trusted = not _may_hold_long_integer(raw)
    try:
        obj = orjson.loads(raw) if trusted else _lenient_json(raw)
    except orjson.JSONDecodeError:
        obj, trusted = _lenient_json(raw), False
    return _envelope(obj, trusted, ck, now, source, where, raw)


def _merge(cols: dict[str, pa.Array], ok: pa.Array, slow_rows: list[tuple], slow_index: list[int]) -> pa.RecordBatch:
    """The events of a chunk in input order: the rows the column-wise checks passed (``ok``),
    and those prepare() decided, at ``slow_index``."""
    events = pa.RecordBatch.from_arrays([cols[f.name] for f in PARSED_SCHEMA], schema=PARSED_SCHEMA)
    if ok.false_count:
        events = events.filter(ok)
    if not slow_rows:
        return events
    order = pc.sort_indices(pa.concat_arrays([pc.indices_nonzero(ok), pa.array(slow_index, pa.uint64())]))
    return pa.concat_batches([events, _to_batch(slow_rows)]).take(order)


# Arrow scalars for compute calls: a Python value there is converted anew on every call,
# and that conversion tries to import dateutil (~50 µs when it is not installed).
_TRUE, _FALSE = pa.scalar(True), pa.scalar(False)
_EMPTY_TEXT, _NULL_TEXT = pa.scalar("", pa.string()), pa.scalar(None, pa.string())
_MAIN, _AI = pa.scalar(DEFAULT_BRANCH, pa.string()), pa.scalar("ai", pa.string())
_MIN_US_SCALAR, _MAX_US_SCALAR = pa.scalar(_MIN_US, pa.int64()), pa.scalar(_MAX_US, pa.int64())


def _in_range(us: pa.Array) -> pa.Array:
    """Whether each time (µs) is within years 1..9999, as every reader needs."""
    return pc.and_(pc.greater_equal(us, _MIN_US_SCALAR), pc.less_equal(us, _MAX_US_SCALAR))


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
        return pa.repeat(_FALSE, n), {}

    def col(name: str) -> pa.Array:
        return batch.column(name).cast(pa.string()) if name in names else pa.nulls(n, pa.string())

    ok = pa.repeat(_TRUE, n)
    out: dict[str, pa.Array] = {}
    for name, required in (("lineage", True), ("branch", False), ("node", False), ("actor_node", False)):
        c = col(name)
        if name == "branch":  # missing or "" is the main branch, as Draft says
            c = pc.if_else(pc.or_kleene(pc.is_null(c), pc.equal(c, _EMPTY_TEXT)), _MAIN, c)
        valid = pc.is_in(c, value_set=_valid_values(c, lambda v, f=name: ck.name(v, f)))
        ok = pc.and_(ok, valid if required or name == "branch" else pc.or_(pc.is_null(c), valid))
        out[name] = c
    actor = col("actor")
    actors = [v for v in pc.unique(actor).to_pylist() if v is not None and ck.actor_kind(v)]
    idx = pc.index_in(actor, value_set=pa.array(actors, pa.string()))
    ok = pc.and_(ok, pc.is_valid(idx))
    out["actor"] = actor
    out["actor_kind"] = pc.take(pa.array([ck.actor_kind(a) for a in actors], pa.string()), idx)
    ok = pc.and_(ok, pc.or_(pc.is_null(out["actor_node"]), pc.equal(out["actor_kind"], _AI)))
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
            ok = pc.and_(ok, pc.or_(pc.is_null(given), pc.fill_null(same, _FALSE)))
        else:
            ok = pc.and_(ok, pc.is_null(given))
    eid = col("event_id")
    ok = pc.and_(ok, pc.fill_null(pc.match_substring_regex(eid, _UUID_RE), _FALSE))
    out["event_id"] = eid
    cause = col("caused_by")
    cause = pc.if_else(pc.equal(cause, _EMPTY_TEXT), _NULL_TEXT, cause)
    ok = pc.and_(ok, pc.or_(pc.is_null(cause), pc.fill_null(pc.match_substring_regex(cause, _UUID_RE), _FALSE)))
    out["caused_by"] = cause
    return pc.fill_null(ok, _FALSE), out


def parse_parquet(batch: pa.RecordBatch, first_row: int, source: str, ck: EnvelopeChecker | None = None) -> Parsed:
    """Validate one record batch of a Parquet file whose columns are envelope fields.

    Envelope columns are checked column-wise (each distinct name once), payloads a slice at
    a time (``payload_texts``); any row that fails either goes through ``prepare`` itself.
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
    now_scalar = pa.scalar(now, pa.int64())
    occurred = pa.repeat(now_scalar, n)  # where no time is given
    if occurred_us is not None:
        ok = pc.and_(ok, pc.fill_null(_in_range(occurred_us), _TRUE))
        occurred = pc.fill_null(occurred_us, now_scalar)
    elif "occurred_at" in names:
        c = batch.column("occurred_at")
        if pa.types.is_string(c.type) or pa.types.is_large_string(c.type):
            # parsed row by row; null where it is not a time, for prepare() to say why
            occurred = pa.array([now if t is None else timestamp_us(t) for t in c.to_pylist()], pa.int64())
            ok = pc.and_(ok, pc.fill_null(_in_range(occurred), _FALSE))
        else:
            ok = pc.and_(ok, pc.is_null(c))  # numbers mean what to_us says: prepare() decides
    cols["occurred_at"] = occurred.cast(_TS)
    ptype = batch.schema.field("payload").type if "payload" in names else None
    if ptype is None:
        payload = pa.nulls(n, pa.binary())
    elif (pa.types.is_string(ptype) or pa.types.is_large_string(ptype) or pa.types.is_binary(ptype)
          or pa.types.is_large_binary(ptype)):
        payload = batch.column("payload").cast(pa.binary())
    else:  # a struct payload did not come through orjson: only prepare() may judge it
        payload, ok = pa.nulls(n, pa.binary()), pa.repeat(_FALSE, n)
    kind = pc.if_else(ok, cols["kind"], _NULL_TEXT)
    # Payloads in the shapes a batch mostly holds are made canonical column-wise; the rest
    # one by one in Python, a slice at a time; rows not asked for (kind null) get null.
    rows, texts, rest = canonical_payloads(kind, payload)
    pieces = [texts]
    if len(rest):
        kind_left, payload_left = kind.take(rest), payload.take(rest)
        with _no_gc():
            pieces += [_payload_column(kind_left.slice(i, SLICE_ROWS), payload_left.slice(i, SLICE_ROWS))
                       for i in range(0, len(rest), SLICE_ROWS)]
    unasked = pc.indices_nonzero(pc.is_null(kind))
    pieces.append(pa.nulls(len(unasked), pa.string()))
    texts = place(pa.concat_arrays([rows, rest.cast(rows.type), unasked.cast(rows.type)]), pa.concat_arrays(pieces))
    cols["payload"] = texts
    ok = pc.and_(ok, pc.is_valid(cols["payload"]))
    slow_rows, slow_index, bad = [], [], []
    for i in pc.indices_nonzero(pc.invert(ok)).to_pylist():
        try:
            slow_rows.append(_parquet_row_slow(batch, i, first_row, source, now, occurred_us))
            slow_index.append(i)
        except _Reject as exc:
            bad.append(Bad(i, first_row + i, exc.reason, exc.field, _row_bytes(batch, i)))
    return Parsed(_merge(cols, ok, slow_rows, slow_index), bad, n)


def _payload_column(kinds: pa.Array, payloads: pa.Array) -> pa.Array:
    """Canonical payload JSON for rows of the given kind (null kind: not for the fast path),
    null where prepare() must decide. A null payload is {}, as in Draft."""
    raws = payloads.to_pylist()
    objs = _load_all(raws)
    texts = payload_texts(kinds.to_pylist(), [{} if r is None else o for o, r in zip(objs, raws, strict=True)])
    _drop_rounded(texts, raws)
    return pa.array(texts, pa.string())


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


# -- tasks: each reads its own input, so that a worker process can run it as well --------

_worker_checker: EnvelopeChecker | None = None


def _checker() -> EnvelopeChecker:
    global _worker_checker
    _worker_checker = _worker_checker or EnvelopeChecker()
    return _worker_checker


def _work_jsonl(path: str, file_id: tuple[int, int], start: int, length: int, final: bool, source: str) -> Parsed:
    """Validate bytes ``start``… of a JSONL file (``file_id``: its device and inode): whole
    lines (the last one unterminated only when ``final``), as the ingester found them when
    it cut the file into chunks."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        data = os.pread(f.fileno(), length, start)
    if (st.st_dev, st.st_ino) != file_id or len(data) != length or not (final or data.endswith(b"\n")):
        raise OSError(f"{path} changed while it was being read (bytes {start}-{start + length})")
    return parse_jsonl(data, start, source, _checker())


def _work_parquet(path: str, fingerprint: str, group: int, offset: int, count: int, columns: list[str],
                  batch_rows: int, first_row: int, source: str) -> Parsed:
    """Validate rows ``offset``… of row group ``group`` of a Parquet file (row ``first_row``
    of the file)."""
    global _parquet_reader
    key = (path, fingerprint, group, tuple(columns))
    reader = _parquet_reader
    if reader is None or reader.key != key or offset < reader.start:
        reader = _parquet_reader = _RowGroupReader(key, batch_rows)
    return parse_parquet(reader.take(offset, count), first_row, source, _checker())


class _RowGroupReader:
    """The rows of one row group of a Parquet file, in order (a cursor over its batches):
    consecutive tasks read on where the last one stopped."""

    def __init__(self, key: tuple, batch_rows: int):
        self.key = key
        path, _fingerprint, group, columns = key
        self._batches = pq.ParquetFile(path).iter_batches(batch_size=batch_rows, row_groups=[group],
                                                          columns=list(columns))
        self.start = 0  # row of the group that _left begins with
        self._left: pa.RecordBatch | None = None  # read, and not yet taken

    def take(self, offset: int, count: int) -> pa.RecordBatch:
        """Rows ``offset`` to ``offset + count`` of the row group (not before the last ones taken)."""
        end, parts = offset + count, []
        while self.start < end:
            if self._left is None:
                self._left = next(self._batches, None)
                if self._left is None:
                    raise pa.ArrowInvalid(f"row group {self.key[2]} ends at row {self.start}, before row {end}")
            batch = self._left
            lo, hi = max(offset - self.start, 0), min(end - self.start, batch.num_rows)
            if lo < hi:
                parts.append(batch.slice(lo, hi - lo))
            self._left = batch.slice(hi) if hi < batch.num_rows else None
            self.start += hi
        return parts[0] if len(parts) == 1 else pa.concat_batches(parts)


_parquet_reader: _RowGroupReader | None = None


def _close_parquet_reader() -> None:
    """Let go of the Parquet file this process last read (a worker's goes with the next file)."""
    global _parquet_reader
    _parquet_reader = None


_TASKS = {"jsonl": _work_jsonl, "parquet": _work_parquet}


# -- worker processes -------------------------------------------------------------------------

def _message(obj) -> list:
    """``obj`` as one message: a header, its pickle, then the buffers it holds (Arrow data)
    out of band, which spares copying them into the pickle and out of it again."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    return [struct.pack(f"<{2 + len(views)}Q", len(data), len(views), *(v.nbytes for v in views)), data, *views]


def _write(fd: int, parts: list) -> None:
    """Write ``parts`` to a pipe, in as few system calls as it takes (usually one, which
    holds the GIL only at its start and end)."""
    parts = [memoryview(p).cast("B") for p in parts if len(p)]
    while parts:
        done = os.writev(fd, parts[:512])
        while parts and done >= parts[0].nbytes:
            done -= parts.pop(0).nbytes
        if parts and done:
            parts[0] = parts[0][done:]


def _send(fd: int, obj) -> None:
    _write(fd, _message(obj))


def _receive(stream) -> object:
    size, count = struct.unpack("<QQ", _read_exactly(stream, 16))
    sizes = struct.unpack(f"<{count}Q", _read_exactly(stream, 8 * count))
    data = _read_exactly(stream, size)
    # Arrow's allocator keeps the memory of freed buffers for the next ones: fresh pages
    # would cost a page fault each (~3 µs in a VM), a batch of events ~2,500 of them.
    return pickle.loads(data, buffers=[_read_exactly(stream, n, pa.allocate_buffer(n)) for n in sizes])


def _read_exactly(stream, size: int, into: pa.Buffer | None = None) -> bytearray | pa.Buffer:
    """``size`` bytes of an unbuffered stream (whose reads may return less), or EOFError."""
    data = bytearray(size) if into is None else into
    view, got = memoryview(data), 0
    while got < size:
        n = stream.readinto(view[got:])
        if not n:
            raise EOFError
        got += n
    return data


def _widen_pipe(fd: int) -> None:
    """Let a pipe hold 1 MB (Linux) rather than 64 KB: results cross it twice as fast,
    in a sixteenth of the reads and wake-ups."""
    with suppress(ImportError, OSError, AttributeError):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)


def worker_main() -> None:
    """A validation worker: tasks arrive pickled on stdin, results leave on stdout, in order.

    Run as ``python -c "from lineage.ingest import worker_main; worker_main()"``; a process
    of its own rather than multiprocessing, so the caller's main module is never imported.
    The first message out says the worker is ready. A thread writes the results, so the
    worker goes on with its next task while the parent is still busy with the last ones.
    """
    gc.disable()  # what validation makes is acyclic; see _no_gc
    out = os.dup(1)
    os.dup2(2, 1)  # stray prints must not corrupt the result stream
    tasks = os.fdopen(os.dup(0), "rb", buffering=0)
    results: queue.Queue = queue.Queue(maxsize=4)  # messages not yet written: at most four

    def write() -> None:
        while (message := results.get()) is not None:
            try:
                _write(out, message)
            except OSError:  # the parent is gone
                os._exit(1)

    writer = threading.Thread(target=write, name="ingest-results")
    writer.start()
    results.put(_message((True, None)))
    while True:
        try:
            name, args = _receive(tasks)
        except EOFError:
            break
        try:
            result = (True, _TASKS[name](*args))
        except (pa.ArrowException, OSError) as exc:  # the input is unreadable: the parent says so
            result = (False, exc)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            result = (False, f"{type(exc).__name__}: {exc}")
        try:
            message = _message(result)
        except (pickle.PicklingError, TypeError, AttributeError):  # an exception that does not pickle
            message = _message((False, f"{type(result[1]).__name__}: {result[1]}"))
        results.put(message)
        del result, message
        gc.collect(0)
    results.put(None)
    writer.join()


class _Workers:
    """Validation worker processes; results come back in task order.

    A task says what to read (bytes of a JSONL file, rows of a Parquet row group), so tasks
    are small; a result is Arrow data, sent out of band. Neither side waits for the other:
    a thread here per worker hands it its tasks, and a thread in the worker writes its
    results, each in one system call, while it goes on with the next task. (A thread that
    reads instead, a pipe-full at a time, needs its process's GIL after every read and
    waits up to a switch interval, 5 ms, for it while the process computes: so this process
    reads a result when it needs it, in its own thread.)

    This process validates tasks too: until a worker is ready (it takes ~0.4 s to import
    what it needs), and whenever it would otherwise wait for a busy one (``_steal``).
    """

    WAITING = 3  # tasks given to a worker at a time: one it works on, the next ones queued

    def __init__(self, n: int):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else root
        self.procs = [
            subprocess.Popen([sys.executable, "-c", "from lineage.ingest import worker_main; worker_main()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
            for _ in range(n)
        ]
        for proc in self.procs:
            _widen_pipe(proc.stdout.fileno())
        self._ready = [False] * n
        self._given = [0] * n  # tasks sent to each worker and not yet answered
        self._outboxes: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in self.procs]
        self._senders = [threading.Thread(target=self._feed, args=(p, q), daemon=True, name="ingest-feed")
                         for p, q in zip(self.procs, self._outboxes, strict=True)]
        for t in self._senders:
            t.start()

    @staticmethod
    def _feed(proc: subprocess.Popen, outbox: queue.SimpleQueue) -> None:
        """Send the tasks of ``outbox`` to ``proc`` until None, then close its stdin."""
        while (task := outbox.get()) is not None:
            try:
                _send(proc.stdin.fileno(), task)
            except (OSError, ValueError):
                return  # the worker is gone: reading its result says so
        with suppress(OSError):
            proc.stdin.close()

    def run(self, tasks: Iterator[tuple]) -> Iterator[tuple[Parsed, tuple]]:
        """Run ``(task, args, meta)`` tasks; yield (result, meta) in task order."""
        # (worker, meta, None) of a task given out; (-1, meta, result) of one validated here
        pending: deque[tuple[int, tuple, Parsed | None]] = deque()
        tasks = iter(tasks)
        more = True
        clean = False
        try:
            while True:
                for k in self._idle() if more else ():
                    if (task := next(tasks, None)) is None:
                        more = False
                        break
                    name, args, meta = task
                    self._outboxes[k].put((name, args))
                    self._given[k] += 1
                    pending.append((k, meta, None))
                if more and self._steal(pending):
                    if (task := next(tasks, None)) is None:
                        more = False
                    else:
                        name, args, meta = task
                        pending.append((-1, meta, _TASKS[name](*args)))
                elif pending:
                    k, meta, result = pending.popleft()
                    yield (result if k < 0 else self._result(k)), meta
                elif not more:
                    break
                elif (task := next(tasks, None)) is None:
                    more = False
                else:  # no worker is ready yet: validate here meanwhile
                    name, args, meta = task
                    yield _TASKS[name](*args), meta
            clean = True
        finally:
            if not clean:
                self.close(abort=True)  # results still in flight would come back out of step

    def _steal(self, pending: deque) -> bool:
        """Whether to validate the next task here rather than wait for the oldest result:
        when its worker is still at it with more work queued (so it stays busy meanwhile),
        and no result validated here is waiting yet. This process then takes its share
        whenever the workers are slower than its chaining and writing."""
        if not pending or pending[0][0] < 0 or any(k < 0 for k, _meta, _result in pending):
            return False
        k = pending[0][0]
        return self._given[k] >= 2 and not self._answered(k)

    def _idle(self) -> Iterator[int]:
        """Ready workers with room for another task."""
        for k in range(len(self.procs)):
            if not self._ready[k] and self._answered(k):
                self._result(k, ready=True)
                self._ready[k] = True
            while self._ready[k] and self._given[k] < self.WAITING:
                yield k

    def cpu_seconds(self) -> float:
        """CPU time the workers have used so far (Linux; 0 where unknown)."""
        total = 0.0
        for proc in self.procs:
            try:
                with open(f"/proc/{proc.pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()  # after the command name
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
            except (OSError, ValueError, IndexError):
                pass
        return total

    def _answered(self, k: int) -> bool:
        """Whether worker ``k`` has (begun to) send a message."""
        return bool(select.select([self.procs[k].stdout], [], [], 0)[0])

    def _result(self, k: int, ready: bool = False) -> Parsed | None:
        proc = self.procs[k]
        try:
            ok, value = _receive(proc.stdout)
        except EOFError:
            raise RuntimeError(f"an ingest worker process died (exit code {proc.poll()})") from None
        if not ok:
            if isinstance(value, BaseException):
                raise value
            raise RuntimeError(f"an ingest worker failed: {value}")
        if not ready:
            self._given[k] -= 1
        return value

    def close(self, abort: bool = False) -> None:
        """Stop the workers: once their tasks are done, or (``abort``) at once."""
        for q in self._outboxes:
            q.put(None)
        for p in self.procs:
            if abort:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for p, t in zip(self.procs, self._senders, strict=True):
            t.join()
            with suppress(OSError):
                p.stdout.close()
        self.procs, self._outboxes, self._senders = [], [], []


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
    con.register("_ingest_ids", pa.table({"event_id": ids}))
    try:
        rows = con.execute(
            f"SELECT DISTINCT event_id FROM ({' UNION ALL '.join(sources)}) "
            "WHERE event_id BETWEEN ? AND ? AND event_id IN (SELECT event_id FROM _ingest_ids)",
            [lo, hi]).fetchall()
    finally:
        con.unregister("_ingest_ids")
        if pending:
            con.unregister("_ingest_pending")
    return {r[0] for r in rows}


def bodies(table: pa.Table | pa.RecordBatch) -> pa.Array | pa.ChunkedArray:
    """``schemas.chain.canonical_body`` of every row of event-log columns, as one column."""
    def text(name: str):
        col = table.column(name)
        return pc.fill_null(col, _NULL_MARK) if col.null_count else col

    def number(name: str):
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        return col.cast(pa.string())

    return pc.binary_join_element_wise(
        number("seq"), text("event_id"), text("lineage"), text("branch"), text("node"), text("kind"),
        text("actor_kind"), text("actor"), text("actor_node"), number("occurred_at"), number("recorded_at"),
        text("payload"), number("schema_version"), text("caused_by"), _SEP_TEXT)


_NULL_MARK, _SEP_TEXT = pa.scalar(NULL, pa.string()), pa.scalar(SEP, pa.string())


def chain(events: pa.RecordBatch, seq: int, prev: str, recorded_us: int) -> tuple[pa.Table, pa.Array, int, str]:
    """Number, timestamp and hash validated events onto the chain head.

    Returns the event-log rows (``ARROW_SCHEMA``), their canonical bodies, and the new head.
    hash = sha256(prev_hash SEP body), as ``schemas.chain.chain_hash``.
    """
    n = events.num_rows
    c = events.column
    table = pa.Table.from_arrays([
        pa.array(range(seq + 1, seq + 1 + n), pa.int64()), c("event_id"), c("lineage"), c("branch"), c("node"),
        c("kind"), c("actor_kind"), c("actor"), c("actor_node"), c("occurred_at"),
        pa.repeat(pa.scalar(recorded_us, _TS), n), c("payload"), c("schema_version"), c("caused_by"),
        pa.nulls(n, pa.string()), pa.nulls(n, pa.string()),
    ], schema=ARROW_SCHEMA)
    body = bodies(table)
    sha, sep = hashlib.sha256, SEP.encode()
    head = prev.encode()
    hashes: list[bytes] = []
    with _no_gc():
        # A slice of bodies at a time, as Python bytes: those of a whole batch at once would
        # take fresh pages (see SLICE_ROWS). Each hash is the next one's prev_hash.
        for first in range(0, n, SLICE_ROWS):
            part = body.slice(first, SLICE_ROWS).cast(pa.binary()).to_pylist()
            hashes += [head := sha(head + sep + b).hexdigest().encode() for b in part]
    hash_column = pa.array(hashes, pa.binary()).cast(pa.string())
    prev_column = pa.concat_arrays([pa.array([prev], pa.string()), hash_column])[:n]
    table = table.set_column(14, "prev_hash", prev_column).set_column(15, "hash", hash_column)
    return table, body, seq + n, head.decode()


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


def _put_in_place(tmp: Path, final: Path) -> tuple[Path, str, int]:
    """Make a written segment file durable under its name: (path, sha256, size)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    with suppress(OSError):
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return final, sha256_file(final), final.stat().st_size


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
                    self._writer = pq.ParquetWriter(self.tmp, rows.schema, **_SEGMENT_OPTIONS)
                group = rows.slice(0, ROW_GROUP)
                self._writer.write_table(group, row_group_size=ROW_GROUP)
                self._written += group.num_rows
                rest = rows.slice(ROW_GROUP)
                self._buffered, self._rows = ([rest] if rest.num_rows else []), rest.num_rows
            if table is None and self._writer is not None:
                self._writer.close()
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
        return _put_in_place(self.tmp, self.dir / segment_name(first, last))

    def abort(self) -> None:
        self._thread.shutdown(cancel_futures=True)
        with suppress(Exception):
            if self._writer is not None:
                self._writer.close()
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


def default_workers(fmt: str, idle_cpus: float | None = None) -> int:
    """Validation workers worth starting for a large input of format ``fmt`` ("jsonl" or
    "parquet"), given how many CPUs sat idle while this process ingested alone (None: go by
    the load average).

    A worker only pays when a CPU would otherwise idle: measured on 2 CPUs, workers make
    ingest 15-35% faster on an idle machine, and 13-17% slower beside one busy process.
    """
    if idle_cpus is None:
        try:
            idle_cpus = (os.cpu_count() or 1) - 1 - os.getloadavg()[0]  # this process keeps one busy
        except OSError:
            return 0
    return WORKERS[fmt] if idle_cpus >= 0.6 else 0


def _idle_cpu_seconds() -> float | None:
    """CPU time spent idle since boot, all CPUs together (Linux), or None where unknown."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()  # cpu user nice system idle iowait ... (clock ticks)
        return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


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
                guess = (os.cpu_count() or 1) > 1 and WORKERS[fmt] if idle is not None else default_workers(fmt)
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
        table, body, group.head_seq, group.head_hash = chain(events, group.head_seq, group.head_hash, now_us())
        if group.segment is not None:
            group.segment.add(table)
        else:
            group.pieces.append(table)
            group.bodies.append(body)
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
