"""An agent's workspace as a lineage: skills, memory and instruction files, one node per burst.

Self-improving agents (Hermes- or OpenClaw-style) rewrite their own ``skills/*/SKILL.md``,
``MEMORY.md`` and ``AGENTS.md``. ``WorkspaceWatcher`` watches such a folder with
watchfiles; a *burst* is a run of changes with no pause longer than ``quiet`` seconds
(capped at ``max_burst``), and each burst that leaves the files different becomes a node:
parent = the previous state, a ``code_diff`` of exactly what changed (the unified diff as
an object, binary files as objects, and a full snapshot manifest so replay can start
there), attributed to the agent.

The state the diff is taken against is what the files *are* after the burst, read from
disk, not a replay of the change notifications: a file deleted and recreated with the
same content inside one burst is no change; a deletion and a later recreation in two
bursts are two nodes.

When watching starts, the files as found become a *baseline* node by ``baseline_actor``
(default ``system:lineage``: who wrote them is unknown). Watching again later resumes
from the last recorded state (rebuilt from its snapshot), and changes made while nobody
watched become one node by the baseline actor, never silently the agent's.

``import_workspace`` brings in a workspace's past: a git repository (``lineage.agents.gitlog``)
or a folder of dated snapshot directories, one node per snapshot.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import orjson

from lineage.agents.gitlog import import_git, is_git_repo
from lineage.agents.ids import stable_event_id
from lineage.errors import LineageError
from lineage.objects import ObjectStore
from lineage.store import Store
from lineage.trees import IGNORED_DIRS, diff_trees, manifest, manifest_hash, tree_hash
from schemas import Draft, prepare
from schemas.actor import parse_actor
from schemas.envelope import DEFAULT_BRANCH

BASELINE_ACTOR = "system:lineage"
# Editor droppings and temporary files: never part of an agent's state.
DEFAULT_EXCLUDES = ("*.swp", "*.swx", "*.swo", "*~", ".#*", "#*#", "*.tmp", ".DS_Store", "*.pyc", "4913")
MAX_FILE_BYTES = 32 * 1024 * 1024
ID_NAMESPACE = "lineage-workspace/1"

Tree = dict[str, bytes]


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")
    return s[:100] or "workspace"


class FileFilter:
    """Which files of a workspace are its state: ``include`` globs (all files when empty)
    minus ``exclude`` globs, never inside ``.git``, caches or the store itself."""

    def __init__(self, include: Iterable[str] = (), exclude: Iterable[str] = (), *, skip: Iterable[Path] = ()):
        self.include = tuple(include)
        self.exclude = DEFAULT_EXCLUDES + tuple(exclude)
        self.skip = tuple(p.resolve() for p in skip)

    def wanted(self, rel: str) -> bool:
        parts = rel.split("/")
        if any(p in IGNORED_DIRS for p in parts[:-1]):
            return False
        name = parts[-1]
        if any(fnmatch(name, pat) or fnmatch(rel, pat) for pat in self.exclude):
            return False
        if self.include:
            return any(fnmatch(rel, pat) or (pat.startswith("**/") and fnmatch(rel, pat[3:])) for pat in self.include)
        return True


class Scanner:
    """Reads a workspace's files, re-reading only what changed since the last scan (by
    stat, and always the paths the watcher reported)."""

    def __init__(self, root: Path, flt: FileFilter):
        self.root = root
        self.filter = flt
        self._cache: dict[str, tuple[tuple[int, int, int, int], bytes]] = {}
        self.skipped: list[str] = []

    def scan(self, force: Iterable[str] = ()) -> Tree:
        force = set(force)
        tree: Tree = {}
        cache: dict[str, tuple[tuple[int, int, int, int], bytes]] = {}
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS and (here / d).resolve() not in self.filter.skip)
            for name in filenames:
                path = here / name
                rel = path.relative_to(self.root).as_posix()
                if not self.filter.wanted(rel):
                    continue
                try:
                    st = path.lstat()
                    if not path.is_file() or path.is_symlink():
                        continue
                    key = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
                    hit = self._cache.get(rel)
                    if hit and hit[0] == key and rel not in force:
                        data = hit[1]
                    elif st.st_size > MAX_FILE_BYTES:
                        self.skipped.append(rel)
                        continue
                    else:
                        data = path.read_bytes()
                except (FileNotFoundError, PermissionError):
                    continue  # deleted while we looked, or unreadable: not part of the state
                cache[rel] = (key, data)
                tree[rel] = data
        self._cache = cache
        return tree


def tree_diff_payload(objects: ObjectStore, before: Mapping[str, bytes], after: Mapping[str, bytes]) -> dict[str, Any]:
    """A ``code_diff`` payload from two trees, in the SDK's format (``Tracker.code_diff``
    with ``snapshot=True``): diff object, per-file stats, tree hashes, snapshot manifest."""
    diff, files = diff_trees(before, after)
    for f in files:
        if f["change"] == "binary" and "object" in f:
            objects.put(after[f["path"]])
    for data in after.values():
        objects.put(data)
    files_map = manifest(after)
    payload: dict[str, Any] = {
        "diff_object": objects.put(diff),
        "files": files,
        "paths": [f["path"] for f in files],
        "lines_added": sum(f["lines_added"] for f in files),
        "lines_removed": sum(f["lines_removed"] for f in files),
        "base_tree": tree_hash(before),
        "result_tree": manifest_hash(files_map),
        "snapshot_object": objects.put(orjson.dumps(files_map, option=orjson.OPT_SORT_KEYS)),
    }
    return payload


def describe(files: list[dict[str, Any]]) -> str:
    """A node label from its changed files: ``edit MEMORY.md`` or ``3 files: a, b, c``."""
    if not files:
        return "no change"
    if len(files) == 1:
        f = files[0]
        verb = {"added": "add", "deleted": "delete", "modified": "edit"}.get(f["change"], f["change"])
        return f"{verb} {f['path']}"[:200]
    names = ", ".join(f["path"] for f in files[:3]) + (", …" if len(files) > 3 else "")
    return f"{len(files)} files: {names}"[:200]


def load_snapshot(store: Store, snapshot_object: str) -> Tree:
    files = orjson.loads(store.objects.get(snapshot_object))
    return {path: store.objects.get(digest) for path, digest in files.items()}


class WorkspaceWatcher:
    """Turns bursts of changes in ``directory`` into nodes attributed to ``actor``.

    ``run()`` blocks until ``stop_event`` is set (or Ctrl-C); ``on_node(node_id, payload)``
    is called after each node is stored. ``flush()`` records the current state now.
    """

    def __init__(
        self,
        store: Store,
        directory: str | os.PathLike,
        *,
        actor: str,
        lineage: str | None = None,
        baseline_actor: str = BASELINE_ACTOR,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        quiet: float = 1.0,
        max_burst: float = 30.0,
        branch: str = DEFAULT_BRANCH,
        on_node: Callable[[str, dict[str, Any]], None] | None = None,
    ):
        parse_actor(actor)
        parse_actor(baseline_actor, field="baseline_actor")
        self.store = store
        self.root = Path(directory).expanduser().resolve()
        if not self.root.is_dir():
            raise LineageError(f"{self.root} is not a directory")
        self.actor = actor
        self.baseline_actor = baseline_actor
        self.workspace = _slug(self.root.name)
        self.lineage = lineage or self.workspace
        self.branch = branch
        self.quiet = quiet
        self.max_burst = max(max_burst, quiet)
        self.on_node = on_node
        self.filter = FileFilter(include, exclude, skip=[store.root])
        self.scanner = Scanner(self.root, self.filter)
        self.node: str | None = None
        self.tree: Tree = {}
        self.count = 0
        self.nodes: list[str] = []
        self._writer = store.writer(idle_release=0.25, max_hold=1.0)
        self._lock = threading.Lock()
        self._started = False

    # -- state -----------------------------------------------------------------------

    def resume(self) -> None:
        """Pick up the last state recorded for this workspace in this lineage, if any."""
        if not self.store.exists():
            return
        with self.store.reader() as con:
            rows = con.execute(
                "SELECT node FROM events WHERE lineage = ? AND kind = 'node_created' "
                "AND json_extract_string(payload, '$.workspace') = ? ORDER BY seq",
                [self.lineage, self.workspace]).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            snap = con.execute(
                "SELECT json_extract_string(payload, '$.snapshot_object') FROM events "
                "WHERE lineage = ? AND node = ? AND kind = 'code_diff' ORDER BY seq DESC LIMIT 1",
                [self.lineage, last]).fetchall()
        self.count = len(rows)
        self.node = last
        self.tree = load_snapshot(self.store, snap[0][0]) if snap and snap[0][0] else {}

    def start(self) -> None:
        """Resume, then record the files as found: a baseline (first watch) or the changes
        made while nobody watched."""
        if self._started:
            return
        self._started = True
        self.resume()
        current = self.scanner.scan()
        if self.node is None:
            if current:
                self._record(current, self.baseline_actor, rule="baseline", evidence=(
                    f"the files of {self.root} as found when watching began; who wrote them is not known",))
        elif current != self.tree:
            self._record(current, self.baseline_actor, rule="unwatched", evidence=(
                f"changes made to {self.root} while nobody was watching; who made them is not known",))

    def flush(self, changed: Iterable[str] = ()) -> str | None:
        """Record the workspace's current state as a node if it differs from the last one."""
        with self._lock:
            if not self._started:
                self.start()
            current = self.scanner.scan(force=changed)
            if current == self.tree:
                return None
            return self._record(current, self.actor, rule="watch-workspace", evidence=(
                f"changed in {self.root} while `lineage watch-workspace --actor {self.actor}` was watching",))

    def _record(self, new: Tree, actor: str, *, rule: str, evidence: tuple[str, ...]) -> str:
        node_id = f"{self.workspace}-{self.count}"
        payload = tree_diff_payload(self.store.objects, self.tree, new)
        involvement = actor.split(":", 1)[0]
        attribution = {"actor": actor, "involvement": involvement, "rule": rule, "evidence": list(evidence)}
        common = {"workspace": self.workspace, "workspace_path": str(self.root), "source": "workspace"}
        label = describe(payload["files"])
        node_payload = {"parents": [self.node] if self.node else [], "label": label, **common,
                        "attribution": attribution}
        drafts = [
            Draft(lineage=self.lineage, branch=self.branch, kind="node_created", actor=actor, node=node_id,
                  payload=node_payload),
            Draft(lineage=self.lineage, branch=self.branch, kind="code_diff", actor=actor, node=node_id,
                  payload={**payload, **common, "attribution": attribution}),
        ]
        self._writer.append_many([prepare(d) for d in drafts])
        self.node, self.tree = node_id, new
        self.count += 1
        self.nodes.append(node_id)
        if self.on_node:
            self.on_node(node_id, {**node_payload, "files": payload["files"]})
        return node_id

    # -- watching --------------------------------------------------------------------

    def _watch_filter(self, change, path: str) -> bool:
        try:
            rel = Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            return False
        if any(Path(path).resolve().is_relative_to(s) for s in self.filter.skip):
            return False
        parts = rel.split("/")
        if any(p in IGNORED_DIRS for p in parts):
            return False
        if any(fnmatch(parts[-1], pat) for pat in self.filter.exclude):
            return False
        # A directory event (created, moved, deleted) may carry wanted files: keep it.
        return self.filter.wanted(rel) or not Path(path).is_file()

    def run(self, stop_event: threading.Event | None = None, ready: threading.Event | None = None) -> None:
        """Watch until ``stop_event`` is set or the process is interrupted."""
        from watchfiles import watch

        self.start()
        first = True
        try:
            for changes in watch(self.root, watch_filter=self._watch_filter, debounce=int(self.max_burst * 1000),
                                 step=max(int(self.quiet * 1000), 10), stop_event=stop_event, rust_timeout=200,
                                 yield_on_timeout=True, raise_interrupt=False):
                if first:
                    # The watcher is live: catch anything that changed while it was starting.
                    first = False
                    self.flush()
                    if ready is not None:
                        ready.set()
                if changes:
                    rels = set()
                    for _change, path in changes:
                        try:
                            rels.add(Path(path).resolve().relative_to(self.root).as_posix())
                        except ValueError:
                            continue
                    self.flush(rels)
                if stop_event is not None and stop_event.is_set():
                    break
        finally:
            self.close()

    def close(self) -> None:
        self._writer.close()


