"""Upcasters: small named functions that lift a stored payload from version N to N+1.

Events are immutable, so an old event keeps its old payload on disk; readers (and
producers that still send an old version) pass it through these functions to reach the
current model. Register one function per (kind, from_version).
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.errors import SchemaError
from schemas.payloads import VERSION

Upcaster = Callable[[dict], dict]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(kind: str, from_version: int):
    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(kind, from_version)] = fn
        return fn

    return register


@upcaster("score", 1)
def score_v1_to_v2(payload: dict) -> dict:
    """Version 1 scores were ``{"name", "value"}`` and always on the public split."""
    out = {k: v for k, v in payload.items() if k != "name"}
    out["metric"] = payload.get("name")
    out.setdefault("split", "public")
    return out


def upcast(kind: str, version: int, payload: dict) -> dict:
    """Bring ``payload`` from ``version`` to the current version of ``kind``."""
    current = VERSION[kind]
    if version > current:
        raise SchemaError(
            [("schema_version", f"{kind} payload version {version} is newer than this lineage ({current}); upgrade lineage")],
            kind=kind,
        )
    if version < 1:
        raise SchemaError([("schema_version", "expected a version >= 1")], kind=kind)
    while version < current:
        step = UPCASTERS.get((kind, version))
        if step is None:
            raise SchemaError([("schema_version", f"no upcaster from {kind} v{version} to v{version + 1}")], kind=kind)
        payload = step(payload)
        version += 1
    return payload
