"""The SDK a loop uses: a Tracker per lineage, a context manager per node.

    from lineage import Tracker
    with Tracker(".lineage", lineage="packing", actor="ai:gpt-5") as t:
        with t.node(parents=[best], label="try best-fit") as n:
            n.proposal("sort items first", actor="ai:gpt-5")
            n.code_diff(before="gen3/", after="gen4/")
            n.score("fill", 0.93, split="eval", actor="system:evaluator")

Every event needs an actor. A Tracker or node may be given a default actor explicitly;
with none given anywhere, recording raises instead of guessing.

Two ways to write. Direct (default): events go straight into the store's DuckDB file,
one durable commit each, and the file is released whenever the loop is idle so readers
and other writers get in. Inbox (``inbox=True``): events are appended as JSONL lines to
a file of this process in ``inbox/`` and fsynced; the process never opens DuckDB, which
suits parallel workers; ``lineage ingest``/``watch`` moves them into the log.
"""

from __future__ import annotations

import os
import traceback
import uuid
from collections.abc import Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from lineage.inbox import mark_done
from lineage.objects import sha256_file
from lineage.store import Store, Stored, Writer
from lineage.trees import diff_stats, diff_trees, manifest, manifest_hash, read_tree, tree_hash
from schemas import Draft, SchemaError, prepare
from schemas.actor import parse_actor
from schemas.envelope import from_us


def _as_tree(value: str | os.PathLike | Mapping[str, bytes | str]) -> dict[str, bytes]:
    if isinstance(value, Mapping):
        return {k: v.encode() if isinstance(v, str) else v for k, v in value.items()}
    return read_tree(value)


class Tracker:
    def __init__(
        self,
        store: str | os.PathLike | Store | None = None,
        *,
        lineage: str,
        branch: str = "main",
        actor: str | None = None,
        inbox: bool = False,
        idle_release: float = 0.25,
        max_hold: float = 1.0,
    ):
        self.store = store if isinstance(store, Store) else (Store.open(store) if inbox else Store.init(store))
        self.lineage = lineage
        self.branch = branch
        self.actor = actor
        if actor is not None:
            parse_actor(actor)
        self._inbox_file = None
        self._writer: Writer | None = None
        # Shared by every branch fork of this tracker: one batch, one view of generations.
        self._shared = _Shared()
        if inbox:
            self.store.inbox.mkdir(parents=True, exist_ok=True)
            name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self._inbox_path = self.store.inbox / name
            self._inbox_file = open(self._inbox_path, "ab")  # noqa: SIM115 - lives as long as the tracker
        else:
            self._writer = self.store.writer(idle_release=idle_release, max_hold=max_hold)

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._inbox_file is not None and not self._inbox_file.closed:
            self._inbox_file.close()
            # Every line is fsynced already: the marker says no more will come, so `lineage
            # watch` may move the file out of the inbox once it has ingested all of it.
            mark_done(self._inbox_path)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- recording -----------------------------------------------------------------

    def record(
        self,
        kind: str,
        payload: Mapping[str, Any] | None = None,
        *,
        node: str | None = None,
        actor: str | None = None,
        actor_node: str | None = None,
        occurred_at: datetime | str | None = None,
        caused_by: str | None = None,
        event_id: str | None = None,
        branch: str | None = None,
    ) -> Stored | str:
        """Record one event. Returns the store's acknowledgement (seq, id, hash); in inbox
        mode or inside ``batch()``, the event id."""
        draft = Draft(
            lineage=self.lineage, branch=branch or self.branch, kind=kind, actor=actor or self.actor,
            payload=dict(payload or {}), node=node, actor_node=actor_node, occurred_at=occurred_at,
            caused_by=caused_by, event_id=event_id,
        )
        prepared = prepare(draft)
        if self._shared.batch is not None:
            self._shared.batch.append(prepared)
            return prepared.event_id
        if self._inbox_file is not None:
            self._write_inbox([prepared])
            return prepared.event_id
        return self._writer.append(prepared)

    @contextmanager
    def batch(self):
        """Group commit: events recorded inside are validated as they come and appended in
        one transaction at the end (all or nothing)."""
        shared = self._shared
        if shared.batch is not None:
            yield self
            return
        shared.batch = []
        try:
            yield self
            pending, shared.batch = shared.batch, None
            if self._inbox_file is not None:
                self._write_inbox(pending)
            else:
                self._writer.append_many(pending)
        finally:
            shared.batch = None

    def _write_inbox(self, events) -> None:
        lines = b"".join(
            orjson.dumps({
                "event_id": e.event_id, "lineage": e.lineage, "branch": e.branch, "node": e.node,
                "kind": e.kind, "actor": e.actor, "actor_node": e.actor_node,
                "occurred_at": _iso(e.occurred_us), "caused_by": e.caused_by,
                "schema_version": e.schema_version, "payload": orjson.Fragment(e.payload_json),
            }) + b"\n"
            for e in events
        )
        self._inbox_file.write(lines)
        self._inbox_file.flush()
        os.fsync(self._inbox_file.fileno())

    # -- nodes ---------------------------------------------------------------------

    def node(
        self,
        node_id: str | None = None,
        *,
        parents: Sequence[str] = (),
        label: str | None = None,
        actor: str | None = None,
        actor_node: str | None = None,
        **extra: Any,
    ) -> NodeRecorder:
        """Create a node (records ``node_created``) and return a recorder for its events."""
        node_id = node_id or f"n-{uuid.uuid4().hex[:12]}"
        parents = list(parents)
        payload = {"parents": parents, **({"label": label} if label else {}), **extra}
        self.record("node_created", payload, node=node_id, actor=actor, actor_node=actor_node)
        generations = self._shared.generation
        known = [generations[p] for p in parents if p in generations]
        generations[node_id] = (max(known) + 1) if known else (0 if not parents else 1)
        return NodeRecorder(self, node_id, actor=actor, actor_node=actor_node)

    def generation(self, node_id: str) -> int | None:
        """Generation of a node this tracker created: depth from a root (parents unknown here count as roots)."""
        return self._shared.generation.get(node_id)

    def select(self, node: str, *, actor: str | None = None, purpose: str = "best", reason: str | None = None,
               on_node: str | None = None, **extra: Any):
        """Stage *choose*: record that ``node`` was chosen (as best, or as a parent)."""
        fields, envelope = _split(extra)
        payload = {"node": node, "purpose": purpose, **({"reason": reason} if reason else {}), **fields}
        return self.record("selection", payload, node=on_node or node, actor=actor, **envelope)

    def branch_from(self, node: str, name: str, *, actor: str | None = None) -> Tracker:
        """Fork a branch at ``node``; later events recorded through the returned tracker go to it."""
        self.record("branch_created", {"name": name, "from_node": node, "from_branch": self.branch}, node=node, actor=actor, branch=name)
        forked = object.__new__(type(self))
        forked.__dict__.update(self.__dict__)  # same writer, same shared batch state
        forked.branch = name
        return forked

    def put_object(self, data: bytes | str) -> str:
        return self.store.objects.put(data)


