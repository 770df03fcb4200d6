"""A fast path to ``schemas.prepare`` for bulk ingest, with the same results.

``prepare`` costs 20-40 µs an event (pydantic models, regexes, UUID and timestamp
parsing), which caps ingest far below 100,000 events/s. Ingest sees the same few
lineage, branch, node and actor names again and again, and almost every payload is plain:
strings, numbers and booleans in the declared fields. This module handles exactly that
common case and declines (returns ``None``) on anything else, so the caller falls back to
``prepare`` itself. Error messages and edge cases are therefore ``prepare``'s by
construction; the fast path only has to agree with it on the events it accepts, which
``tests/test_ingest.py`` checks with property-based tests.

Payload checks are generated from the pydantic models' own field declarations (type,
default, ``min_length``, ``ge``, ``pattern``, ``Literal``); a field whose type or
constraint is not understood here always takes the slow path when present. Inputs must
come from ``orjson.loads``: it refuses NaN, ±Infinity and lone surrogates, which is what
``check_json`` would otherwise look for (integers beyond 64 bits, which it reads as
floats, are the caller's business: see ``lineage.ingest``).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import annotated_types
import orjson
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from schemas.actor import check_name, parse_actor
from schemas.chain import NULL, SEP
from schemas.envelope import MAX_PAYLOAD_BYTES
from schemas.errors import SchemaError
from schemas.payloads import MODELS, VERSION

_MISSING = object()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CACHE_MAX = 200_000


# -- payloads ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldFacts:
    """What a payload field declares, as far as the fast paths understand it."""

    ann: object  # the annotation without None; several types left: a frozenset of them
    optional: bool  # None is accepted
    min_len: int | None
    ge: int | float | None
    pattern: str | None  # a pattern of plain characters and classes, as declared (^...$)
    known: bool  # False: some constraint is none of these


def field_facts(info: FieldInfo) -> FieldFacts:
    ann = info.annotation
    optional = False
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        optional = len(args) < len(typing.get_args(ann))
        ann = args[0] if len(args) == 1 else frozenset(args)
    min_len = ge = pattern = None
    known = True
    for m in info.metadata:
        if isinstance(m, annotated_types.MinLen):
            min_len = m.min_length
        elif isinstance(m, annotated_types.Ge) and isinstance(m.ge, int | float):
            ge = m.ge
        elif (type(m).__name__ == "_PydanticGeneralMetadata" and set(vars(m)) == {"pattern"}
              and re.fullmatch(r"\^[\[\]0-9a-zA-Z\-{},]*\$", m.pattern)):
            pattern = m.pattern
        else:
            known = False
    return FieldFacts(ann, optional, min_len, ge, pattern, known)


def _field_code(name: str, info: FieldInfo, ns: dict, owned: bool) -> list[str]:
    """Statements checking field ``name`` of payload ``p`` (value in ``v``) into ``out``."""
    key = repr(name)
    facts = field_facts(info)
    ann, optional, min_len, ge, known = facts.ann, facts.optional, facts.min_len, facts.ge, facts.known
    # pydantic uses Rust regex, where `$` matches only at the very end.
    pattern = re.compile(facts.pattern[:-1] + r"\Z") if facts.pattern is not None else None

    i = len(ns)
    bad = None  # an expression that is true when the (non-None) value ``v`` is refused
    convert = None
    if not known:
        bad = "True"
    elif ann is str:
        bad = "type(v) is not str"
        if min_len is not None:
            bad += f" or len(v) < {min_len!r}"
        if pattern is not None:
            ns[f"P{i}"] = pattern
            bad += f" or P{i}.match(v) is None"
    elif min_len is not None or pattern is not None:
        bad = "True"
    elif ann is int:
        bad = "type(v) is not int" + (f" or v < {ge!r}" if ge is not None else "")
    elif ann is float:
        # strict mode takes an int for a float and stores it as a float
        bad = "(type(v) is not float and type(v) is not int)" + (f" or v < {ge!r}" if ge is not None else "")
        convert = f"if type(v) is int: out[{key}] = float(v)"
    elif ge is not None:
        bad = "True"
    elif ann is bool:
        bad = "type(v) is not bool"
    elif typing.get_origin(ann) is typing.Literal and all(type(a) is str for a in typing.get_args(ann)):
        ns[f"L{i}"] = frozenset(typing.get_args(ann))
        bad = f"type(v) is not str or v not in L{i}"
    elif ann == list[str]:
        bad = "type(v) is not list or any(type(x) is not str for x in v)"
    elif ann == frozenset({list[str], str}):
        bad = "type(v) is not str and (type(v) is not list or any(type(x) is not str for x in v))"
    elif ann == dict[str, str]:
        bad = "type(v) is not dict or any(type(x) is not str for x in v.values())"
    elif _is_model(ann):
        ns[f"N{i}"] = _compile(ann, nested=True, owned=owned)
        bad = f"type(v) is not dict or (r := N{i}(v)) is None"
        convert = f"out[{key}] = r"
    elif typing.get_origin(ann) is list and _is_model(arg := typing.get_args(ann)[0]):
        ns[f"N{i}"] = _compile(arg, nested=True, owned=owned)
        bad = f"type(v) is not list or None in (r := [N{i}(x) if type(x) is dict else None for x in v])"
        convert = f"out[{key}] = r"
    else:
        bad = "True"

    lines = [f"v = g({key}, M)", "if v is M:"]
    if info.is_required():
        lines.append("    return None")
    elif info.default_factory is not None:
        ns[f"F{i}"] = info.default_factory
        lines.append(f"    out[{key}] = F{i}()")
    elif info.default is not None:
        ns[f"D{i}"] = info.default
        lines.append(f"    out[{key}] = D{i}")
    else:
        lines.append("    pass")
    lines += ["elif v is None:", "    pass" if optional else "    return None", f"elif {bad}:", "    return None"]
    if convert:
        lines += ["else:", f"    {convert}"]
    return lines


def _is_model(ann: object) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def compile_payload(model, *, owned: bool = False) -> Callable[[dict], dict | None]:
    """A function returning ``model.model_validate(p).model_dump(mode="json", exclude_none=True)``
    for the payloads it understands, and None for everything else.

    ``owned``: the function may complete ``p`` in place and return it (defaults filled in,
    integers made floats) rather than a copy, even when it then returns None; for callers
    that made ``p`` themselves and use it for nothing else (saves ~30% of a check).
    """
    return _compile(model, nested=False, owned=owned)


def _compile(model, *, nested: bool, owned: bool) -> Callable[[dict], dict | None]:
    # Every check accepts only exact JSON types (no "5" for 5, no 1 for True), on which strict
    # and lax validation agree: so a nested model in lax mode (pydantic does not pass
    # `strict` down) is handled the same way; what lax mode would coerce takes the slow path.
    cfg = model.model_config
    if cfg.get("extra") != "allow" or not (nested or cfg.get("strict")):
        return lambda _p: None
    ns: dict = {"M": _MISSING}
    body = [
        "def check(p):",
        "    if type(p) is not dict:",
        "        return None",
        "    g = p.get",
        # exclude_none drops None-valued extras and optional fields alike
        f"    out = {'p' if owned else 'dict(p)'} if None not in p.values() else {{k: v for k, v in p.items() if v is not None}}",
    ]
    for name, info in model.model_fields.items():
        body += ["    " + line for line in _field_code(name, info, ns, owned)]
    body.append("    return out")
    exec("\n".join(body), ns)  # noqa: S102 - code generated from the model's own declarations
    return ns["check"]


PAYLOAD_CHECKS: dict[str, Callable[[dict], dict | None]] = {k: compile_payload(m) for k, m in MODELS.items()}
OWNED_CHECKS: dict[str, Callable[[dict], dict | None]] = {k: compile_payload(m, owned=True) for k, m in MODELS.items()}


def payload_json(kind: object, payload: object, version: object) -> str | None:
    """Canonical payload JSON as ``prepare`` would store it, or None to take the slow path."""
    check = PAYLOAD_CHECKS.get(kind) if type(kind) is str else None
    if check is None or type(payload) is not dict or not (version is None or version == VERSION[kind]):
        return None
    data = check(payload)
    if data is None:
        return None
    text = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= MAX_PAYLOAD_BYTES else None


def payload_texts(kinds: list, payloads: list) -> list[str | None]:
    """``payload_json`` of many payloads at once: the canonical JSON of each ``(kind,
    payload)``, or None where the slow path must decide (a kind of None included).

    The payloads are the caller's own, for nothing else: their checks work in place
    (``OWNED_CHECKS``), so no two may be the same dict. The caller has checked
    ``schema_version`` (None or the current version of the kind). One comprehension for
    all: per payload, the check and ``orjson.dumps`` without a function call of their own.
    (The JSON is kept as ``str``, not as the bytes ``dumps`` returns: each of those takes a
    fresh page, and keeping thousands of them costs a page fault apiece, more than the decode.)
    """
    check_of, dumps, sort = OWNED_CHECKS.get, orjson.dumps, orjson.OPT_SORT_KEYS
    texts = [None if (check := check_of(kind)) is None or (data := check(payload)) is None
             else dumps(data, option=sort).decode() for kind, payload in zip(kinds, payloads, strict=True)]
    if max(map(len, filter(None, texts)), default=0) > MAX_PAYLOAD_BYTES:
        texts = [None if t is None or len(t) > MAX_PAYLOAD_BYTES else t for t in texts]
    return texts


# -- envelope ---------------------------------------------------------------------------

class EnvelopeChecker:
    """Remembers names and actors already found valid: checking them is the same every time."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.actors: dict[str, str] = {}

    def name(self, value: object, field: str) -> bool:
        if type(value) is not str:
            return False
        if value in self.names:
            return True
        try:
            check_name(value, field)
        except SchemaError:
            return False
        if len(self.names) > _CACHE_MAX:
            self.names.clear()
        self.names.add(value)
        return True

    def actor_kind(self, actor: object) -> str | None:
        if type(actor) is not str:
            return None
        kind = self.actors.get(actor)
        if kind is None:
            try:
                kind = parse_actor(actor)[0].value
            except SchemaError:
                return None
            if len(self.actors) > _CACHE_MAX:
                self.actors.clear()
            self.actors[actor] = kind
        return kind

    def prepare(self, now: int, eid, lineage, branch, node, kind, actor, actor_node, occurred,
                occurred_us, caused_by, version, payload) -> tuple | None:
        """``schemas.prepare`` of these envelope fields as a row, or None to take the slow path.

        Takes what ``Draft`` holds after the caller's defaulting (``branch`` already
        ``or "main"``, a falsy ``caused_by`` already None); ``occurred_us`` replaces
        ``occurred`` when the timestamp is already known in microseconds; ``now`` stands
        in for a missing one. Returns (event_id, lineage, branch, node, kind, actor_kind,
        actor, actor_node, occurred_us, payload_json, schema_version, caused_by).
        """
        names = self.names
        ak = self.actors.get(actor) if type(actor) is str else None
        if ak is None and (ak := self.actor_kind(actor)) is None:
            return None
        if not (type(lineage) is str and lineage in names) and not self.name(lineage, "lineage"):
            return None
        if not (type(branch) is str and branch in names) and not self.name(branch, "branch"):
            return None
        if node is not None and not (type(node) is str and node in names) and not self.name(node, "node"):
            return None
        if actor_node is not None and (ak != "ai" or not self.name(actor_node, "actor_node")):
            return None
        if type(eid) is not str or len(eid) != 36 or _UUID.fullmatch(eid) is None:
            return None
        if caused_by is not None and (type(caused_by) is not str or len(caused_by) != 36 or _UUID.fullmatch(caused_by) is None):
            return None
        if occurred_us is not None:
            us = occurred_us
        elif occurred is None:
            us = now
        elif type(occurred) is str:
            us = timestamp_us(occurred)
            if us is None:
                return None
        else:
            return None
        text = payload_json(kind, payload, version)
        if text is None:
            return None
        return eid, lineage, branch, node, kind, ak, actor, actor_node, us, text, VERSION[kind], caused_by


def timestamp_us(value: str) -> int | None:
    """``schemas.envelope.to_us`` for a string, or None where it would raise."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def body_parts(event_id: str, lineage: str, branch: str, node: str | None, kind: str, actor_kind: str,
               actor: str, actor_node: str | None, occurred_us: int, payload: str, version: int,
               caused_by: str | None) -> tuple[str, str]:
    """The canonical body (``schemas.chain.canonical_body``) around the two fields only
    the store knows: body = seq SEP head SEP recorded_at SEP tail."""
    head = SEP.join((event_id, lineage, branch, NULL if node is None else node, kind, actor_kind, actor,
                     NULL if actor_node is None else actor_node, str(occurred_us)))
    tail = SEP.join((payload, str(version), NULL if caused_by is None else caused_by))
    return head, tail


__all__ = ["OWNED_CHECKS", "PAYLOAD_CHECKS", "EnvelopeChecker", "FieldFacts", "field_facts", "body_parts", "compile_payload", "payload_json",
           "payload_texts", "timestamp_us"]
