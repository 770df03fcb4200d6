"""Correcting who made a node: a new event, never an edit of an old one.

``lineage attribute NODE human:alice`` records one ``annotation`` on the node:

    {"topic": "attribution", "attribute_to": "human:alice",
     "events": [ids of the node's events it re-attributes],
     "previous": {event id: actor it had}, "kinds": [...], "reason": "...",
     "text": "attribution corrected: ..."}

recorded by the person correcting (``--by``). The corrected events keep their recorded
actor; readers use the *effective* actor: the ``attribute_to`` of the latest (highest
seq) attribution annotation listing the event, unless that annotation was retracted.
``EFFECTIVE_ACTORS_SQL`` computes it over the ``events`` view; involvement must use it,
and must not count attribution annotations themselves as part of a node's making.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterable
from typing import Any

from lineage.errors import LineageError
from lineage.query import run_query
from lineage.store import Store
from schemas import Draft, prepare
from schemas.actor import parse_actor

TOPIC = "attribution"
# The events whose actor the attribution rules decide: a node's making.
MAKING_KINDS = ("node_created", "proposal", "code_diff", "selection")

# One row per event: its recorded actor and its effective actor after corrections.
# Usable as a CTE or a view body over `events`.
EFFECTIVE_ACTORS_SQL = """
WITH retracted AS (
    SELECT DISTINCT json_extract_string(payload, '$.event_id') AS event_id
    FROM events WHERE kind = 'retraction'
),
corrections AS (
    SELECT c.seq, json_extract_string(c.payload, '$.attribute_to') AS actor, t.target
    FROM events c, unnest(CAST(json_extract(c.payload, '$.events') AS VARCHAR[])) AS t(target)
    WHERE c.kind = 'annotation' AND json_extract_string(c.payload, '$.topic') = 'attribution'
      AND c.event_id NOT IN (SELECT event_id FROM retracted WHERE event_id IS NOT NULL)
),
latest AS (
    SELECT target, arg_max(actor, seq) AS actor FROM corrections GROUP BY target
)
SELECT e.seq, e.event_id, e.lineage, e.branch, e.node, e.kind, e.actor AS recorded_actor,
       coalesce(l.actor, e.actor) AS actor,
       split_part(coalesce(l.actor, e.actor), ':', 1) AS actor_kind,
       l.actor IS NOT NULL AS corrected,
       e.occurred_at, e.payload
FROM events e LEFT JOIN latest l ON l.target = e.event_id
"""


def default_corrector() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip() or "unknown"
    return f"human:{name}"


def resolve_node(store: Store, node: str, lineage: str | None = None) -> tuple[str, str]:
    """(lineage, node) for a node id or a unique prefix of one (a short commit sha)."""
    params: list[Any] = [node]
    where = "kind = 'node_created' AND node = ?"
    if lineage:
        where += " AND lineage = ?"
        params.append(lineage)
    rows = run_query(store, f"SELECT DISTINCT lineage, node FROM events WHERE {where}", params).to_pylist()
    if not rows and len(node) >= 4:
        like = node.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where = "kind = 'node_created' AND node LIKE ? ESCAPE '\\'" + (" AND lineage = ?" if lineage else "")
        rows = run_query(store, f"SELECT DISTINCT lineage, node FROM events WHERE {where} LIMIT 11",
                         [like] + ([lineage] if lineage else [])).to_pylist()
    if not rows:
        raise LineageError(f"node {node!r} not found" + (f" in lineage {lineage!r}" if lineage else "")
                           + "; list nodes with `lineage log --kind node_created`")
    if len(rows) > 1:
        names = ", ".join(f"{r['lineage']}/{r['node']}" for r in rows[:10])
        raise LineageError(f"{node!r} matches several nodes ({names}); give more of the id or --lineage")
    return rows[0]["lineage"], rows[0]["node"]


def attribute_node(
    store: Store,
    node: str,
    actor: str,
    *,
    lineage: str | None = None,
    kinds: Iterable[str] | None = None,
    by: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Re-attribute a node's making events (``kinds``, default ``MAKING_KINDS``) to ``actor``.
    Returns the correction: its event id and the events it covers with their previous actors."""
    parse_actor(actor, field="actor")
    by = by or default_corrector()
    parse_actor(by, field="by")
    kinds = tuple(kinds or MAKING_KINDS)
    lineage, node = resolve_node(store, node, lineage)
    eff = run_query(store, f"SELECT event_id, kind, actor FROM ({EFFECTIVE_ACTORS_SQL}) "
                           "WHERE lineage = ? AND node = ? AND kind IN (SELECT unnest(?::VARCHAR[])) ORDER BY seq",
                    [lineage, node, list(kinds)]).to_pylist()
    if not eff:
        raise LineageError(f"node {node} has no {', '.join(kinds)} events to re-attribute")
    previous = {r["event_id"]: r["actor"] for r in eff}
    was = sorted(set(previous.values()))
    text = (f"attribution corrected: {', '.join(sorted({r['kind'] for r in eff}))} of node {node} "
            f"by {actor} (was {', '.join(was)})" + (f": {reason}" if reason else ""))
    payload: dict[str, Any] = {"text": text, "topic": TOPIC, "attribute_to": actor,
                               "events": list(previous), "previous": previous, "kinds": list(kinds)}
    if reason:
        payload["reason"] = reason
    prepared = prepare(Draft(lineage=lineage, kind="annotation", actor=by, node=node, payload=payload))
    with store.writer() as w:
        ack = w.append(prepared)
    return {"lineage": lineage, "node": node, "event_id": ack.event_id, "seq": ack.seq, "actor": actor,
            "by": by, "events": previous}


def effective_actors(store: Store, lineage: str | None = None) -> list[dict[str, Any]]:
    """Every event with its recorded and effective actor (corrections applied)."""
    sql = f"SELECT seq, event_id, lineage, node, kind, recorded_actor, actor, actor_kind, corrected FROM ({EFFECTIVE_ACTORS_SQL})"
    params: list[Any] = []
    if lineage:
        sql += " WHERE lineage = ?"
        params.append(lineage)
    return run_query(store, sql + " ORDER BY seq", params).to_pylist()


__all__ = ["EFFECTIVE_ACTORS_SQL", "MAKING_KINDS", "TOPIC", "attribute_node", "default_corrector",
           "effective_actors", "resolve_node"]
