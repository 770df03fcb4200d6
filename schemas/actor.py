"""Actors: who did something. ``human:<name>``, ``ai:<model-or-agent>``, ``system:<tool>``."""

from __future__ import annotations

import re
from enum import StrEnum

from schemas.errors import SchemaError


class ActorKind(StrEnum):
    human = "human"
    ai = "ai"
    system = "system"


# What a name may hold, stated once: ingest checks whole columns of names by it too.
NAME_MAX = 300  # characters
CONTROL = r"\x00-\x1f\x7f"  # a regex class body: characters no name may hold

# An actor's name is any printable text without control characters; the kind prefix is
# strict so that `Human:Bob` or `bot:x` are refused rather than guessed at.
# (fullmatch, not ^...$: "$" would let a trailing newline through)
_ACTOR = re.compile(f"(human|ai|system):([^{CONTROL}]{{1,200}})")


def parse_actor(actor: object, *, field: str = "actor") -> tuple[ActorKind, str]:
    """Split ``kind:name``; raise SchemaError naming ``field`` if it is not an actor."""
    if actor is None or actor == "":
        raise SchemaError(
            [(field, "an actor is required: 'human:<name>', 'ai:<model-or-agent>' or 'system:<tool>'")]
        )
    if not isinstance(actor, str):
        raise SchemaError([(field, f"expected a string like 'ai:gpt-5', got {type(actor).__name__}")])
    m = _ACTOR.fullmatch(actor)
    if not m or not m.group(2).strip():
        raise SchemaError(
            [(field, f"{actor!r} is not an actor: expected 'human:<name>', 'ai:<model-or-agent>' or 'system:<tool>'")]
        )
    return ActorKind(m.group(1)), m.group(2)


_NAME = re.compile(f"[^{CONTROL}]{{1,{NAME_MAX}}}")  # whole: fullmatch


def check_name(value: object, field: str, *, required: bool = True) -> str | None:
    """Names (lineage, branch, node) are non-empty printable text; control characters would
    break the canonical serialization that the hash chain is computed over."""
    if value is None:
        if required:
            raise SchemaError([(field, "is required")])
        return None
    if not isinstance(value, str):
        raise SchemaError([(field, f"expected a string, got {type(value).__name__}")])
    if not _NAME.fullmatch(value):
        raise SchemaError([(field, f"expected 1-{NAME_MAX} printable characters (no control characters)")])
    return value
