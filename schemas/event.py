"""A stored event as readers see it: the typed record behind a row of the `events` view.

Kept apart from ``schemas.envelope`` so that writing events never pays for importing
SQLModel; readers that want typed events (``Store.events()``, the JSON Schema of the
envelope) import it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from schemas.actor import ActorKind
from schemas.envelope import DEFAULT_BRANCH


class EventEnvelope(SQLModel):
    """One stored event (payload decoded)."""

    seq: int = Field(description="gap-free order in the store, from 1")
    event_id: str = Field(description="time-ordered UUIDv7")
    lineage: str
    branch: str = DEFAULT_BRANCH
    node: str | None = None
    kind: str
    actor_kind: ActorKind
    actor: str = Field(description="human:<name> | ai:<model-or-agent> | system:<tool>")
    actor_node: str | None = Field(default=None, description="the node that acted, when an AI actor is itself part of the lineage")
    occurred_at: datetime = Field(description="when the producer says it happened")
    recorded_at: datetime = Field(description="when the store recorded it")
    payload: dict[str, Any]
    schema_version: int
    caused_by: str | None = None
    prev_hash: str
    hash: str