# -- importing a workspace's past ----------------------------------------------------------

_DATE = re.compile(
    r"(?P<y>\d{4})[-_.]?(?P<m>\d{2})[-_.]?(?P<d>\d{2})"
    r"(?:[T_ .-]?(?P<H>\d{2})[-_:.h]?(?P<M>\d{2})(?:[-_:.m]?(?P<S>\d{2}))?)?")


def snapshot_time(name: str) -> datetime | None:
    """The time a snapshot folder's name states (``2025-01-03``, ``20250103-1412``,
    ``snap_2025-01-03T14-12-00``), in UTC; None if it states none."""
    m = _DATE.search(name)
    if not m:
        return None
    try:
        return datetime(int(m["y"]), int(m["m"]), int(m["d"]), int(m["H"] or 0), int(m["M"] or 0),
                        int(m["S"] or 0), tzinfo=UTC)
    except ValueError:
        return None


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_snapshots(directory: Path) -> list[tuple[Path, datetime, str]]:
    """Snapshot folders in order, each with its time and where the time came from."""
    out = []
    for p in directory.iterdir():
        if not p.is_dir() or p.name.startswith(".") or p.name in IGNORED_DIRS:
            continue
        named = snapshot_time(p.name)
        if named is not None:
            out.append((p, named, "name"))
        else:
            out.append((p, datetime.fromtimestamp(p.stat().st_mtime, UTC), "mtime"))
    if all(src == "name" for _, _, src in out):
        out.sort(key=lambda t: (t[1], _natural(t[0].name)))
    else:
        # Without dates in every name, the names' order is the surest (snap-1, snap-2, ... snap-10).
        out.sort(key=lambda t: _natural(t[0].name))
    return out


