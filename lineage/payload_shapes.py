"""Canonical payload JSON for a whole column of payload texts, with no Python per row.

Bulk ingest of Parquet spends most of its time making each payload canonical (parse,
check against the kind's model, serialize with sorted keys): ~2 µs a row in Python even on
the fast path of ``lineage.fastprepare``. But a loop writes the payloads of one kind in one
*shape* (the same keys, in the same order, holding the same JSON types), and for a shape of
strings, numbers, booleans, nulls, lists of strings and objects of those, both the check and
the canonical text can be had column-wise: one regular expression that only texts of that
shape, whose values pass the model's constraints, can match, and the canonical text put
together from its captures with the keys sorted and the model's defaults filled in.

A shape is learned from a sample row: parsed in Python and checked by
``fastprepare.PAYLOAD_CHECKS`` (the reference), and kept only if the text put together for
the sample is exactly the reference's. Rows that no shape matches are left to the per-row
path: other lists and mappings, lists written with spaces, escapes that orjson writes
differently (``\\u00e9``, ``\\/``), numbers orjson writes in another form (1e16 and beyond,
below 1e-5), constraints beyond a minimum length of one, ``>= 0`` or a plain
character-class pattern. ``tests/test_payload_shapes.py`` checks with generated payloads
that every text made here is the one ``prepare`` stores.
"""

from __future__ import annotations

import itertools
import re
import typing
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lineage.fastprepare import PAYLOAD_CHECKS, field_facts
from schemas.envelope import MAX_PAYLOAD_BYTES
from schemas.payloads import MODELS

MAX_SHAPES = 4  # shapes tried per kind and batch: a kind with more varied payloads is left to Python
_MAX_KEYS = 24

# Values whose JSON text is canonical as it stands: orjson writes these strings, integers,
# booleans the same way. Strings: any character but the quote, the backslash and controls,
# or the escapes orjson itself writes (\" \\ \b \f \n \r \t).
_CHAR = r'(?:[^"\\\x00-\x1f]|\\["\\bfnrt])'
_STR = f'"{_CHAR}*"'
_NONEMPTY_STR = f'"{_CHAR}+"'
_INT = r"(?:0|-?[1-9][0-9]{0,17})"  # no -0 (read as 0), no integer a double would round
_NATURAL = r"(?:0|[1-9][0-9]{0,17})"
# Numbers made floats: any JSON number (what orjson reads as an integer, -0 or, in a key the
# model does not declare, any, is sorted out after matching: see _canonical_float). Every
# pattern here can be matched one character at a time, without looking back: RE2 then
# captures ~2x faster than with alternatives that overlap.
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_BOOL = "(?:true|false)"
_STR_LIST = rf"\[(?:{_STR}(?:,{_STR})*)?\]"  # written without spaces, as orjson writes it
_WS = r"[ \t\n\r]*"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLASS_PATTERN = re.compile(r"\^(\[[0-9a-zA-Z\-]*\](?:\{[0-9]+(?:,[0-9]+)?\})?)\$")


@dataclass(frozen=True)
class _Value:
    """How one key of a shape is matched and written."""

    pattern: str | None  # None: the value is JSON null, matched literally and left out
    is_float: bool = False
    ge: float | None = None
    only_floats: bool = False  # refuse what orjson reads as an integer (kept as one, not made a float)
    parts: tuple | None = None  # an object: how its own keys are written (see _Shape.parts)


@dataclass
class _Shape:
    regex: str  # matches exactly the texts of this shape whose values pass the model's checks
    # Sorted by key, what each key of the object is written as: ("capture", name): the text
    # captured; ("const", json): a default; ("object", parts): a nested object, the same way.
    parts: list[tuple[str, tuple]]
    floats: dict[str, _Value]  # captures made floats, and how

    def apply(self, texts: pa.Array) -> pa.Array:
        """Canonical text of each row of this shape; null for the others."""
        n = len(texts)
        names = _captures(self.parts)
        values: dict[str, pa.Array] = {}
        if names:
            captured = pc.extract_regex(texts, self.regex)
            for name in names:
                col = pc.struct_field(captured, name)  # null where the row did not match (.field() would not say)
                values[name] = _canonical_float(col, self.floats[name]) if name in self.floats else col
        pieces: list = []
        tail = _write(self.parts, values, pieces, "")
        if not pieces:
            matched = pc.fill_null(pc.match_substring_regex(texts, self.regex), False)
            return pc.if_else(matched, pa.scalar(tail, pa.string()), pa.scalar(None, pa.string()))
        pieces.append(tail)
        out = pc.binary_join_element_wise(*[p if isinstance(p, pa.Array) else pa.scalar(p, pa.string())
                                            for p in pieces], pa.scalar("", pa.string()))
        longest = pc.max(pc.binary_length(out)).as_py() if n else None
        if longest is not None and longest > MAX_PAYLOAD_BYTES:  # too large inline: prepare() says why
            out = pc.if_else(pc.greater(pc.binary_length(out), MAX_PAYLOAD_BYTES), pa.scalar(None, pa.string()), out)
        return out