class NodeRecorder:
    """Records the making of one node. Every method takes ``actor=``; the node's default
    actor (or the tracker's) applies when it is omitted."""

    def __init__(self, tracker: Tracker, node_id: str, *, actor: str | None, actor_node: str | None):
        self.tracker = tracker
        self.id = node_id
        self.actor = actor
        self.actor_node = actor_node

    def __enter__(self) -> NodeRecorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and not isinstance(exc, SchemaError):
            # The loop crashed while building this node: keep that as a fact of its history.
            text = "".join(traceback.format_exception_only(exc_type, exc)).strip()
            with suppress(Exception):  # never mask the loop's own exception
                self.record("annotation", {"text": f"node building failed: {text}", "topic": "failure"}, actor="system:lineage")

    @property
    def generation(self) -> int | None:
        return self.tracker.generation(self.id)

    def record(self, kind: str, payload: Mapping[str, Any], *, actor: str | None = None, actor_node: str | None = None, **envelope):
        """Record any event about this node. Without ``actor``, the node's default actor
        (and its ``actor_node``) applies; an explicit actor comes with its own actor_node."""
        if actor is None:
            actor = self.actor or self.tracker.actor
            actor_node = actor_node if actor_node is not None else self.actor_node
        return self.tracker.record(kind, payload, node=self.id, actor=actor, actor_node=actor_node, **envelope)

    def _emit(self, kind: str, payload: dict[str, Any], actor: str | None, extra: dict[str, Any]):
        fields, envelope = _split(extra)
        return self.record(kind, {**payload, **fields}, actor=actor, **envelope)

    def proposal(self, idea: str, rationale: str | None = None, *, actor: str | None = None, **extra):
        return self._emit("proposal", {"idea": idea, **({"rationale": rationale} if rationale else {})}, actor, extra)

    def code_diff(
        self,
        diff: str | None = None,
        *,
        before: str | os.PathLike | Mapping | None = None,
        after: str | os.PathLike | Mapping | None = None,
        snapshot: bool = False,
        actor: str | None = None,
        **extra,
    ):
        """Stage *implement*. Give a unified diff text, or two trees (directories or
        ``{path: content}`` mappings) and the diff is computed. With trees, the base and
        result tree hashes are recorded; ``snapshot=True`` also stores every file of the
        result so replay can start from here instead of from the root."""
        objects = self.tracker.store.objects
        payload: dict[str, Any] = {}
        if diff is not None:
            try:
                files = diff_stats(diff)
            except ValueError as exc:
                raise SchemaError([("payload.diff", str(exc))], kind="code_diff") from None
        elif after is not None:
            old = _as_tree(before) if before is not None else {}
            new = _as_tree(after)
            diff, files = diff_trees(old, new)
            for f in files:
                if f["change"] == "binary" and "object" in f:
                    objects.put(new[f["path"]])
            payload["base_tree"] = tree_hash(old)
            payload["result_tree"] = tree_hash(new)
            if snapshot:
                files_map = manifest(new)
                for _path, data in new.items():
                    objects.put(data)
                payload["snapshot_object"] = objects.put(orjson.dumps(files_map, option=orjson.OPT_SORT_KEYS))
                assert manifest_hash(files_map) == payload["result_tree"]
        else:
            raise TypeError("code_diff needs a diff text, or after= (and before=) trees")
        payload["diff_object"] = objects.put(diff)
        payload["files"] = files
        payload["paths"] = [f["path"] for f in files]
        payload["lines_added"] = sum(f["lines_added"] for f in files)
        payload["lines_removed"] = sum(f["lines_removed"] for f in files)
        return self._emit("code_diff", payload, actor, extra)

    def dataset(self, name: str, *, role: str, path: str | os.PathLike | None = None, uri: str | None = None,
                rows: int | None = None, actor: str | None = None, **extra):
        """Stage *experiment*: a dataset; with ``path`` the file is hashed (and kept as an object when small)."""
        payload: dict[str, Any] = {"name": name, "role": role}
        if path is not None:
            p = Path(path)
            payload["content_hash"] = _hash_file(p)
            payload["bytes"] = p.stat().st_size
            payload.setdefault("uri", uri or str(p))
        elif uri:
            payload["uri"] = uri
        if rows is not None:
            payload["rows"] = rows
        return self._emit("dataset", payload, actor, extra)

    def run(self, command: Sequence[str] | str, *, status: str, seed: int | None = None,
            environment: Mapping[str, str] | None = None, duration_s: float | None = None,
            cost: Mapping[str, Any] | None = None, actor: str | None = None, **extra):
        payload: dict[str, Any] = {"command": list(command) if not isinstance(command, str) else command, "status": status}
        if seed is not None:
            payload["seed"] = seed
        if environment:
            payload["environment"] = dict(environment)
        if duration_s is not None:
            payload["duration_s"] = duration_s
        if cost:
            payload["cost"] = dict(cost)
        return self._emit("run", payload, actor, extra)

    def checkpoint(self, path: str | os.PathLike | None = None, *, uri: str | None = None, step: int | None = None,
                   actor: str | None = None, **extra):
        payload: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            payload["content_hash"] = _hash_file(p)
            payload["bytes"] = p.stat().st_size
        payload["uri"] = uri or str(path)
        if step is not None:
            payload["step"] = step
        return self._emit("checkpoint", payload, actor, extra)

    def score(self, metric: str, value: float, *, split: str = "public", higher_is_better: bool = True,
              actor: str | None = None, **extra):
        return self._emit("score", {"metric": metric, "value": value, "split": split, "higher_is_better": higher_is_better}, actor, extra)

    def scores(self, metrics: Mapping[str, float], *, split: str = "public", actor: str | None = None) -> list:
        return [self.score(m, v, split=split, actor=actor) for m, v in metrics.items()]

    def review(self, verdict: str, text: str | None = None, *, actor: str | None = None, **extra):
        return self._emit("review", {"verdict": verdict, **({"text": text} if text else {})}, actor, extra)

    def annotate(self, text: str, *, topic: str | None = None, actor: str | None = None, **extra):
        return self._emit("annotation", {"text": text, **({"topic": topic} if topic else {})}, actor, extra)

    def select(self, *, purpose: str = "best", reason: str | None = None, actor: str | None = None, **extra):
        if actor is None:
            actor = self.actor or self.tracker.actor
            extra.setdefault("actor_node", self.actor_node)
        return self.tracker.select(self.id, actor=actor, purpose=purpose, reason=reason, **extra)


def _hash_file(path: Path) -> str:
    return sha256_file(path)


def _iso(us: int) -> str:
    return from_us(us).isoformat()


class _Shared:
    __slots__ = ("batch", "generation")

    def __init__(self) -> None:
        self.batch: list | None = None
        self.generation: dict[str, int] = {}


# Keyword arguments of the recorder helpers that belong to the envelope, not the payload.
_ENVELOPE_KEYS = ("actor_node", "occurred_at", "caused_by", "event_id")


def _split(extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    envelope = {k: extra.pop(k) for k in _ENVELOPE_KEYS if k in extra}
    return extra, envelope


__all__ = ["NodeRecorder", "Tracker"]
