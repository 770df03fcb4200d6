"""Canonical payload JSON for a whole column of payload texts, with no Python per row.

Bulk ingest of Parquet spends most of its time making each payload canonical (parse,
check against the kind's model, serialize with sorted keys): ~2 µs a row in Python even on
the fast path of ``lineage.fastprepare``. But a loop writes the payloads of one kind in one
*shape* (the same keys, in the same order, holding the same JSON types), and for a shape of
strings, numbers, booleans, nulls, lists of strings and objects of those, both the check and
the canonical text can be had column-wise: one regular expression that only texts of that
shape, whose values pass the model's constraints, can match, and the canonical text put
together from its captures with the keys sorted and the model's defaults filled in.

Matching with captures is the slow part (RE2 runs a second, capturing pass over each
text). Most texts of a batch are also laid out alike, byte for byte between the values
(the producer's spacing): those are checked by the same pattern without captures, which
RE2 runs as a DFA, and each value is cut out at the offset where the text after it is
found (``_Layout``); texts laid out otherwise are matched with captures.

A shape is learned from a sample row: parsed in Python and checked by
``fastprepare.PAYLOAD_CHECKS`` (the reference), and kept only if the text put together for
the sample, both ways, is exactly the reference's; shapes are kept for the batches that
follow (a shape holds whatever sample it came from). Rows that no shape matches are left
to the per-row path: other lists and mappings, lists written with spaces, escapes that
orjson writes differently (``\\u00e9``, ``\\/``), numbers orjson writes in another form
(1e16 and beyond, below 1e-5), constraints beyond a minimum length of one, ``>= 0`` or a
plain character-class pattern. ``tests/test_payload_shapes.py`` checks with generated payloads
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
class _Layout:
    """A shape as one producer writes it, to the byte: the text between its values (keys,
    spacing, nulls, braces) exactly as in the sample. Texts laid out this way are checked
    by a pattern without captures (RE2's DFA, ~2.5x faster than capturing), and each value
    is cut out at the offsets where the text that follows it is found (see ``_layout`` for
    why that text is found only there)."""

    regex: str  # the shape's pattern with this spacing, captures left out
    names: list[str]  # captures, in the order they appear in the text
    between: list[str]  # the texts around them: len(names) + 1


@dataclass
class _Shape:
    regex: str  # matches exactly the texts of this shape whose values pass the model's checks
    # Sorted by key, what each key of the object is written as: ("capture", name): the text
    # captured; ("const", json): a default; ("object", parts): a nested object, the same way.
    parts: list[tuple[str, tuple]]
    floats: dict[str, _Value]  # captures made floats, and how
    layout: _Layout | None = None  # the sample's own spacing, where values can be cut out

    def apply(self, texts: pa.Array) -> pa.Array:
        """Canonical text of each row of this shape; null for the others."""
        if self.layout is None or not _captures(self.parts):
            return self._apply(texts, None)
        laid = pc.fill_null(pc.match_substring_regex(texts, self.layout.regex), False)
        count = laid.true_count
        if count == 0:
            return self._apply(texts, None)
        laid_out = texts.filter(laid)
        out = self._apply(laid_out, self._cut(laid_out))
        if count == len(texts):
            return out
        rest = pc.invert(laid)
        return pc.replace_with_mask(pc.replace_with_mask(pa.nulls(len(texts), pa.string()), laid, out),
                                    rest, self._apply(texts.filter(rest), None))

    def _cut(self, texts: pa.Array) -> dict[str, pa.Array]:
        """The values of texts that match ``layout.regex``, cut out by offset."""
        lay = self.layout
        lengths = pc.binary_length(texts)
        starts, values = pa.repeat(pa.scalar(len(lay.between[0]), pa.int32()), len(texts)), {}
        order, evens = _interleaving(len(texts))
        for i, name in enumerate(lay.names):
            after = lay.between[i + 1]
            if i + 1 < len(lay.names):
                # searched for from the value on, not from the start of the text again
                stop = pc.add(starts, pc.find_substring(_from(texts, starts), after))
            else:  # the text after the last value ends the text
                stop = pc.subtract(lengths, pa.scalar(len(after), pa.int32()))
            values[name] = _slices(texts, starts, stop, order, evens)
            starts = pc.add(stop, pa.scalar(len(after), pa.int32()))
        return values

    def _apply(self, texts: pa.Array, cut: dict[str, pa.Array] | None) -> pa.Array:
        n = len(texts)
        names = _captures(self.parts)
        values: dict[str, pa.Array] = {}
        if names:
            captured = pc.extract_regex(texts, self.regex) if cut is None else None
            for name in names:
                # null where the row did not match (.field() would not say)
                col = pc.struct_field(captured, name) if cut is None else cut[name]
                values[name] = _canonical_float(col, self.floats[name]) if name in self.floats else col
        pieces: list = []
        tail = _write(self.parts, values, pieces, "")
        if not pieces:
            matched = pc.fill_null(pc.match_substring_regex(texts, self.regex), False)
            return pc.if_else(matched, pa.scalar(tail, pa.string()), pa.scalar(None, pa.string()))
        pieces.append(tail)
        out = pc.binary_join_element_wise(*[p if isinstance(p, pa.Array) else pa.scalar(p, pa.string())
                                            for p in pieces], _EMPTY)
        longest = pc.max(pc.binary_length(out)).as_py() if n else None
        if longest is not None and longest > MAX_PAYLOAD_BYTES:  # too large inline: prepare() says why
            out = pc.if_else(pc.greater(pc.binary_length(out), MAX_PAYLOAD_BYTES), pa.scalar(None, pa.string()), out)
        return out


def _interleaving(n: int) -> tuple[pa.Array, pa.Array]:
    """Indices 0, n, 1, n+1, ... n-1, 2n-1 (two arrays of n, interleaved), and 0, 2, ... 2n-2."""
    at = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int32()), 2 * n))  # 1 .. 2n
    at = pc.subtract(at, pa.scalar(1, pa.int32()))
    half = pc.divide(at, pa.scalar(2, pa.int32()))
    odd = pc.subtract(at, pc.multiply(half, pa.scalar(2, pa.int32())))
    return pc.add(half, pc.multiply(odd, pa.scalar(n, pa.int32()))), pc.multiply(at.slice(0, n), pa.scalar(2, pa.int32()))


def _from(texts: pa.Array, starts: pa.Array) -> pa.Array:
    """Each text from byte ``starts[i]`` on, without copying: an array over the same data
    whose element i runs from there to where element i + 1 starts (into the next text).
    Only for finding what is known to be in text i after ``starts[i]``: the first match
    is then in text i, and at the same place as in the text itself."""
    n = len(texts)
    offsets = pa.Array.from_buffers(pa.int32(), n + 1, [None, texts.buffers()[1]], offset=texts.offset)
    shifted = pa.concat_arrays([pc.add(offsets.slice(0, n), starts), offsets.slice(n, 1)])
    # binary, not string: an element may end inside a character of the next text
    return pa.Array.from_buffers(pa.binary(), n, [None, shifted.buffers()[1], texts.buffers()[2]])


def _slices(texts: pa.Array, starts: pa.Array, stops: pa.Array, order: pa.Array, evens: pa.Array) -> pa.Array:
    """Bytes ``starts[i]:stops[i]`` of each text (no nulls; 0 <= start <= stop <= length).

    Arrow slices every row by the same amounts only; so the slices are made an array of
    their own over the texts' data, alternating with the bytes between them (offsets
    start0, stop0, start1, stop1, ...: in order, as each slice lies inside its row), and
    every other element of it taken. ``order``, ``evens``: ``_interleaving(len(texts))``.
    """
    n = len(texts)
    row = pa.Array.from_buffers(pa.int32(), n, [None, texts.buffers()[1]], offset=texts.offset)
    bounds = pa.concat_arrays([pc.add(row, starts), pc.add(row, stops)]).take(order)
    pieces = pa.Array.from_buffers(pa.string(), 2 * n - 1, [None, bounds.buffers()[1], texts.buffers()[2]])
    return pieces.take(evens)


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
    # (plain substring tests: a regular expression costs several times as much a row)
    tiny = pc.or_(pc.starts_with(written, "0.00000"), pc.starts_with(written, "-0.00000"))
    bad = pc.or_kleene(pc.invert(pc.is_finite(values)), pc.or_(pc.match_substring(written, "e"), tiny))
    if spec.only_floats:
        integer = pc.invert(pc.or_(pc.match_substring(texts, "."), pc.or_(pc.match_substring(texts, "e"),
                                                                         pc.match_substring(texts, "E"))))
        bad = pc.or_kleene(bad, integer)
    else:
        bad = pc.or_kleene(bad, pc.equal(texts, pa.scalar("-0", pa.string())))  # the integer -0
    if spec.ge is not None:
        bad = pc.or_kleene(bad, pc.less(values, pa.scalar(spec.ge, pa.float64())))
    whole = pc.invert(pc.match_substring(written, "."))
    written = pc.if_else(whole, pc.binary_join_element_wise(written, _POINT_ZERO, _EMPTY), written)
    return pc.if_else(pc.fill_null(bad, True), null, written)


# Scalars made once: pyarrow makes a scalar of a plain Python value by trying imports that
# fail on most machines (dateutil), a quarter of a millisecond a call.
_POINT_ZERO, _EMPTY = pa.scalar(".0", pa.string()), pa.scalar("", pa.string())


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
    regex, parts, captured = learned
    return _Value(regex, parts=(parts, captured))


_names = itertools.count()  # capture names: unique within a pattern, whatever nests in it


def _object(fields: dict[str, FieldInfo], sample: dict) -> tuple[str, list, dict] | None:
    """(pattern, parts, captures) of an object shaped like ``sample`` with these declared
    fields (the others kept as they are), or None where it cannot be said column-wise.
    ``captures``: how each captured value is matched and written, by capture name."""
    if len(sample) > _MAX_KEYS or not all(type(k) is str and _KEY.fullmatch(k) for k in sample):
        return None
    regex = r"\{"
    written: dict[str, tuple] = {}
    captured: dict[str, _Value] = {}
    for i, (key, value) in enumerate(sample.items()):
        spec = _field_value(fields[key], value) if key in fields else _extra_value(value)
        if spec is None:
            return None
        if spec.pattern is None:
            body = "null"  # left out, as exclude_none does
        elif spec.parts is not None:
            body = spec.pattern
            written[key] = ("object", spec.parts[0])
            captured.update(spec.parts[1])
        else:
            name = f"v{next(_names)}"
            body = f"(?P<{name}>{spec.pattern})"
            written[key] = ("capture", name)
            captured[name] = spec
        regex += ("," if i else "") + _WS + f'"{key}"' + _WS + ":" + _WS + body + _WS
    for key, info in fields.items():
        if key in sample:
            continue
        if info.is_required():
            return None
        default = info.default_factory() if info.default_factory is not None else info.default
        if default is not None:
            written[key] = ("const", orjson.dumps(default).decode())
    return regex + r"\}", [(key, written[key]) for key in sorted(written)], captured


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
    regex, parts, captured = learned
    regex = "^" + _WS + regex + _WS + "$"
    shape = _Shape(regex, parts, {k: v for k, v in captured.items() if v.is_float}, _layout(regex, captured, sample, text))
    want = orjson.dumps(reference, option=orjson.OPT_SORT_KEYS).decode()
    try:
        if shape.apply(pa.array([text], pa.string()))[0].as_py() != want:
            return None
        if shape.layout is not None:  # the pattern with captures, too, for rows spaced otherwise
            shape.layout, laid = None, shape.layout
            if shape.apply(pa.array([text], pa.string()))[0].as_py() != want:
                return None
            shape.layout = laid
    except pa.ArrowException:
        return None
    return shape


def _layout(regex: str, captured: dict[str, _Value], sample: dict, text: str) -> _Layout | None:
    """The layout of ``text`` (which ``regex`` matches), or None where values cannot be cut
    out by where the text after them is found.

    Each text between two values ends with the next value's key, quoted, and the colon
    after it. In a text of this shape such a run (a quote, the key's name, a quote, spaces,
    a colon) is found only where that key is: the quote after the name is preceded by a
    letter, so it is not escaped and ends a string; a string followed by a colon is a key;
    and a key of the shape holding the name at its end, preceded by a quote, is that name.
    So the text between two values is found first where it belongs, provided no two keys
    of the shape (at any depth) have the same name.
    """
    names = _keys(sample)
    if len(names) != len(set(names)):
        return None
    found = re.fullmatch(regex[1:-1], text)
    if found is None:
        return None
    order = sorted(captured, key=found.start)
    between, at = [], 0
    for name in order:
        between.append(text[at:found.start(name)])
        at = found.end(name)
    between.append(text[at:])
    literal = [_literal(t) for t in between]
    pattern = "^" + literal[0] + "".join(f"(?:{captured[n].pattern})" + lit for n, lit in zip(order, literal[1:], strict=True)) + "$"
    return _Layout(pattern, order, between)


def _keys(value: object) -> list[str]:
    """Every key of an object, at any depth."""
    if type(value) is not dict:
        return []
    return [k for key, v in value.items() for k in (key, *_keys(v))]


def _literal(text: str) -> str:
    """A pattern matching exactly ``text`` (ASCII: keys, spacing, punctuation, null)."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{ord(c):02x}" for c in text)


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
        pending = pc.indices_nonzero(pc.and_(asked, pc.equal(kinds, pa.scalar(kind, pa.string()))))
        for _ in range(MAX_SHAPES):
            if len(pending) == 0:
                break
            shape = _shape_of(kind, texts.take(pending[:1]))
            if shape is None:
                left.append(pending[:1])
                pending = pending[1:]
                continue
            out = shape.apply(texts.take(pending))
            done = pc.is_valid(out)
            rows.append(pending.filter(done))
            made.append(out.filter(done))
            stuck = not done[0].as_py()  # of the shape, but not decided here (a float orjson writes otherwise)
            pending = pending.filter(pc.invert(done))
            if stuck:  # Python's, not a reason to try the same shape on the same row again
                left.append(pending[:1])
                pending = pending[1:]
        left.append(pending)
    return (pa.concat_arrays(rows) if rows else none, pa.concat_arrays(made) if made else pa.array([], pa.string()),
            pa.concat_arrays(left) if left else none)


_KEPT = 8  # shapes kept per kind, most recently used first
_kept: dict[str, list[_Shape]] = {}


def _shape_of(kind: str, first: pa.Array) -> _Shape | None:
    """A shape that decides the payload text ``first`` (one row): one of those kept from
    earlier batches (a shape holds for any text, whichever sample it was learned from), or
    one learned from this text. Learning costs ~2 ms; trying a kept one, ~30 µs: its
    pattern alone says whether the text has its shape (``apply`` would also put together
    the text, ~1 ms even for one row; a row it then cannot decide is left to Python)."""
    kept = _kept.setdefault(kind, [])
    for i, shape in enumerate(kept):
        if pc.match_substring_regex(first, shape.regex)[0].as_py():
            kept.insert(0, kept.pop(i))
            return shape
    shape = learn_shape(kind, first[0].as_py())
    if shape is not None:
        kept.insert(0, shape)
        del kept[_KEPT:]
    return shape


def place(rows: pa.Array, values: pa.Array) -> pa.Array:
    """``values`` in row order, given the row of each (``rows``: each of 0..n-1 once)."""
    return values.take(pc.sort_indices(rows))


__all__ = ["MAX_SHAPES", "canonical_payloads", "learn_shape", "place"]
