"""Reading and validating event files: chunks of JSONL lines and Parquet record batches
into Arrow columns of events, exactly as ``schemas.prepare`` would take them, and the lines
or rows it would refuse, with the reason.

Pure: no DuckDB and no store, so worker processes (``lineage.ingest_workers``) run it as
well as the ingester itself (``lineage.ingest``).

How it is fast. Validation works on columns: the envelope fields of a whole chunk are
checked at once, each distinct name once. JSONL payloads are parsed, checked and
serialized in one comprehension a slice at a time (``fastprepare.payload_texts``); Parquet
payloads of the shapes a batch mostly holds are checked and made canonical column-wise
(``lineage.payload_shapes``), the others as JSONL's are. Only the rows that fail go one by
one through ``prepare`` itself, which decides them.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate, repeat

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lineage.fastprepare import EnvelopeChecker, payload_texts, timestamp_us
from lineage.payload_shapes import canonical_payloads, place
from schemas import Draft, prepare
from schemas.actor import CONTROL, NAME_MAX
from schemas.chain import now_us
from schemas.envelope import DEFAULT_BRANCH, from_us
from schemas.errors import SchemaError
from schemas.payloads import VERSION

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

# orjson reads an integer beyond 64 bits as a float, rounded; the stdlib parser keeps it
# exact, and prepare() then refuses it. So text that may hold one is parsed by the stdlib.
# Such an integer has 20 or more digits, or 19 after a minus sign (-9223372036854775809).
# Screened, digits read "0", what may precede a fraction or exponent (".eE") reads ".", "-"
# stays, all else reads " ": the integer then reads " 000…" (20 zeros) or "-000…" (19). A
# false alarm (say, a float with 20 digits before its point) only costs the exact path.
_DIGITS = bytes(48 if 48 <= i <= 57 else 46 if i in b".eE" else 45 if i == 45 else 32 for i in range(256))
_LONG_INTEGERS = (b" " + b"0" * 20, b"-" + b"0" * 19)

PARSED_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("lineage", pa.string()), ("branch", pa.string()), ("node", pa.string()),
    ("kind", pa.string()), ("actor_kind", pa.string()), ("actor", pa.string()), ("actor_node", pa.string()),
    ("occurred_at", pa.timestamp("us", tz="UTC")), ("payload", pa.string()), ("schema_version", pa.int32()),
    ("caused_by", pa.string()),
])
_TS = pa.timestamp("us", tz="UTC")
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # as str(uuid.UUID(...))
_UUID_RE, _UUID_RUN, _UUID_LEN = f"^{_UUID}$", f"^(?:{_UUID})*$", 36
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
_TRUE, _FALSE, _NULL_BOOL = pa.scalar(True), pa.scalar(False), pa.scalar(None, pa.bool_())
_EMPTY_TEXT, _NULL_TEXT = pa.scalar("", pa.string()), pa.scalar(None, pa.string())
_MAIN, _AI = pa.scalar(DEFAULT_BRANCH, pa.string()), pa.scalar("ai", pa.string())
_MIN_US_SCALAR, _MAX_US_SCALAR = pa.scalar(_MIN_US, pa.int64()), pa.scalar(_MAX_US, pa.int64())


def _in_range(us: pa.Array) -> pa.Array:
    """Whether each time (µs) is within years 1..9999, as every reader needs."""
    return pc.and_(pc.greater_equal(us, _MIN_US_SCALAR), pc.less_equal(us, _MAX_US_SCALAR))


def _valid_names(names: pa.Array) -> pa.Array:
    """``schemas.actor.check_name`` of each name, column-wise (null stays null): 1 to
    ``NAME_MAX`` characters, none of them a control character. (Checked per distinct value
    in Python, this was a tenth of a Parquet ingest whose events each name their own node.)"""
    length = pc.utf8_length(names)
    in_range = pc.and_kleene(pc.greater_equal(length, _ONE), pc.less_equal(length, _MAX_NAME))
    if not _found_anywhere(names, _CONTROL_RE):
        return in_range  # (null where the name is)
    return pc.and_kleene(in_range, pc.invert(pc.match_substring_regex(names, _CONTROL_RE)))


_ONE, _MAX_NAME = pa.scalar(1, pa.int32()), pa.scalar(NAME_MAX, pa.int32())
_CONTROL_RE = f"[{CONTROL}]"


def _span(texts: pa.Array) -> tuple[pa.Array, int]:
    """The bytes of all of ``texts`` (a string array), one after the other, as a single
    binary value over the same memory (no copy), and how many bytes that is. Null slots
    add the bytes they hold, if any."""
    offsets = pa.Array.from_buffers(pa.int32(), len(texts) + 1, [None, texts.buffers()[1]], offset=texts.offset)
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    data = texts.buffers()[2]
    if data is None or last == first:
        return pa.array([b""], pa.binary()), 0
    bounds = pa.array([first, last], pa.int32()).buffers()[1]
    return pa.Array.from_buffers(pa.binary(), 1, [None, bounds, data]), last - first


def _found_anywhere(texts: pa.Array, pattern: str) -> bool:
    """Whether ``pattern`` (a single-byte character class: a match never spans two texts)
    matches anywhere in ``texts``, null slots included: one search over all their bytes,
    rather than one a text (~50 ns each, most of it setting the search up)."""
    whole, _size = _span(texts)
    return bool(pc.match_substring_regex(whole, pattern)[0].as_py())


def _uuids(texts: pa.Array) -> pa.Array:
    """Whether each text is a UUID as ``str(uuid.UUID(...))`` writes it (null stays null).
    Where every text is 36 bytes and nothing lies between them, as in a column of event
    ids, all of them are matched at once, as one run of UUIDs."""
    valid = len(texts) - texts.null_count
    if not valid:
        return pa.nulls(len(texts), pa.bool_())
    whole, size = _span(texts)
    lengths = pc.min_max(pc.binary_length(texts))
    if (size == _UUID_LEN * valid and lengths["min"].as_py() == lengths["max"].as_py() == _UUID_LEN
            and pc.match_substring_regex(whole, _UUID_RUN)[0].as_py()):
        return pc.if_else(pc.is_valid(texts), _TRUE, _NULL_BOOL)
    return pc.match_substring_regex(texts, _UUID_RE)


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
        valid = pc.fill_null(_valid_names(c), _FALSE)
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
    ok = pc.and_(ok, pc.fill_null(_uuids(eid), _FALSE))
    out["event_id"] = eid
    cause = col("caused_by")
    cause = pc.if_else(pc.equal(cause, _EMPTY_TEXT), _NULL_TEXT, cause)
    ok = pc.and_(ok, pc.or_(pc.is_null(cause), pc.fill_null(_uuids(cause), _FALSE)))
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


