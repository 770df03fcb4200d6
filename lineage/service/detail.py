"""One node's detail, as ``LineageService`` reads it: header, events, diffs, scores, artifacts,
involvement and signals.

The detail of one node reads its own events directly (bounded by the seqs on its row, so
the scan skips the rest of the log) and involvement and signals come from the
projections, so the numbers the UI shows are the ones ``lineage sql`` shows. Artifacts
are checked against their recorded hashes here (``_integrity``), never more than
``HASH_LIMIT`` bytes per file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from lineage import involvement as involvement_mod
from lineage import signals as signals_mod
from lineage.errors import ObjectMissing
from lineage.node_index import STANDING_RETRACTIONS
from lineage.objects import sha256_file
from lineage.service.rows import (
    ArtifactRow,
    DiffEntry,
    EventRow,
    NodeDetail,
    NodeRow,
    ScoreRow,
    SignalRow,
)
from lineage.store import Store
from lineage.summary import summarize

LEVELS = involvement_mod.LEVELS
STAGES = involvement_mod.STAGES
# Files up to this size are re-hashed to check an artifact's integrity; bigger ones are
# only checked for presence and size, so opening a node never reads gigabytes.
HASH_LIMIT = 64 << 20


class NodeDetailReads:
    """The detail pane's tabs for one node (a mixin of ``LineageService``: needs
    ``ServiceBase`` for its queries and ``TreeReads`` for the node's row)."""

    # -- one node --------------------------------------------------------------------------------

    def node_detail(self, lineage: str, node: str, row: NodeRow | None = None) -> NodeDetail | None:
        """The header of a node: its row, which parents exist, which nodes merged it in.
        Given the row, costs a query only for a node with missing parents or merge children."""
        row = row or self.node(lineage, node)
        if row is None:
            return None
        parents = list(dict.fromkeys(row.parents))
        if row.missing_parent and parents:
            earlier = {r["node"] for r in self._rows(
                "SELECT node FROM node_index WHERE lineage = $lineage AND node IN (SELECT unnest($p)) "
                "AND created_seq < $seq", {"lineage": lineage, "p": parents, "seq": row.created_seq or 0})}
        else:
            earlier = set(parents)
        merged: tuple[str, ...] = ()
        if row.links:
            merged = tuple(r["node"] for r in self._rows(
                "SELECT node FROM node_links WHERE lineage = ? AND parent = ? ORDER BY seq", [lineage, node]))
        known = tuple(p for p in parents if p in earlier)
        missing = tuple(p for p in parents if p not in earlier)
        return NodeDetail(row, row.created_at, row.created_by, known, missing, merged)

    def node_events(self, lineage: str, node: str, *, within: tuple[int | None, int | None] | None = None,
                    limit: int = 5000) -> list[EventRow]:
        """The events recorded on a node, and selections that chose it, oldest first.
        ``within``: the node's (first_seq, last_seq) from its row; the scan then skips the
        rest of the log."""
        lo, hi = within if within else (None, None)
        rows = self._rows(
            f"""WITH e AS (
                    SELECT seq, event_id, branch, kind, actor_kind, actor, actor_node, occurred_at,
                           payload::VARCHAR AS payload, caused_by
                    FROM events WHERE lineage = $lineage AND node = $node
                      AND seq >= coalesce($lo, 0) AND seq <= coalesce($hi, 9223372036854775807)
                    UNION ALL
                    SELECT seq, event_id, branch, kind, actor_kind, actor, actor_node, occurred_at,
                           payload::VARCHAR AS payload, caused_by
                    FROM events WHERE lineage = $lineage AND kind = 'selection' AND node IS DISTINCT FROM $node
                      AND payload->>'node' = $node
                )
                SELECT e.*, e.event_id IN {STANDING_RETRACTIONS} AS retracted FROM e ORDER BY seq LIMIT {int(limit)}""",
            {"lineage": lineage, "node": node, "lo": lo, "hi": hi},
        )
        return [_event_row(r) for r in rows]

    def events_by_id(self, ids: Sequence[str]) -> list[EventRow]:
        if not ids:
            return []
        rows = self._rows(
            f"""SELECT seq, event_id, branch, kind, actor_kind, actor, actor_node, occurred_at, payload::VARCHAR AS payload,
                       caused_by, event_id IN {STANDING_RETRACTIONS} AS retracted
                FROM events WHERE event_id IN (SELECT unnest($ids)) ORDER BY seq""",
            {"ids": list(ids)},
        )
        return [_event_row(r) for r in rows]

    def node_diffs(self, lineage: str, node: str, *, within: tuple[int | None, int | None] | None = None
                   ) -> list[DiffEntry]:
        """The node's code diffs, with their text from the object store (checked against its hash)."""
        out = []
        for e in self.node_events(lineage, node, within=within):
            if e.kind != "code_diff" or e.retracted:
                continue
            p = e.payload
            digest = p.get("diff_object")
            text, problem = None, None
            if digest:
                try:
                    text = self.store.objects.verified(digest).decode("utf-8", errors="replace")
                except ObjectMissing as exc:
                    problem = str(exc)
            else:
                problem = "this diff was recorded without its text (no diff_object)"
            out.append(DiffEntry(e.seq, e.event_id, e.actor, tuple(p.get("paths") or ()), int(p.get("lines_added") or 0),
                                 int(p.get("lines_removed") or 0), text, problem))
        return out

    def node_scores(self, lineage: str, node: str) -> list[ScoreRow]:
        rows = self._rows(
            f"""WITH s AS (
                    SELECT node, metric, split, value, higher_is_better, actor, seq, event_id,
                           event_id IN {STANDING_RETRACTIONS} AS retracted
                    FROM score_index WHERE lineage = $lineage AND node IN ($node, (SELECT parent FROM node_index
                        WHERE lineage = $lineage AND node = $node))
                ),
                mine AS (SELECT * FROM s WHERE node = $node),
                parent AS (SELECT metric, split, arg_max(value, seq) AS value FROM s
                           WHERE node <> $node AND NOT retracted GROUP BY ALL)
                SELECT m.*, p.value AS parent_value,
                       m.seq = max(m.seq) FILTER (WHERE NOT m.retracted) OVER (PARTITION BY m.metric, m.split) AS latest,
                       e.occurred_at
                FROM mine m LEFT JOIN parent p USING (metric, split)
                JOIN events e ON e.event_id = m.event_id AND e.seq = m.seq
                ORDER BY m.metric, m.split, m.seq""",
            {"lineage": lineage, "node": node},
        )
        return [ScoreRow(r["metric"], r["split"], r["value"], r["higher_is_better"], r["actor"], r["seq"],
                         r["event_id"], r["occurred_at"], bool(r["latest"]), r["retracted"], r["parent_value"])
                for r in rows]

    def node_artifacts(self, lineage: str, node: str, *, within: tuple[int | None, int | None] | None = None
                       ) -> list[ArtifactRow]:
        """Datasets, checkpoints, diffs and snapshots of a node, each with its integrity:
        ``ok`` (the bytes still hash to the recorded hash), ``modified``, ``missing``,
        ``unchecked`` (a remote URI, or a file too large to re-hash here) or ``no-hash``."""
        out = []
        for e in self.node_events(lineage, node, within=within):
            if e.retracted:
                continue
            p = e.payload
            if e.kind == "dataset":
                out.append(self._artifact("dataset", p.get("name"), p.get("role"), p.get("uri"), p.get("content_hash"),
                                          p.get("bytes"), p.get("rows"), None, e))
            elif e.kind == "checkpoint":
                out.append(self._artifact("checkpoint", p.get("name"), None, p.get("uri"), p.get("content_hash"),
                                          p.get("bytes"), None, p.get("step"), e))
            elif e.kind == "code_diff":
                if p.get("diff_object"):
                    out.append(self._artifact("diff", ", ".join(p.get("paths") or [])[:80] or None, None, None,
                                              p["diff_object"], None, None, None, e))
                if p.get("snapshot_object"):
                    out.append(self._artifact("snapshot", None, None, None, p["snapshot_object"], None, None, None, e))
        return out

    def _artifact(self, artifact, name, role, uri, digest, size, rows, step, e: EventRow) -> ArtifactRow:
        integrity, detail = _integrity(self.store, uri, digest, size)
        return ArtifactRow(artifact, name, role, uri, digest, size, rows, step, e.actor, e.seq, integrity, detail)

    def node_involvement(self, lineage: str, node: str) -> dict | None:
        """The ``involvement`` row of a node (shares, stages, level, self-built, recursion
        depth), plus ``stage_counts``: for each stage, its events by actor kind."""
        with self._lock.read():
            rows = involvement_mod.nodes(self.store, lineage=lineage, node_id=node)
        if not rows:
            return None
        from schemas.payloads import STAGE  # pydantic models: not loaded for the first screen

        row = rows[0]
        counts: dict[str, dict[str, int]] = {s: {"human": 0, "ai": 0, "system": 0} for s in STAGES}
        for e in self.node_events(lineage, node):
            stage = STAGE.get(e.kind)
            if stage and not e.retracted and e.actor_kind in counts[stage]:
                counts[stage][e.actor_kind] += 1
        row["stage_counts"] = counts
        row["level_text"] = LEVELS.get(row.get("autonomy_level"), "level unknown: no human or AI event")
        return row

    def node_signals(self, lineage: str, node: str) -> list[SignalRow]:
        with self._lock.read():
            found = signals_mod.signals(self.store, lineage=lineage, node_id=node)
        evidence = {e.event_id: e for e in self.events_by_id([i for f in found for i in f["evidence"]])}
        return [SignalRow(f["node"], f["signal"], f["severity"], f["metric"], f["detail"],
                          tuple(evidence[i] for i in f["evidence"] if i in evidence), f["seq"]) for f in found]


