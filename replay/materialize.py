"""Materialize: rebuild a node's code tree from the event log and write it to a directory.

The convention (the SDK's ``code_diff(before=..., after=...)`` follows it):

- A node's ``code_diff`` events apply in ``seq`` order. The first is against the tree of
  the node's FIRST parent (a root starts from the empty tree), or of the node its payload
  names as ``base_node``; each later one is against the result of the one before. For a
  merge or crossover node, record the diff against the first parent in ``parents``.
- A ``code_diff`` with ``snapshot_object`` (a JSON manifest ``{path: blob sha256}``) gives
  the whole result tree: rebuilding starts there instead of walking further back.
- Binary files are not in the diff text: they are in the payload's ``files`` list with
  change ``binary`` and the ``object`` holding their new bytes (or ``deleted: true``).
- A node with no ``code_diff`` has its first parent's tree.
- Retracted ``code_diff`` events are skipped (a retraction says the event was wrong; the
  recorded hashes of the remaining events still have to match).

Every recorded ``base_tree`` and ``result_tree`` is checked on the way, every object is
read through ``ObjectStore.verified``; the first disagreement stops the rebuild with an
error naming the node and the event seq. Trees are built in memory (a node's tree is
cached, so checking out many nodes of one lineage walks each diff once) and written once
at the end, beside the destination and renamed into place when it did not exist.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson

from lineage.errors import ObjectMissing
from lineage.objects import sha256_bytes, sha256_file
from lineage.query import run_query
from lineage.store import Store
from lineage.trees import manifest_hash
from replay.errors import CheckoutError, PatchError, PathEscape, ReplayError
from replay.patch import FilePatch, apply_diff, parse_diff, safe_path

MANIFEST_DIR = ".lineage"
MANIFEST_FILE = f"{MANIFEST_DIR}/manifest.json"
EMPTY_TREE = manifest_hash({})


# -- what the log says ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeRecord:
    node: str
    lineage: str
    branch: str
    parents: tuple[str, ...]
    label: str | None
    seq: int
    event_id: str


@dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int
    event_id: str
    node: str | None
    branch: str
    kind: str
    payload: dict[str, Any]
    caused_by: str | None = None


def _norm_id(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(value)


def standing_retractions(pairs: Iterable[tuple[str, str]]) -> set[str]:
    """The event ids retracted by (retraction id, target id) pairs. A retraction removes its
    target; a retraction that was itself retracted removes nothing (as the projections do)."""
    pairs = [(_norm_id(rid), _norm_id(target)) for rid, target in pairs]
    targets = {t for _, t in pairs}
    return {t for rid, t in pairs if rid not in targets}


def resolve_lineage(store: Store, node: str, lineage: str | None = None) -> str:
    """The lineage holding ``node``; ambiguous or unknown nodes are errors that say what to do."""
    sql = "SELECT DISTINCT lineage FROM events WHERE kind = 'node_created' AND node = ?"
    params: list[Any] = [node]
    if lineage:
        sql += " AND lineage = ?"
        params.append(lineage)
    found = sorted(run_query(store, sql, params).column("lineage").to_pylist())
    if not found:
        where = f" in lineage {lineage!r}" if lineage else ""
        raise ReplayError(f"node {node!r} not found{where}; list nodes with `lineage log --kind node_created`")
    if len(found) > 1:
        raise ReplayError(f"node {node!r} exists in several lineages ({', '.join(found)}); pass --lineage")
    return found[0]


class LineageIndex:
    """The events of one lineage that materializing needs, read once (optionally as of a seq)."""

    KINDS = ("node_created", "code_diff", "retraction", "dataset", "checkpoint", "run", "score")

    def __init__(self, store: Store, lineage: str, *, max_seq: int | None = None):
        self.store = store
        self.lineage = lineage
        self.max_seq = max_seq
        sql = ("SELECT seq, event_id, branch, node, kind, CAST(payload AS VARCHAR) AS payload, caused_by FROM events "
               "WHERE lineage = ? AND kind IN (SELECT unnest(?::VARCHAR[]))")
        params: list[Any] = [lineage, list(self.KINDS)]
        if max_seq is not None:
            sql += " AND seq <= ?"
            params.append(max_seq)
        table = run_query(store, sql + " ORDER BY seq", params)
        cols = {name: table.column(name).to_pylist() for name in table.column_names}
        events = [
            EventRecord(seq, eid, node, branch, kind, orjson.loads(payload), caused)
            for seq, eid, branch, node, kind, payload, caused in zip(
                cols["seq"], cols["event_id"], cols["branch"], cols["node"], cols["kind"], cols["payload"],
                cols["caused_by"], strict=True)
        ]
        retracted = standing_retractions((e.event_id, e.payload.get("event_id", "")) for e in events if e.kind == "retraction")
        self.retracted = retracted
        self.nodes: dict[str, NodeRecord] = {}
        self.by_node: dict[str, dict[str, list[EventRecord]]] = {}
        for e in events:
            if e.kind == "retraction" or _norm_id(e.event_id) in retracted or e.node is None:
                continue
            if e.kind == "node_created":
                if e.node not in self.nodes:
                    self.nodes[e.node] = NodeRecord(
                        e.node, lineage, e.branch, tuple(e.payload.get("parents") or ()),
                        e.payload.get("label"), e.seq, e.event_id)
                continue
            self.by_node.setdefault(e.node, {}).setdefault(e.kind, []).append(e)

    def node(self, node: str) -> NodeRecord:
        rec = self.nodes.get(node)
        if rec is None:
            as_of = f" as of seq {self.max_seq}" if self.max_seq is not None else ""
            raise ReplayError(f"node {node!r} has no node_created event in lineage {self.lineage!r}{as_of}")
        return rec

    def events(self, node: str, kind: str) -> list[EventRecord]:
        return self.by_node.get(node, {}).get(kind, [])


# -- building trees in memory -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One code_diff event applied while rebuilding (or the snapshot a rebuild started from)."""

    node: str
    seq: int
    event_id: str
    snapshot: bool
    result_tree: str

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "seq": self.seq, "event_id": self.event_id,
                "snapshot": self.snapshot, "result_tree": self.result_tree}


