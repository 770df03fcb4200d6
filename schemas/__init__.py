"""Typed event and payload models. No I/O: everything above builds on these."""

from schemas.actor import ActorKind, parse_actor
from schemas.envelope import (
    COLUMNS,
    DEFAULT_BRANCH,
    GENESIS_HASH,
    Draft,
    EventEnvelope,
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
