"""Typed event and payload models. No I/O: everything above builds on these.

Names load on first use (PEP 562): the payload models need pydantic, which a reader of
a store (the terminal UI, ``lineage sql``) never does, and which costs ~0.1 s to import.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "ActorKind": "schemas.actor", "parse_actor": "schemas.actor",
    "COLUMNS": "schemas.envelope", "DEFAULT_BRANCH": "schemas.envelope", "Draft": "schemas.envelope",
    "Prepared": "schemas.envelope", "prepare": "schemas.envelope", "validate_payload": "schemas.envelope",
    "GENESIS_HASH": "schemas.chain", "canonical_body": "schemas.chain", "chain_hash": "schemas.chain",
    "SchemaError": "schemas.errors",
    "KINDS": "schemas.payloads", "MODELS": "schemas.payloads", "STAGE": "schemas.payloads",
    "VERSION": "schemas.payloads",
    "EventEnvelope": "schemas.event",  # pulls in SQLModel (~0.3 s)
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'schemas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