@dataclass(frozen=True, slots=True)
class Built:
    """A node's tree: files, their blob hashes, the tree hash, and how it was reached."""

    node: str
    files: Mapping[str, bytes]
    hashes: Mapping[str, str]
    tree_hash: str
    steps: tuple[Step, ...]  # this node's own steps
    from_snapshot: bool  # True: the rebuild of this node started at one of its own snapshots


class Materializer:
    """Rebuilds the trees of one lineage's nodes. Keep one around to check out many nodes:
    trees are cached (up to ``cache_files`` file entries in all), so walking the same
    chain twice costs nothing."""

    def __init__(self, store: Store, lineage: str, *, max_seq: int | None = None, cache_files: int = 2_000_000):
        self.store = store
        self.objects = store.objects
        self.index = LineageIndex(store, lineage, max_seq=max_seq)
        self.lineage = lineage
        self._cache: OrderedDict[str, Built] = OrderedDict()
        self._cached_files = 0
        self._cache_files = cache_files

    # -- public ----------------------------------------------------------------------

    def build(self, node: str) -> Built:
        """The node's tree, rebuilt and checked (or from the cache)."""
        hit = self._cache.get(node)
        if hit is not None:
            self._cache.move_to_end(node)
            return hit
        # Walk first parents back to a cached tree, a snapshot, or a root.
        chain: list[str] = []
        seen: set[str] = set()
        base: Built | None = None
        cur = node
        while True:
            if cur in seen:
                raise CheckoutError(f"the first-parent chain loops back to {cur}", node=node)
            seen.add(cur)
            cached = self._cache.get(cur)
            if cached is not None:
                base = cached
                break
            rec = self.index.node(cur)
            chain.append(cur)
            if any(d.payload.get("snapshot_object") for d in self.index.events(cur, "code_diff")):
                break
            parent = self.base_of(cur)
            if parent is None:
                break
            if parent not in self.index.nodes:
                raise CheckoutError(
                    f"its base node {parent!r} is not in lineage {self.lineage!r} and no snapshot was "
                    "recorded on the way; the chain cannot be rebuilt", node=cur, seq=rec.seq, event_id=rec.event_id)
            cur = parent
        files: Mapping[str, bytes] = base.files if base else {}
        hashes: Mapping[str, str] = base.hashes if base else {}
        tree = base.tree_hash if base else EMPTY_TREE
        built = base
        for name in reversed(chain):
            built = self._apply_node(name, files, hashes, tree)
            files, hashes, tree = built.files, built.hashes, built.tree_hash
            self._remember(built)
        assert built is not None
        return built

    def base_of(self, node: str) -> str | None:
        """The node whose tree ``node``'s first diff is against: the payload's ``base_node``
        if the loop recorded one, else the first parent; None for a root."""
        diffs = self.index.events(node, "code_diff")
        named = diffs[0].payload.get("base_node") if diffs else None
        if isinstance(named, str) and named:
            return named
        parents = self.index.node(node).parents
        return parents[0] if parents else None

    def chain(self, node: str) -> list[Step]:
        """The steps that rebuilt ``node``, oldest first (from a snapshot or the root)."""
        steps: list[Step] = []
        cur: str | None = node
        while cur is not None:
            built = self.build(cur)
            steps[:0] = built.steps
            if built.from_snapshot:
                break
            cur = self.base_of(cur)
        return steps

    # -- internals -------------------------------------------------------------------

    def _remember(self, built: Built) -> None:
        self._cache[built.node] = built
        self._cached_files += len(built.files)
        while self._cached_files > self._cache_files and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_files -= len(old.files)

    def _apply_node(self, node: str, files: Mapping[str, bytes], hashes: Mapping[str, str], tree: str) -> Built:
        diffs = self.index.events(node, "code_diff")
        start = 0
        from_snapshot = False
        steps: list[Step] = []
        snap_at = [i for i, d in enumerate(diffs) if d.payload.get("snapshot_object")]
        if snap_at:
            start = snap_at[-1]
            d = diffs[start]
            files, hashes, tree = self._load_snapshot(node, d)
            steps.append(Step(node, d.seq, d.event_id, True, tree))
            from_snapshot = True
            start += 1
        for d in diffs[start:]:
            files, hashes, tree = self._apply_event(node, d, files, hashes, tree)
            steps.append(Step(node, d.seq, d.event_id, False, tree))
        return Built(node, files, hashes, tree, tuple(steps), from_snapshot)

    def _object(self, node: str, event: EventRecord, digest: str, what: str) -> bytes:
        try:
            return self.objects.verified(digest)
        except ObjectMissing as exc:
            raise CheckoutError(f"{what}: {exc}", node=node, seq=event.seq, event_id=event.event_id) from None

    def _load_snapshot(self, node: str, event: EventRecord) -> tuple[dict[str, bytes], dict[str, str], str]:
        p = event.payload
        raw = self._object(node, event, p["snapshot_object"], "snapshot manifest")
        try:
            listing = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CheckoutError(f"snapshot manifest {p['snapshot_object']} is not JSON ({exc})",
                                node=node, seq=event.seq, event_id=event.event_id) from None
        if not isinstance(listing, dict):
            raise CheckoutError("snapshot manifest is not a {path: sha256} object", node=node, seq=event.seq, event_id=event.event_id)
        files: dict[str, bytes] = {}
        hashes: dict[str, str] = {}
        for path, digest in listing.items():
            try:
                safe_path(path)
            except PathEscape as exc:
                raise CheckoutError(str(exc), node=node, seq=event.seq, event_id=event.event_id) from None
            files[path] = self._object(node, event, str(digest), f"snapshot file {path}")
            hashes[path] = str(digest)
        tree = manifest_hash(hashes)
        if p.get("result_tree") and p["result_tree"] != tree:
            raise CheckoutError(f"snapshot hashes to tree {tree[:12]}, but the event records result tree {p['result_tree'][:12]}",
                                node=node, seq=event.seq, event_id=event.event_id)
        return files, hashes, tree

    def _apply_event(self, node: str, event: EventRecord, files: Mapping[str, bytes], hashes: Mapping[str, str],
                     tree: str) -> tuple[dict[str, bytes], dict[str, str], str]:
        p = event.payload

        def fail(msg: str) -> CheckoutError:
            return CheckoutError(msg, node=node, seq=event.seq, event_id=event.event_id)

        base = p.get("base_tree")
        if base and base != tree:
            base_node = self.base_of(node)
            against = "the empty tree (it is a root)" if base_node is None else (
                f"its base node {base_node}" if base_node != (self.index.node(node).parents or (None,))[0]
                else f"its first parent {base_node}")
            raise fail(f"the recorded base tree {base[:12]} is not the tree rebuilt from {against} ({tree[:12]}); "
                       "a node's first diff must be against its first parent (or the payload's base_node)")
        patches: list[FilePatch] = []
        if p.get("diff_object"):
            text = self._object(node, event, p["diff_object"], "diff").decode("utf-8", errors="surrogateescape")
            try:
                patches = parse_diff(text)
            except PatchError as exc:
                raise fail(f"diff {p['diff_object'][:12]}: {exc}") from None
        elif any(f.get("change") != "binary" for f in p.get("files") or []):
            raise fail("the code_diff has no diff_object (and no snapshot), so it cannot be replayed")
        try:
            changes, binary = apply_diff(files, patches)
        except PatchError as exc:
            raise fail(f"diff {p.get('diff_object', '')[:12]} does not apply: {exc}") from None
        binaries = {}
        for rec in p.get("files") or []:
            if rec.get("change") == "binary":
                binaries[rec.get("path")] = rec
        for path in binary:
            if path not in binaries:
                raise fail(f"binary file {path} changes, but the event's files list has no object for it")
        for path, rec in binaries.items():
            try:
                safe_path(str(path))
            except PathEscape as exc:
                raise fail(str(exc)) from None
            if rec.get("deleted"):
                if path not in files and changes.get(path) is None:
                    raise fail(f"binary file {path} is deleted, but it does not exist")
                changes[path] = None
            elif rec.get("object"):
                changes[path] = self._object(node, event, rec["object"], f"binary file {path}")
            else:
                raise fail(f"binary file {path} has neither an object nor deleted: true")
        new_files = dict(files)
        new_hashes = dict(hashes)
        for path, data in changes.items():
            if data is None:
                new_files.pop(path, None)
                new_hashes.pop(path, None)
            else:
                new_files[path] = data
                new_hashes[path] = sha256_bytes(data)
        new_tree = manifest_hash(new_hashes)
        result = p.get("result_tree")
        if result and result != new_tree:
            raise fail(f"applying the diff gives tree {new_tree[:12]}, but the event records result tree {result[:12]}")
        return new_files, new_hashes, new_tree