def _captures(parts: list[tuple[str, tuple]]) -> list[str]:
    names = []
    for _key, (how, what) in parts:
        if how == "capture":
            names.append(what)
        elif how == "object":
            names += _captures(what)
    return names


def _write(parts: list[tuple[str, tuple]], values: dict[str, pa.Array], pieces: list, text: str) -> str:
    """Append the pieces of an object's canonical text to ``pieces`` (constant text between
    captured columns); returns the constant text after the last column."""
    text += "{"
    for i, (key, (how, what)) in enumerate(parts):
        text += ("," if i else "") + orjson.dumps(key).decode() + ":"
        if how == "capture":
            pieces += [text, values[what]]
            text = ""
        elif how == "const":
            text += what
        else:
            text = _write(what, values, pieces, text)
    return text + "}"


def _canonical_float(texts: pa.Array, spec: _Value) -> pa.Array:
    """orjson's text of each JSON number as a float; null where orjson's form may differ.

    Arrow writes the shortest text that reads back as the same double, as orjson does, and
    in the same decimal form from 1e-5 up to 1e16 (only it leaves off a trailing ".0").
    Outside that range the two choose between decimal and exponent form differently: those
    rows are left to Python. So are values below ``spec.ge``, an integer -0 (orjson reads
    0: 0.0, not -0.0) and, for ``spec.only_floats``, integers.
    """
    null = pa.scalar(None, pa.string())
    values = texts.cast(pa.float64())
    written = values.cast(pa.string())
    bad = pc.or_kleene(pc.invert(pc.is_finite(values)),
                       pc.match_substring_regex(written, r"e|^-?0\.00000"))
    integer = pc.invert(pc.match_substring_regex(texts, "[.eE]"))
    if spec.only_floats:
        bad = pc.or_kleene(bad, integer)
    else:
        bad = pc.or_kleene(bad, pc.and_kleene(integer, pc.equal(texts, pa.scalar("-0", pa.string()))))
    if spec.ge is not None:
        bad = pc.or_kleene(bad, pc.less(values, pa.scalar(spec.ge, pa.float64())))
    whole = pc.invert(pc.match_substring(written, "."))
    written = pc.if_else(whole, pc.binary_join_element_wise(written, pa.scalar(".0", pa.string()), ""), written)
    return pc.if_else(pc.fill_null(bad, True), null, written)


def _field_value(info: FieldInfo, value: object) -> _Value | None:
    """The pattern for ``value`` in declared field ``info``; None where the shape cannot
    say it column-wise (Python decides those rows)."""
    facts = field_facts(info)
    ann = facts.ann
    if ann == frozenset({list[str], str}):  # a command: either form
        ann = list[str] if type(value) is list else str
    if isinstance(ann, frozenset) or not facts.known:
        return None
    if value is None:
        return _Value(None) if facts.optional else None
    if ann == list[str] and not info.metadata:
        return _Value(_STR_LIST) if type(value) is list and all(type(x) is str for x in value) else None
    if isinstance(ann, type) and issubclass(ann, BaseModel) and not info.metadata:
        return _object_value(ann, value)
    # the constraints a pattern can say: a minimum length of one, >= 0, a plain class pattern
    min_len, ge, pattern = facts.min_len, facts.ge, None
    if min_len not in (None, 1) or ge not in (None, 0):
        return None
    if facts.pattern is not None:
        found = _CLASS_PATTERN.fullmatch(facts.pattern)
        if found is None:
            return None
        pattern = found.group(1)
    if ann is str and type(value) is str and ge is None:
        if pattern is not None:
            return None if min_len else _Value(f'"{pattern}"')
        return _Value(_NONEMPTY_STR if min_len else _STR)
    if min_len is not None or pattern is not None:
        return None
    if ann is int and type(value) is int:
        return _Value(_NATURAL if ge == 0 else _INT)
    if ann is float and type(value) in (int, float):
        return _Value(_NUMBER, is_float=True, ge=ge)
    if ge is not None:
        return None
    if ann is bool and type(value) is bool:
        return _Value(_BOOL)
    if (typing.get_origin(ann) is typing.Literal and type(value) is str
            and all(type(a) is str and _KEY.fullmatch(a) for a in typing.get_args(ann))):
        return _Value('"(?:' + "|".join(typing.get_args(ann)) + ')"')
    return None


def _extra_value(value: object) -> _Value | None:
    """The pattern for ``value`` in a key the model does not declare (kept as it is)."""
    if value is None:
        return _Value(None)
    t = type(value)
    if t is str:
        return _Value(_STR)
    if t is bool:
        return _Value(_BOOL)
    if t is int and abs(value) < 10**18:
        return _Value(_INT)
    if t is float:
        return _Value(_NUMBER, is_float=True, only_floats=True)
    if t is list and all(type(x) is str for x in value):
        return _Value(_STR_LIST)
    if t is dict:
        return _object_value(None, value)
    return None


