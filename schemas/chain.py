"""What the hash chain covers: the canonical body of a stored event and its hash.

Kept apart from validation (``schemas.envelope``, which needs pydantic) so that readers of
a store, the terminal UI above all, load none of it. The canonical body is a plain join of
the envelope fields with the unit separator (0x1F), simple enough to be recomputed in SQL
(see ``lineage.verify``).
"""

from __future__ import annotations

import hashlib
import time

GENESIS_HASH = "0" * 64
SEP = "\x1f"
NULL = "\x1e"  # stands for SQL NULL in the canonical body; names cannot contain it


def now_us() -> int:
    return time.time_ns() // 1000


def canonical_body(
    seq: int, event_id: str, lineage: str, branch: str, node: str | None, kind: str,
    actor_kind: str, actor: str, actor_node: str | None, occurred_us: int, recorded_us: int,
    payload_json: str, schema_version: int, caused_by: str | None,
) -> str:
    """The bytes the hash covers (as UTF-8). Mirrored in SQL by ``lineage.verify``."""
    return SEP.join((
        str(seq), event_id, lineage, branch, NULL if node is None else node, kind,
        actor_kind, actor, NULL if actor_node is None else actor_node, str(occurred_us),
        str(recorded_us), payload_json, str(schema_version), NULL if caused_by is None else caused_by,
    ))


def chain_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256((prev_hash + SEP + body).encode()).hexdigest()
