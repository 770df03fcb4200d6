"""Typed event and payload models. No I/O: everything above builds on these."""

from schemas.actor import ActorKind, parse_actor
from schemas.envelope import (
    COLUMNS,
    DEFAULT_BRANCH,
    GENESIS_HASH,
    Draft,
    Prepared,
    canonical_body,
    chain_hash,
    prepare,
    validate_payload,
)
from schemas.errors import SchemaError
from schemas.payloads import KINDS, MODELS, STAGE, VERSION

__all__ = [
    "ActorKind", "COLUMNS", "DEFAULT_BRANCH", "Draft", "EventEnvelope", "GENESIS_HASH", "KINDS",
    "MODELS", "Prepared", "STAGE", "SchemaError", "VERSION", "canonical_body", "chain_hash",
    "parse_actor", "prepare", "validate_payload",
]


def __getattr__(name: str):
    # EventEnvelope pulls in SQLModel (~0.3 s); load it only when someone asks for it.
    if name == "EventEnvelope":
        from schemas.event import EventEnvelope

        return EventEnvelope
    raise AttributeError(f"module 'schemas' has no attribute {name!r}")