# -- artifacts --------------------------------------------------------------------------


def _local_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # s3://, https://, hf://: not checkable here
        return None
    return Path(uri)


def artifact_status(store: Store, payload: Mapping[str, Any], tree: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """Whether a dataset's or checkpoint's content is at hand and intact.

    Looked for, in order: the object store (by content hash), the node's own tree (a
    relative uri naming a file of the tree), the local file the uri names."""
    digest = payload.get("content_hash")
    uri = payload.get("uri")
    out: dict[str, Any] = {"present": False, "intact": None, "location": None}
    if digest and store.objects.has(digest):
        out["present"], out["location"] = True, "objects"
        try:
            store.objects.verified(digest)
            out["intact"] = True
        except ObjectMissing:
            out["intact"] = False
        return out
    if uri and tree is not None and uri in tree:
        out["present"], out["location"] = True, f"tree:{uri}"
        out["intact"] = (sha256_bytes(tree[uri]) == digest) if digest else None
        return out
    path = _local_path(uri)
    if path is not None and path.is_file():
        out["present"], out["location"] = True, str(path)
        out["intact"] = (sha256_file(path) == digest) if digest else None
    return out


# -- writing ----------------------------------------------------------------------------


def _check_reserved(files: Mapping[str, bytes]) -> None:
    for path in files:
        if path == MANIFEST_DIR or path.startswith(MANIFEST_DIR + "/"):
            raise PathEscape(f"refused path {path!r}: {MANIFEST_DIR}/ is reserved for the checkout manifest")


def _check_layout(files: Mapping[str, bytes]) -> None:
    paths = set(files)
    for path in paths:
        safe_path(path)
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in paths:
                raise PathEscape(f"{path!r} needs {'/'.join(parts[:i])!r} to be a directory, but it is a file of the tree")


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _check_existing(dest: Path, files: Mapping[str, bytes]) -> None:
    """Writing into an existing directory: refuse any symlink on the way (and say where it points)."""
    root = os.path.realpath(dest)
    checked: set[str] = set()
    for path in files:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            rel = "/".join(parts[:i])
            if rel in checked:
                continue
            checked.add(rel)
            full = dest / rel
            if full.is_symlink():
                real = os.path.realpath(full)
                where = "outside the target directory" if not _inside(root, real) else "inside the target directory"
                raise PathEscape(f"refused to write {path!r}: {rel!r} in {dest} is a symlink to {os.readlink(full)!r} "
                                 f"({where}); remove it or check out into an empty directory")
            if i < len(parts) and full.exists() and not full.is_dir():
                raise PathEscape(f"cannot write {path!r}: {rel!r} exists in {dest} and is not a directory")
            if i == len(parts) and full.is_dir():
                raise PathEscape(f"cannot write {path!r}: it is a directory in {dest}")


def _write_files(root: Path, files: Mapping[str, bytes]) -> None:
    made: set[str] = set()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    for path in sorted(files):
        parent = path.rpartition("/")[0]
        if parent and parent not in made:
            (root / parent).mkdir(parents=True, exist_ok=True)
            made.add(parent)
        fd = os.open(root / path, flags, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(files[path])


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_tree(files: Mapping[str, bytes], dest: str | os.PathLike, *, force: bool = False) -> Path:
    """Write ``files`` under ``dest``; everything is checked before the first byte is written.

    A new ``dest`` is built beside itself and renamed into place. An existing one must be
    empty unless ``force``; then symlinks on any written path are refused."""
    dest = Path(dest)
    _check_layout(files)
    if dest.is_symlink() and not dest.exists():
        raise PathEscape(f"{dest} is a dangling symlink; refusing to write through it")
    if dest.exists():
        if not dest.is_dir():
            raise ReplayError(f"{dest} exists and is not a directory")
        if any(dest.iterdir()):
            if not force:
                raise ReplayError(f"{dest} is not empty; check out into a new directory, or pass --force to write over it")
            _check_existing(dest, files)
        _write_files(dest, files)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.checkout-", dir=dest.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; a checkout is an ordinary directory
        _write_files(tmp, files)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# -- checkout ---------------------------------------------------------------------------


@dataclass
class Checkout:
    """What ``checkout`` wrote."""

    node: str
    lineage: str
    branch: str
    dest: Path
    tree_hash: str
    files: int
    steps: list[Step]
    manifest: dict[str, Any] = field(repr=False)

    @property
    def artifacts_ok(self) -> bool:
        return all(a["present"] and a["intact"] is not False
                   for a in self.manifest["datasets"] + self.manifest["checkpoints"])


def build_manifest(materializer: Materializer, node: str, built: Built) -> dict[str, Any]:
    index = materializer.index
    rec = index.node(node)
    store = materializer.store

    def artifacts(kind: str) -> list[dict[str, Any]]:
        out = []
        for e in index.events(node, kind):
            p = e.payload
            entry = {k: p.get(k) for k in ("name", "role", "uri", "content_hash", "bytes", "rows", "step") if k in p}
            entry.update(seq=e.seq, event_id=e.event_id, **artifact_status(store, p, built.files))
            out.append(entry)
        return out

    return {
        "lineage": materializer.lineage,
        "node": node,
        "branch": rec.branch,
        "label": rec.label,
        "parents": list(rec.parents),
        "tree": built.tree_hash,
        "files": len(built.files),
        "as_of_seq": index.max_seq,
        "chain": [s.as_dict() for s in materializer.chain(node)],
        "datasets": artifacts("dataset"),
        "checkpoints": artifacts("checkpoint"),
    }


def materialize(store: Store, node: str, *, lineage: str | None = None, max_seq: int | None = None) -> dict[str, bytes]:
    """The node's code tree in memory (``{path: bytes}``), rebuilt and checked."""
    lin = resolve_lineage(store, node, lineage)
    return dict(Materializer(store, lin, max_seq=max_seq).build(node).files)


def checkout(
    store: Store,
    node: str,
    dest: str | os.PathLike,
    *,
    lineage: str | None = None,
    force: bool = False,
    max_seq: int | None = None,
    materializer: Materializer | None = None,
) -> Checkout:
    """Rebuild ``node``'s code tree and write it to ``dest`` with ``.lineage/manifest.json``.

    ``max_seq``: as the store was after that event (time travel). ``materializer``: reuse
    one (and its cache) across many checkouts of the same lineage."""
    if materializer is None:
        materializer = Materializer(store, resolve_lineage(store, node, lineage), max_seq=max_seq)
    built = materializer.build(node)
    manifest = build_manifest(materializer, node, built)
    body = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    files = dict(built.files)
    try:
        _check_reserved(files)
        files[MANIFEST_FILE] = body
        written = write_tree(files, dest, force=force)
    except PathEscape as exc:
        raise CheckoutError(str(exc), node=node) from None
    rec = materializer.index.node(node)
    return Checkout(node, materializer.lineage, rec.branch, written, built.tree_hash, len(built.files),
                    materializer.chain(node), manifest)


__all__ = [
    "Built", "Checkout", "LineageIndex", "MANIFEST_FILE", "Materializer", "NodeRecord", "Step",
    "artifact_status", "build_manifest", "checkout", "materialize", "resolve_lineage", "write_tree",
]
