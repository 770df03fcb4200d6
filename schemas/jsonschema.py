"""JSON Schema export, for producers written in other languages."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.envelope import COLUMNS
from schemas.payloads import MODELS, VERSION

_ENVELOPE_INPUT = {
    "lineage": {"type": "string", "minLength": 1, "description": "the campaign this event belongs to"},
    "branch": {"type": "string", "default": "main"},
    "node": {"type": ["string", "null"], "description": "the node this event is about"},
    "actor": {"type": "string", "pattern": "^(human|ai|system):.+$", "description": "who did it; required"},
    "actor_node": {"type": ["string", "null"], "description": "the node that acted (an AI actor that is itself part of the lineage)"},
    "occurred_at": {"type": "string", "format": "date-time", "description": "when it happened (UTC if no offset)"},
    "caused_by": {"type": ["string", "null"], "format": "uuid"},
    "event_id": {"type": "string", "format": "uuid", "description": "optional; makes re-sending idempotent (UUIDv7 recommended)"},
}


def kind_schema(kind: str) -> dict:
    """The schema of one inbox line of ``kind``: the envelope a producer writes plus its payload."""
    payload = MODELS[kind].model_json_schema()
    defs = payload.pop("$defs", None)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"lineage/{kind}.v{VERSION[kind]}.json",
        "title": f"lineage {kind} event",
        "type": "object",
        "required": ["lineage", "kind", "actor", "payload"],
        "properties": {
            **_ENVELOPE_INPUT,
            "kind": {"const": kind},
            "schema_version": {"const": VERSION[kind]},
            "payload": payload,
        },
        "additionalProperties": False,
    }
    if defs:
        schema["$defs"] = defs
    return schema


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in MODELS:
        path = out / f"{kind}.schema.json"
        path.write_text(json.dumps(kind_schema(kind), indent=2) + "\n")
        written.append(path)
    from schemas.event import EventEnvelope

    stored = out / "event.schema.json"
    stored.write_text(json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema",
                                  **EventEnvelope.model_json_schema()}, indent=2) + "\n")
    written.append(stored)
    index = {"columns": list(COLUMNS), "kinds": {k: f"{k}.schema.json" for k in MODELS},
             "stored_event": stored.name, "versions": VERSION}
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return written