def import_snapshots(
    store: Store,
    directory: str | os.PathLike,
    *,
    actor: str,
    lineage: str | None = None,
    baseline_actor: str = BASELINE_ACTOR,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """A folder of snapshot directories, oldest first: the first is the baseline node, each
    later one a node whose parent is the previous, with the diff between them."""
    start = time.perf_counter()
    root = Path(directory).expanduser().resolve()
    parse_actor(actor)
    parse_actor(baseline_actor, field="baseline_actor")
    snaps = list_snapshots(root)
    if not snaps:
        raise LineageError(f"{root} holds no snapshot folders (expected one sub-folder per snapshot, "
                           "named by date like 2025-01-03 or 2025-01-03T14-12)")
    workspace = _slug(root.name)
    lineage = lineage or workspace
    flt = FileFilter(include, exclude, skip=[store.root])
    prev_tree: Tree = {}
    prev_node: str | None = None
    by_kind: dict[str, int] = {}
    seen = 0
    nodes = []
    with store.writer(max_hold=2.0) as w:
        for i, (path, when, when_from) in enumerate(snaps):
            tree = Scanner(path, flt).scan()
            if i > 0 and tree == prev_tree:
                if progress:
                    progress(i + 1, len(snaps))
                continue
            who = baseline_actor if i == 0 else actor
            rule = "baseline" if i == 0 else "snapshot"
            evidence = (f"first snapshot {path.name}: the state the history starts from" if i == 0
                        else f"snapshot {path.name} differs from the one before; changes by {actor} as the importer was told",)
            attribution = {"actor": who, "involvement": who.split(":", 1)[0], "rule": rule, "evidence": list(evidence)}
            node_id = _slug(path.name)
            us = int(when.timestamp() * 1_000_000)
            payload = tree_diff_payload(store.objects, prev_tree, tree)
            common = {"workspace": workspace, "snapshot": path.name, "snapshot_time_from": when_from, "source": "workspace-snapshots"}
            drafts = [
                Draft(lineage=lineage, kind="node_created", actor=who, node=node_id, occurred_at=when,
                      event_id=stable_event_id(us, ID_NAMESPACE, lineage, path.name, "node"),
                      payload={"parents": [prev_node] if prev_node else [], "label": describe(payload["files"]),
                               **common, "attribution": attribution}),
                Draft(lineage=lineage, kind="code_diff", actor=who, node=node_id, occurred_at=when,
                      event_id=stable_event_id(us, ID_NAMESPACE, lineage, path.name, "code_diff"),
                      payload={**payload, **common, "attribution": attribution}),
            ]
            prepared = [prepare(d) for d in drafts]
            acks = {a.event_id for a in w.append_many(prepared, skip_existing=True)}
            for e in prepared:
                if e.event_id in acks:
                    by_kind[e.kind] = by_kind.get(e.kind, 0) + 1
            seen += len(prepared)
            prev_tree, prev_node = tree, node_id
            nodes.append(node_id)
            if progress:
                progress(i + 1, len(snaps))
    return {"lineage": lineage, "workspace": str(root), "kind": "snapshots", "snapshots": len(snaps),
            "nodes": len(nodes), "events_added": sum(by_kind.values()),
            "events_skipped": seen - sum(by_kind.values()), "by_kind": by_kind, "seconds": round(time.perf_counter() - start, 2)}


def import_workspace(
    store: Store,
    directory: str | os.PathLike,
    *,
    actor: str | None = None,
    lineage: str | None = None,
    mapping: Any = None,
    baseline_actor: str = BASELINE_ACTOR,
    rev: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """A workspace's history: its git history if it is a repository (commits attributed by
    the rules; ``actor`` stands for authors no rule or mapping knows), else its snapshot
    folders (every change attributed to ``actor``, which is then required)."""
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise LineageError(f"{root} is not a directory")
    if is_git_repo(root):
        summary = import_git(store, root, rev=rev, lineage=lineage or _slug(root.name), mapping=mapping,
                             progress=progress, default_actor=actor, source="workspace")
        return {**summary, "kind": "git"}
    if actor is None:
        raise LineageError(f"{root} is a folder of snapshots, which do not say who changed them: "
                           "pass --actor ai:NAME (the agent that rewrote the workspace)")
    return import_snapshots(store, root, actor=actor, lineage=lineage, baseline_actor=baseline_actor,
                            progress=progress)


__all__ = ["BASELINE_ACTOR", "FileFilter", "Scanner", "WorkspaceWatcher", "describe", "import_snapshots",
           "import_workspace", "list_snapshots", "load_snapshot", "snapshot_time", "tree_diff_payload"]