def _object_value(model: type[BaseModel] | None, value: object) -> _Value | None:
    """The pattern for a nested object: of ``model`` (a declared field), or of none (a key
    the model does not declare: every key kept as it is)."""
    if type(value) is not dict or (model is not None and model.model_config.get("extra") != "allow"):
        return None
    learned = _object(model.model_fields if model is not None else {}, value)
    if learned is None:
        return None
    regex, parts, floats = learned
    return _Value(regex, parts=(parts, floats))


_names = itertools.count()  # capture names: unique within a pattern, whatever nests in it


def _object(fields: dict[str, FieldInfo], sample: dict) -> tuple[str, list, dict] | None:
    """(pattern, parts, floats) of an object shaped like ``sample`` with these declared
    fields (the others kept as they are), or None where it cannot be said column-wise."""
    if len(sample) > _MAX_KEYS or not all(type(k) is str and _KEY.fullmatch(k) for k in sample):
        return None
    regex = r"\{"
    written: dict[str, tuple] = {}
    floats: dict[str, _Value] = {}
    for i, (key, value) in enumerate(sample.items()):
        spec = _field_value(fields[key], value) if key in fields else _extra_value(value)
        if spec is None:
            return None
        if spec.pattern is None:
            body = "null"  # left out, as exclude_none does
        elif spec.parts is not None:
            body = spec.pattern
            written[key] = ("object", spec.parts[0])
            floats.update(spec.parts[1])
        else:
            name = f"v{next(_names)}"
            body = f"(?P<{name}>{spec.pattern})"
            written[key] = ("capture", name)
            if spec.is_float:
                floats[name] = spec
        regex += ("," if i else "") + _WS + f'"{key}"' + _WS + ":" + _WS + body + _WS
    for key, info in fields.items():
        if key in sample:
            continue
        if info.is_required():
            return None
        default = info.default_factory() if info.default_factory is not None else info.default
        if default is not None:
            written[key] = ("const", orjson.dumps(default).decode())
    return regex + r"\}", [(key, written[key]) for key in sorted(written)], floats


def learn_shape(kind: str, text: str | None) -> _Shape | None:
    """The shape of payload ``text`` of ``kind``, or None where it has none this module can use."""
    model, check = MODELS.get(kind), PAYLOAD_CHECKS.get(kind)
    if model is None or check is None or text is None:
        return None
    try:
        sample = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(sample) is not dict:
        return None
    reference = check(dict(sample))
    if reference is None:
        return None
    learned = _object(model.model_fields, sample)
    if learned is None:
        return None
    regex, parts, floats = learned
    regex = "^" + _WS + regex + _WS + "$"
    shape = _Shape(regex, parts, floats)
    try:
        made = shape.apply(pa.array([text], pa.string()))[0].as_py()
    except pa.ArrowException:
        return None
    return shape if made == orjson.dumps(reference, option=orjson.OPT_SORT_KEYS).decode() else None


def canonical_payloads(kinds: pa.Array, texts: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """The canonical JSON of payload texts of the given kinds (a null kind: not asked for),
    as ``fastprepare.payload_texts`` would make it, for the rows this module can decide.

    Returns (rows, their canonical texts, the rows asked for and left to Python), rows as
    indices into ``texts``; ``place`` puts such pieces back in row order.
    """
    n = len(texts)
    none = pa.array([], pa.uint64())
    try:
        texts = texts.cast(pa.string())  # refuses invalid UTF-8: all of it goes to Python then
    except pa.ArrowInvalid:
        return none, pa.array([], pa.string()), pc.indices_nonzero(pc.is_valid(kinds))
    asked = pc.is_valid(kinds)
    if n == 0 or not asked.true_count:
        return none, pa.array([], pa.string()), none
    rows, made, left = [], [], []
    for kind in pc.unique(kinds.filter(asked)).to_pylist():
        pending = pc.indices_nonzero(pc.and_(asked, pc.equal(kinds, kind)))
        for _ in range(MAX_SHAPES):
            if len(pending) == 0:
                break
            shape = learn_shape(kind, texts[pending[0].as_py()].as_py())
            if shape is None:
                left.append(pending[:1])
                pending = pending[1:]
                continue
            out = shape.apply(texts.take(pending))
            done = pc.is_valid(out)
            rows.append(pending.filter(done))
            made.append(out.filter(done))
            pending = pending.filter(pc.invert(done))
        left.append(pending)
    return (pa.concat_arrays(rows) if rows else none, pa.concat_arrays(made) if made else pa.array([], pa.string()),
            pa.concat_arrays(left) if left else none)


def place(rows: pa.Array, values: pa.Array) -> pa.Array:
    """``values`` in row order, given the row of each (``rows``: each of 0..n-1 once)."""
    return values.take(pc.sort_indices(rows))


__all__ = ["MAX_SHAPES", "canonical_payloads", "learn_shape", "place"]
