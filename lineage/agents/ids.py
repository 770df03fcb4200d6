"""Deterministic event ids, so importing the same history twice adds nothing.

An id is shaped like a UUIDv7 (the store's time-ordered id): its 48-bit timestamp is the
time the fact happened (a commit's author time), and its 74 random bits are taken from a
SHA-256 of what the event is about (lineage, source object, role). The same fact always
gets the same id, and ids still sort by time.
"""

from __future__ import annotations

import hashlib
import uuid

_MAX_MS = (1 << 48) - 1


def stable_event_id(occurred_us: int, *parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).digest()
    ms = min(max(occurred_us // 1000, 0), _MAX_MS)
    raw = bytearray(ms.to_bytes(6, "big") + digest[:10])
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(raw)))
