"""The event envelope, its validation, and the canonical serialization the hash chain covers.

A producer hands over a *draft* (what happened, to which node, by whom). Validation turns
it into a ``Prepared`` event: payload checked against its kind's model, upcast to the
current version, and serialized to canonical JSON. The store then assigns ``seq``,
``recorded_at``, ``prev_hash`` and ``hash``.

The canonical body is a plain join of the envelope fields with the unit separator
(0x1F). It is deliberately simple enough to be recomputed in SQL (see
``lineage.verify``), which is what makes verification vectorized: names may not
contain control characters and payload JSON escapes them, so the join is unambiguous.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import uuid_utils
from pydantic import ValidationError

from schemas.actor import ActorKind, check_name, parse_actor
from schemas.chain import now_us
from schemas.errors import SchemaError, from_pydantic
from schemas.payloads import MODELS, VERSION
from schemas.upcast import upcast

MAX_PAYLOAD_BYTES = 1 << 20  # inline payload limit; large content belongs in the object store
DEFAULT_BRANCH = "main"

# Columns of the event log, in storage order.
COLUMNS: tuple[str, ...] = (
    "seq",
    "event_id",
    "lineage",
    "branch",
    "node",
    "kind",
    "actor_kind",
    "actor",
    "actor_node",
    "occurred_at",
    "recorded_at",
    "payload",
    "schema_version",
    "caused_by",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True, slots=True)
class Draft:
    """What a producer says happened. Everything else is filled in by the store."""

    lineage: str
    kind: str
    actor: str | None
    payload: dict = field(default_factory=dict)
    node: str | None = None
    branch: str = DEFAULT_BRANCH
    actor_node: str | None = None
    occurred_at: datetime | str | None = None
    caused_by: str | None = None
    event_id: str | None = None
    schema_version: int | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated event ready for the store."""

    event_id: str
    lineage: str
    branch: str
    node: str | None
    kind: str
    actor_kind: str
    actor: str
    actor_node: str | None
    occurred_us: int
    payload_json: str
    schema_version: int
    caused_by: str | None


def new_event_id() -> str:
    return str(uuid_utils.uuid7())


_MIN_EPOCH_S = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_EPOCH_S = 253_402_300_799  # 9999-12-31T23:59:59Z


def to_us(value: datetime | str | int | float | None, field_name: str) -> int:
    """A timestamp as integer microseconds since the epoch, UTC. Naive times are UTC."""
    if value is None:
        return now_us()
    if isinstance(value, bool):
        raise SchemaError([(field_name, "expected an ISO 8601 timestamp")])
    if isinstance(value, int | float):
        # Epoch seconds, years 1..9999: a value outside is almost surely milliseconds or
        # nanoseconds, and stored as-is it would make every timestamp query fail.
        if not math.isfinite(value) or not (_MIN_EPOCH_S <= value <= _MAX_EPOCH_S):
            raise SchemaError([(field_name, f"{value!r} is not a timestamp in epoch seconds (years 1-9999); "
                                            "did you pass milliseconds or nanoseconds? Use an ISO 8601 string or seconds")])
        return int(value * 1_000_000)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise SchemaError([(field_name, f"expected an ISO 8601 timestamp, got {value[:40]!r}")]) from None
    if not isinstance(value, datetime):
        raise SchemaError([(field_name, f"expected a timestamp, got {type(value).__name__}")])
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def _normalize_uuid(value: object, field_name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise SchemaError([(field_name, f"expected a UUID, got {str(value)[:40]!r}")]) from None


def check_json(value: Any, path: str) -> None:
    """Refuse what JSON cannot carry faithfully: NaN/Infinity, lone surrogates, odd types.

    orjson would quietly write NaN as null, which is exactly the silent loss we forbid.
    """
    stack = [(value, path)]
    while stack:
        v, p = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise SchemaError([(p, "text is not valid UTF-8 (lone surrogate); decode the source correctly")]) from None
        elif isinstance(v, bool) or v is None or isinstance(v, int):
            continue
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise SchemaError([(p, f"expected a finite number, got {v}; record failures as a run status, not as a score")])
        elif isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise SchemaError([(p, f"object keys must be strings, got {type(k).__name__}")])
                stack.append((item, f"{p}.{k}"))
        elif isinstance(v, list | tuple):
            for i, item in enumerate(v):
                stack.append((item, f"{p}[{i}]"))
        else:
            raise SchemaError([(p, f"{type(v).__name__} is not JSON; convert it to a string, number, list or object")])


def validate_payload(kind: str, payload: Any, version: int | None = None) -> tuple[dict, int]:
    """Validate ``payload`` for ``kind``; return (canonical dict, current version)."""
    model = MODELS.get(kind)
    if model is None:
        raise SchemaError([("kind", f"unknown kind {kind!r}; expected one of: {', '.join(MODELS)}")])
    if not isinstance(payload, dict):
        raise SchemaError([("payload", f"expected a JSON object, got {type(payload).__name__}")], kind=kind)
    if version is not None and version != VERSION[kind]:
        if isinstance(version, bool) or not isinstance(version, int):
            raise SchemaError([("schema_version", "expected an integer")], kind=kind)
        payload = upcast(kind, version, payload)
    check_json(payload, "payload")
    try:
        obj = model.model_validate(payload)
    except ValidationError as exc:
        raise from_pydantic(exc, prefix="payload", kind=kind) from None
    return obj.model_dump(mode="json", exclude_none=True), VERSION[kind]


def prepare(draft: Draft) -> Prepared:
    """Validate a draft; raise SchemaError naming the field on the first problem."""
    lineage = check_name(draft.lineage, "lineage")
    branch = check_name(draft.branch or DEFAULT_BRANCH, "branch")
    node = check_name(draft.node, "node", required=False)
    actor_node = check_name(draft.actor_node, "actor_node", required=False)
    actor_kind, _ = parse_actor(draft.actor)
    if actor_node is not None and actor_kind is not ActorKind.ai:
        raise SchemaError([("actor_node", f"only an ai: actor can be a node of the lineage, not {draft.actor!r}")])
    data, version = validate_payload(draft.kind, draft.payload, draft.schema_version)
    text = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
    if len(text) > MAX_PAYLOAD_BYTES:
        raise SchemaError(
            [("payload", f"{len(text) / 1e6:.1f} MB inline is over the {MAX_PAYLOAD_BYTES >> 20} MB limit; "
                         "put large content in the object store and record its sha256")],
            kind=draft.kind,
        )
    return Prepared(
        event_id=_normalize_uuid(draft.event_id, "event_id") if draft.event_id else new_event_id(),
        lineage=lineage,
        branch=branch,
        node=node,
        kind=draft.kind,
        actor_kind=actor_kind.value,
        actor=draft.actor,
        actor_node=actor_node,
        occurred_us=to_us(draft.occurred_at, "occurred_at"),
        payload_json=text,
        schema_version=version,
        caused_by=_normalize_uuid(draft.caused_by, "caused_by") if draft.caused_by else None,
    )