def _event_row(r: dict) -> EventRow:
    payload = orjson.loads(r["payload"]) if isinstance(r["payload"], str) else (r["payload"] or {})
    return EventRow(r["seq"], r["event_id"], r["branch"], r["kind"], r["actor_kind"], r["actor"], r["actor_node"],
                    r["occurred_at"], payload, summarize(r["kind"], payload), r["caused_by"], bool(r["retracted"]))


def _integrity(store: Store, uri: str | None, digest: str | None, size: int | None) -> tuple[str, str]:
    if digest and store.objects.has(digest):
        try:
            store.objects.verified(digest)
            return "ok", "object store: bytes match the recorded sha256"
        except ObjectMissing:
            return "modified", f"object {digest[:12]} no longer matches its hash; run `lineage verify`"
    local = _local_path(uri)
    if local is None:
        if digest:
            return ("unchecked", f"remote ({uri})") if uri else ("missing", f"object {digest[:12]} is not in the store")
        return "no-hash", "recorded without a content hash" + (f" ({uri})" if uri else "")
    if not local.exists():
        return "missing", f"{local} is gone"
    if not digest:
        return "no-hash", f"{local} exists; no content hash was recorded"
    actual = local.stat().st_size
    if size is not None and actual != size:
        return "modified", f"{local} is {actual} bytes, recorded {size}"
    if actual > HASH_LIMIT:
        return "unchecked", f"{local} present ({actual} bytes), too large to re-hash here"
    if sha256_file(local) != digest:
        return "modified", f"{local} no longer matches its recorded sha256"
    return "ok", f"{local}: bytes match the recorded sha256"


def _local_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    if uri.startswith("file://"):
        return Path(uri[7:])
    if "://" in uri:
        return None
    return Path(uri).expanduser()
