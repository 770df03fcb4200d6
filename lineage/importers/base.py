"""What every importer shares: deterministic event ids, payload cleaning, objects, batching.

An importer reads a loop's archive record by record and hands each fact to an
``ImportSession``. The session

- gives every event a deterministic id: ``uuid5(format, lineage, record key, role)``, so
  importing the same source twice appends nothing the second time
  (``Writer.append_many(..., skip_existing=True)``);
- cleans payloads so nothing the source said is refused or dropped: non-finite numbers in
  fields without a schema place become the strings ``"Infinity"``, ``"-Infinity"`` and
  ``"NaN"``; a field whose JSON text is over ``SPILL_BYTES`` moves to the object store and
  the payload keeps ``{"$object": sha256, "bytes": n, "format": "text" | "json"}`` under the
  same key;
- stores code, diffs and transcripts as content-addressed objects;
- validates each event with ``prepare()``; an event the schema refuses is not lost but
  recorded as an ``annotation`` (topic ``unmapped``) carrying the raw record and the
  reason, and listed in the summary;
- appends in batches of ``batch_size`` (one transaction each) and counts a summary.

Memory: the session holds at most one batch of prepared events (``batch_size``, default
2,000), the digests of the last ``OBJECTS_REMEMBERED`` objects it wrote, and the summary
(which lists unmapped records and missing parents, so it grows with how broken the source
is, not with its size).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from lineage.store import Store, Writer
from lineage.trees import diff_stats, diff_trees, manifest, manifest_hash, tree_hash
from schemas import Draft, SchemaError, prepare
from schemas.payloads import MODELS

# Fixed namespace of importer event ids (uuid5). Never change it: ids of imported events
# would change and a re-import would duplicate everything.
NAMESPACE = uuid.UUID("6f1d3c8e-2b7a-5d41-9e0c-4a6b8f2d1c37")

SPILL_BYTES = 32 * 1024  # a payload field larger than this (as JSON text) goes to the object store
MAX_OBJECT_BYTES = 64 * 1024 * 1024  # a source file larger than this is hashed, not copied
OBJECTS_REMEMBERED = 8_192  # digests a session remembers as written (beyond that it stats the file)
IMPORT_ACTOR = "system:lineage-import"

_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}

# Metric names that are usually minimised. A guess, recorded as such in the payload
# (``higher_is_better_inferred: true``) so a reader knows the source did not say.
_LOWER_IS_BETTER = re.compile(
    r"(loss|error|err\b|_err|mse|mae|rmse|perplexity|ppl|latency|time|duration|seconds|regret|"
    r"\bkl\b|kl_|divergence|miss|cost|memory|bytes|size|complexity)", re.I)


def infer_higher_is_better(metric: str) -> bool:
    return not _LOWER_IS_BETTER.search(metric)


def non_finite_text(x: float) -> str:
    return "NaN" if math.isnan(x) else _NON_FINITE[x]


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def merge(source: Mapping[str, Any], ours: Mapping[str, Any]) -> dict:
    """The source record's fields plus ours. Where a source field has the name of one of
    ours and another value, it is kept as ``source_<name>``: nothing is overwritten."""
    out = dict(source)
    for k, v in ours.items():
        if k in out and out[k] != v:
            out[f"source_{k}"] = out[k]
        out[k] = v
    return out


def scorable(v: Any) -> bool:
    """A metric value that can be a score event: a finite number or a boolean (as 1.0/0.0)."""
    return isinstance(v, bool) or (is_number(v) and math.isfinite(v))


def clean(value: Any) -> Any:
    """JSON-safe copy of a source value. Non-finite floats become strings; tuples become
    lists; non-string keys become strings; text with lone surrogates is escaped."""
    if isinstance(value, float):
        return value if math.isfinite(value) else non_finite_text(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [clean(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    return str(value)


def slug(text: str, n: int = 48) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:n].rstrip("-") or "x"


def file_time(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def read_text(path: Path) -> str:
    """A source text file, decoded as UTF-8 with undecodable bytes replaced (the exact
    bytes are kept as an object where it matters)."""
    return path.read_bytes().decode("utf-8", errors="replace")


def load_json_text(text: str) -> Any:
    """Python's json parser: accepts the non-standard -Infinity, Infinity and NaN literals
    that OpenEvolve and other loops write."""
    import json

    return json.loads(text)


def iter_concatenated_json(text: str) -> Iterable[tuple[int, Any]]:
    """Objects of a JSONL file, or of several pretty-printed JSON objects written one
    after another (DGM's ``dgm_metadata.jsonl`` is the latter). Yields (offset, value);
    raises ValueError with the offset on garbage."""
    import json

    dec = json.JSONDecoder()
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return
        value, end = dec.raw_decode(text, i)
        yield i, value
        i = end


@dataclass
class Unmapped:
    source: str
    reason: str


@dataclass
class ImportSummary:
    format: str
    source: str
    lineages: list[str] = field(default_factory=list)
    records: int = 0          # source records read
    nodes: int = 0            # nodes found in the source
    events: int = 0           # events this import appended
    skipped: int = 0          # events already in the store (an earlier import of the same source)
    objects: int = 0          # objects written or referenced (a repeat long after is counted again)
    by_kind: dict[str, int] = field(default_factory=dict)
    unmapped: list[Unmapped] = field(default_factory=list)
    missing_parents: dict[str, list[str]] = field(default_factory=dict)  # node -> parents not in the source
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_events(self) -> int:
        return self.events + self.skipped

    def as_dict(self) -> dict:
        return {
            "format": self.format, "source": self.source, "lineages": self.lineages,
            "records": self.records, "nodes": self.nodes, "events": self.events,
            "skipped_existing": self.skipped, "objects": self.objects, "by_kind": self.by_kind,
            "unmapped": [{"source": u.source, "reason": u.reason} for u in self.unmapped],
            "missing_parents": self.missing_parents, "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
        }


Progress = Callable[[int, str | None], None]


class ImportSession:
    """Turns source facts into stored events. Use as a context manager; ``summary`` holds
    the counts once it is closed."""

    def __init__(
        self,
        store: Store,
        fmt: str,
        source: str | os.PathLike,
        *,
        batch_size: int = 2000,
        progress: Progress | None = None,
        spill_bytes: int = SPILL_BYTES,
    ):
        self.store = store
        self.format = fmt
        self.batch_size = batch_size
        self.progress = progress
        self.spill_bytes = spill_bytes
        self.summary = ImportSummary(format=fmt, source=str(source))
        self._pending: list = []
        self._writer: Writer | None = None
        self._started = time.perf_counter()
        self._objects_seen: LRU = LRU(OBJECTS_REMEMBERED)  # digests known to be on disk (bounded)
        self._declared = {kind: set(model.model_fields) for kind, model in MODELS.items()}

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> ImportSession:
        if not self.store.exists():
            Store.init(self.store.root)
        self._writer = self.store.writer(max_hold=2.0)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.flush()
            self._sync_objects()
        finally:
            if self._writer is not None:
                self._writer.close()
            self.summary.seconds = time.perf_counter() - self._started

    # -- identity --------------------------------------------------------------------------

    def event_id(self, lineage: str, record: str, role: str) -> str:
        return str(uuid.uuid5(NAMESPACE, "\x1f".join((self.format, lineage, record, role))))

    def add_lineage(self, name: str) -> None:
        if name not in self.summary.lineages:
            self.summary.lineages.append(name)

    # -- progress and counts ---------------------------------------------------------------

    def advance(self, n: int = 1, description: str | None = None) -> None:
        self.summary.records += n
        if self.progress is not None:
            self.progress(n, description)

    def node_found(self) -> None:
        self.summary.nodes += 1

    def missing_parent(self, node: str, parent: str) -> None:
        self.summary.missing_parents.setdefault(node, []).append(parent)

    def warn(self, text: str) -> None:
        self.summary.warnings.append(text)

    # -- objects ---------------------------------------------------------------------------

    def put_object(self, data: bytes | str) -> str:
        """Store content by SHA-256, durable with the next batch (``ObjectStore.sync`` runs
        just before the batch's events commit, so no event names an object a crash lost)."""
        if isinstance(data, str):
            data = data.encode()
        digest = hashlib.sha256(data).hexdigest()
        if self._objects_seen.get(digest) is None:
            self._objects_seen.put(digest, True)
            self.summary.objects += 1
            self.store.objects.put(data, durable=False)
        return digest

    def _sync_objects(self) -> None:
        self.store.objects.sync()

    def put_file(self, path: Path) -> dict:
        """A source file as an object reference: {"sha256", "bytes"}; files over
        MAX_OBJECT_BYTES are hashed in place and marked ``stored: false``."""
        size = path.stat().st_size
        if size > MAX_OBJECT_BYTES:
            from lineage.objects import sha256_file

            return {"sha256": sha256_file(path), "bytes": size, "stored": False}
        return {"sha256": self.put_object(path.read_bytes()), "bytes": size}

    def spill(self, value: Any) -> Any:
        """Move a large value to the object store; small ones are returned as they are."""
        if isinstance(value, str):
            if len(value) <= self.spill_bytes // 4 or len(value.encode()) <= self.spill_bytes:
                return value
            return {"$object": self.put_object(value), "bytes": len(value.encode()), "format": "text"}
        if isinstance(value, dict | list):
            text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
            if len(text) <= self.spill_bytes:
                return value
            if isinstance(value, dict):
                # Keep the small fields inline and spill only the large ones.
                out = {k: self.spill(v) for k, v in value.items()}
                if len(orjson.dumps(out)) <= self.spill_bytes * 4:
                    return out
            return {"$object": self.put_object(text), "bytes": len(text), "format": "json"}
        return value

    def _prepare_payload(self, kind: str, payload: Mapping[str, Any]) -> dict:
        declared = self._declared.get(kind, set())
        out = {}
        for k, v in payload.items():
            if v is None and k in declared:
                continue
            v = clean(v) if k not in declared else _clean_declared(v)
            out[k] = v if k in declared else self.spill(v)
        return out

    # -- events ----------------------------------------------------------------------------

    def event(
        self,
        kind: str,
        payload: Mapping[str, Any],
        *,
        lineage: str,
        record: str,
        role: str,
        actor: str,
        node: str | None = None,
        actor_node: str | None = None,
        occurred_at: datetime | str | float | int | None = None,
        caused_by: str | None = None,
        raw: Any = None,
    ) -> str | None:
        """Queue one event; returns its id (or None if the schema refused it: it is then
        kept as an ``unmapped`` annotation carrying ``raw``)."""
        event_id = self.event_id(lineage, record, role)
        try:
            body = self._prepare_payload(kind, payload)
            prepared = prepare(Draft(
                lineage=lineage, kind=kind, actor=actor, payload=body, node=node,
                actor_node=actor_node, occurred_at=_time(occurred_at), caused_by=caused_by,
                event_id=event_id,
            ))
        except SchemaError as exc:
            self.unmapped(lineage=lineage, record=record, role=role, reason=f"{kind}: {exc}",
                          raw=raw if raw is not None else payload, node=node, occurred_at=occurred_at)
            return None
        self._queue(prepared)
        return event_id

    def unmapped(
        self,
        *,
        lineage: str,
        record: str,
        reason: str,
        raw: Any,
        role: str = "record",
        node: str | None = None,
        occurred_at: Any = None,
    ) -> None:
        """Keep a record we could not map: an annotation with the raw record and the reason."""
        self.summary.unmapped.append(Unmapped(record, reason))
        payload = {
            "text": f"could not map {record}: {reason}"[:2000],
            "topic": "unmapped",
            "reason": reason,
            "source_record": record,
            "format": self.format,
            "raw": self.spill(clean(raw)) if not isinstance(raw, bytes) else {"$object": self.put_object(raw), "bytes": len(raw), "format": "bytes"},
        }
        try:
            prepared = prepare(Draft(
                lineage=lineage, kind="annotation", actor=IMPORT_ACTOR, payload=payload,
                node=node, occurred_at=_time(occurred_at),
                event_id=self.event_id(lineage, record, f"unmapped:{role}"),
            ))
        except SchemaError:
            # The node name itself was the problem: keep the record at lineage level.
            payload["node"] = clean(node)
            prepared = prepare(Draft(
                lineage=lineage, kind="annotation", actor=IMPORT_ACTOR, payload=payload,
                event_id=self.event_id(lineage, record, f"unmapped:{role}"),
            ))
        self._queue(prepared)

    def _queue(self, prepared) -> None:
        self._pending.append(prepared)
        if len(self._pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        self._sync_objects()
        acks = self._writer.append_many(batch, skip_existing=True)
        appended = {a.event_id for a in acks}
        self.summary.events += len(acks)
        self.summary.skipped += len(batch) - len(acks)
        for e in batch:
            if e.event_id in appended:
                self.summary.by_kind[e.kind] = self.summary.by_kind.get(e.kind, 0) + 1

    # -- code ------------------------------------------------------------------------------

    def tree_diff_payload(
        self,
        before: Mapping[str, bytes] | None,
        after: Mapping[str, bytes],
        *,
        snapshot: bool = True,
    ) -> dict:
        """A code_diff payload from two trees ({path: bytes}). ``before=None`` means the base
        is unknown (a pruned parent): no diff is recorded, only the snapshot of ``after``,
        so replay can still materialize the node."""
        payload: dict[str, Any] = {}
        if before is not None:
            diff, files = diff_trees(before, after)
            payload["diff_object"] = self.put_object(diff)
            payload["base_tree"] = tree_hash(before)
            payload["files"] = files
            payload["paths"] = [f["path"] for f in files]
            payload["lines_added"] = sum(f["lines_added"] for f in files)
            payload["lines_removed"] = sum(f["lines_removed"] for f in files)
        else:
            payload["base_unknown"] = True
            payload["paths"] = sorted(after)
        payload["result_tree"] = tree_hash(after)
        if snapshot:
            files_map = manifest(after)
            for data in after.values():
                self.put_object(data)
            payload["snapshot_object"] = self.put_object(orjson.dumps(files_map, option=orjson.OPT_SORT_KEYS))
            assert manifest_hash(files_map) == payload["result_tree"]
        return payload

    def text_diff_payload(self, diff_text: str) -> dict:
        """A code_diff payload from a unified diff the source recorded (base tree unknown)."""
        payload: dict[str, Any] = {"diff_object": self.put_object(diff_text)}
        try:
            files = diff_stats(diff_text)
        except ValueError as exc:
            payload["diff_unparsed"] = str(exc)[:500]
            return payload
        payload["files"] = files
        payload["paths"] = [f["path"] for f in files]
        payload["lines_added"] = sum(f["lines_added"] for f in files)
        payload["lines_removed"] = sum(f["lines_removed"] for f in files)
        return payload

    def score_events(
        self,
        metrics: Mapping[str, Any],
        *,
        lineage: str,
        record: str,
        node: str,
        actor: str,
        occurred_at: Any,
        split: str = "public",
        primary: str | None = None,
        higher_is_better: Mapping[str, bool] | None = None,
        caused_by: str | None = None,
        role_prefix: str = "score",
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One score event per finite numeric (or boolean) metric. Returns the metrics that
        did not become scores (non-finite or non-numeric), by name, cleaned; the caller keeps
        them in its run payload."""
        left: dict[str, Any] = {}
        for name, value in metrics.items():
            if isinstance(value, bool):
                number, value_type = (1.0 if value else 0.0), "bool"
            elif is_number(value):
                if isinstance(value, float) and not math.isfinite(value):
                    left[name] = non_finite_text(value)
                    continue
                number, value_type = float(value), None
            else:
                left[name] = clean(value)
                continue
            if higher_is_better and name in higher_is_better:
                hib, inferred = higher_is_better[name], False
            elif name == primary:
                hib, inferred = True, False
            else:
                hib, inferred = infer_higher_is_better(name), True
            payload: dict[str, Any] = {"metric": str(name), "value": number, "split": split, "higher_is_better": hib}
            if inferred and not hib:
                payload["higher_is_better_inferred"] = True
            if value_type:
                payload["raw_value"] = value
            if primary is not None and name == primary:
                payload["primary"] = True
            if extra:
                payload.update(extra)
            self.event("score", payload, lineage=lineage, record=record, role=f"{role_prefix}:{split}:{name}",
                       actor=actor, node=node, occurred_at=occurred_at, caused_by=caused_by)
        return left


def _clean_declared(v: Any) -> Any:
    # Declared fields are validated strictly by the schema; only make them JSON-safe.
    if isinstance(v, float) and not math.isfinite(v):
        return v  # let the schema refuse it with the field named
    return clean(v) if isinstance(v, dict | list | tuple) else v


def _time(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and not (0 <= value < 1e11):
        return None  # not an epoch in seconds; leave the time to the store
    return value


class LRU(OrderedDict):
    """A small LRU map, bounded by ``capacity`` entries and, when ``max_chars`` is given, by
    the total length of its (string) values: code by node id, digests written."""

    def __init__(self, capacity: int, max_chars: int | None = None):
        super().__init__()
        self.capacity = capacity
        self.max_chars = max_chars
        self.chars = 0

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key, value) -> None:
        if key in self:
            self.chars -= _size(self[key])
        self[key] = value
        self.chars += _size(value)
        self.move_to_end(key)
        while len(self) > self.capacity or (self.max_chars is not None and self.chars > self.max_chars and len(self) > 1):
            _, old = self.popitem(last=False)
            self.chars -= _size(old)


def _size(value) -> int:
    return len(value) if isinstance(value, str | bytes) else 0


@dataclass(frozen=True)
class Actors:
    """Who the importer says did what. ``ai`` overrides the AI actor every importer would
    otherwise derive (the model named in the source, else ``ai:<format>-...``)."""

    human: str = "human:seed-author"
    ai: str | None = None

    def ai_or(self, default: str) -> str:
        return self.ai or default


DEFAULT_ACTORS = Actors()


def model_actor(model: Any, default: str) -> str:
    """``ai:<model>`` for a model name the source recorded, else ``default``."""
    if isinstance(model, str) and model.strip():
        name = re.sub(r"[\x00-\x1f\x7f]", " ", model.strip())[:190]
        return f"ai:{name}"
    return default


def keep_files(
    session: ImportSession,
    files: Iterable[Path],
    *,
    root: Path,
    lineage: str,
    record: str,
    actor: str,
    node: str | None = None,
    topic: str = "files",
    occurred_at: Any = None,
) -> None:
    """Source files no other mapping used: stored as objects and listed in one annotation,
    so nothing in the source folder is left behind."""
    listing = {}
    for p in sorted(files):
        try:
            listing[p.relative_to(root).as_posix()] = session.put_file(p)
        except OSError as exc:
            listing[p.relative_to(root).as_posix()] = {"error": str(exc)[:300]}
    if not listing:
        return
    session.event("annotation", {"text": f"{len(listing)} source file(s) kept as objects", "topic": topic,
                                 "files": listing},
                  lineage=lineage, record=record, role=f"files:{topic}", actor=actor, node=node,
                  occurred_at=occurred_at)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()




def text_and_object(session: ImportSession, text: str, limit: int = 16_000) -> tuple[str, dict]:
    """A long text for a declared string field (idea, annotation text): the first ``limit``
    characters inline, the whole text as an object named in ``<field>_object``."""
    if len(text) <= limit:
        return text, {}
    return text[:limit] + " …", {"full_text_object": session.put_object(text), "full_text_bytes": len(text.encode())}


__all__ = [
    "Actors", "DEFAULT_ACTORS", "IMPORT_ACTOR", "keep_files", "merge", "model_actor", "ImportSession", "ImportSummary", "LRU", "NAMESPACE", "SPILL_BYTES", "Unmapped",
    "clean", "file_time", "infer_higher_is_better", "is_number", "iter_concatenated_json",
    "load_json_text", "non_finite_text", "read_text", "scorable", "sha256_text", "slug",
    "text_and_object",
]
