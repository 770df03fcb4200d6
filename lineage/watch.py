"""Live ingest: watch folders and move new and growing event files into the log as they appear.

``lineage watch`` is the single owner of a store fed by many producers: workers append
JSONL lines to their own files in ``inbox/`` (``Tracker(..., inbox=True)``) and never wait
for DuckDB; the watcher notices each change through watchfiles (inotify), ingests the new
complete lines as one transaction per file, and lets go of the DuckDB file whenever it is
idle (``idle_release``), so ``lineage sql``, ``log`` or the terminal UI get in between.

It also accepts a plain folder written by some other tool: event files (``.jsonl``,
``.ndjson``, ``.parquet``) are ingested, everything else is reported once as skipped, and
bad lines are quarantined and reported with file, line and reason. A Parquet file that
cannot be read yet (it may still be being written) is retried when it changes, and
quarantined once it has stayed unreadable and unchanged for ``settle`` seconds. Every
``rescan`` seconds the folders are also listed in full, which catches anything the
file-system events missed.

Stopping: ``stop`` (a ``threading.Event``; the CLI sets it on Ctrl-C) is checked between
batches, so a clean stop leaves nothing half-done; a batch in flight commits or rolls back
as a whole whatever happens, and the next run continues from the recorded offsets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from lineage.inbox import archive, done_marker, marked_file
from lineage.ingest import FileReport, Ingester, is_event_file
from lineage.store import Store


@dataclass
class WatchTotals:
    files: int = 0
    archived: int = 0  # inbox files ingested whole, marked done, and moved to archive/
    ingested: int = 0
    duplicates: int = 0
    quarantined: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, r: FileReport) -> None:
        self.files += 1
        self.ingested += r.ingested
        self.duplicates += r.duplicates
        self.quarantined += r.quarantined


class Watcher:
    """Watch ``dirs`` (default: the store's inbox) and ingest what changes, until ``stop`` is set.

    ``on_file(report)`` is called for every ingest that did something (or found a problem);
    ``on_skip(path, reason)`` once for every file that is not an event file;
    ``on_error(path, exception)`` when ingesting a file failed (its batch rolled back; the
    file is tried again at the next change or rescan);
    ``on_archive(path, moved_to)`` when a finished inbox file was moved to the archive.
    """

    def __init__(
        self,
        store: Store,
        dirs: Iterable[str | Path] | None = None,
        *,
        stop: threading.Event | None = None,
        settle: float = 2.0,
        rescan: float = 5.0,
        idle_release: float = 0.25,
        max_hold: float = 1.0,
        workers: int | None = None,
        on_file: Callable[[FileReport], None] | None = None,
        on_skip: Callable[[Path, str], None] | None = None,
        on_error: Callable[[Path, Exception], None] | None = None,
        on_archive: Callable[[Path, Path], None] | None = None,
    ):
        self.store = store
        self.dirs = [Path(d).resolve() for d in (dirs or [store.inbox])]
        self.stop = stop or threading.Event()
        self.settle = settle
        self.rescan = rescan
        self.on_file = on_file or (lambda _r: None)
        self.on_skip = on_skip or (lambda _p, _why: None)
        self.on_error = on_error or (lambda _p, _exc: None)
        self.on_archive = on_archive or (lambda _p, _to: None)
        self.totals = WatchTotals()
        self._writer = store.writer(idle_release=idle_release, max_hold=max_hold)
        self._ingester = Ingester(store, writer=self._writer, quarantine_unreadable=False,
                                  workers=workers, should_stop=self.stop.is_set)
        self._seen: dict[Path, tuple[int, int]] = {}
        self._unreadable: dict[Path, tuple[tuple[int, int], float]] = {}
        self._skipped: set[Path] = set()
        # Store internals change on every commit; watching them would feed back forever.
        self._private = [store.db.parent / n for n in ("segments", "objects", "quarantine", "archive", ".waiting")]
        self._inbox = store.inbox.resolve()
        self._private_files = {store.db, store.db.with_name(store.db.name + ".wal")}

    # -- running ------------------------------------------------------------------------

    def run(self) -> WatchTotals:
        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        try:
            self.scan()
            last_scan = 0.0  # scan again once the watch is in place: nothing falls in between
            for changes in watchfiles.watch(
                *self.dirs, watch_filter=self._wanted, debounce=200, step=20, rust_timeout=500,
                yield_on_timeout=True, stop_event=self.stop, raise_interrupt=False,
            ):
                if self.stop.is_set():
                    break
                for path in sorted({Path(p) for change, p in changes if change != watchfiles.Change.deleted}):
                    if self.stop.is_set():
                        break
                    self.consider(path)
                if time.monotonic() - last_scan >= self.rescan:
                    self.scan()
                    last_scan = time.monotonic()
                self._retry_unreadable()
        finally:
            self._ingester.close()
            self._writer.close()
        return self.totals

    def scan(self) -> None:
        """Look at every file in the watched folders (at start, and now and then)."""
        for d in self.dirs:
            for path in sorted(p for p in d.rglob("*") if p.is_file()):
                if self.stop.is_set():
                    return
                if self._wanted(None, str(path)):
                    self.consider(path)

    def consider(self, path: Path) -> None:
        """Ingest ``path`` if it is an event file that changed since it was last looked at.

        A file in the store's inbox that its producer marked done (see ``lineage.inbox``) is
        read to its end, its last line too, and then moved out of the inbox."""
        target = marked_file(path)
        if target is not None and is_event_file(target):
            if self._in_inbox(target):
                if target.exists():
                    self._seen.pop(target, None)  # read again, to its end
                    self.consider(target)
                else:  # archived, and the marker left behind by a crash
                    done_marker(target).unlink(missing_ok=True)
            return
        try:
            st = path.stat()
        except OSError:
            return  # gone again
        if not is_event_file(path):
            if path not in self._skipped and not path.name.startswith(".") and not path.name.endswith(".tmp"):
                self._skipped.add(path)
                self.totals.skipped.append((path, "not an event file (expected .jsonl, .ndjson or .parquet)"))
                self.on_skip(path, "not an event file (expected .jsonl, .ndjson or .parquet)")
            return
        key = (st.st_size, st.st_mtime_ns)
        if self._seen.get(path) == key:
            return
        done = self._in_inbox(path) and done_marker(path).exists()
        complete, self._ingester.complete = self._ingester.complete, self._ingester.complete or done
        try:
            report = self._ingester.ingest_file(path)
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk: report it, retry at the next rescan
            self.on_error(path, exc)
            return
        finally:
            self._ingester.complete = complete
        self._seen[path] = key
        if report.unreadable and report.quarantined == 0:
            first = self._unreadable.get(path)
            if first is None or first[0] != key:
                self._unreadable[path] = (key, time.monotonic())
        else:
            self._unreadable.pop(path, None)
        self.totals.add(report)
        if report.ingested or report.duplicates or report.quarantined or report.restarted:
            self.on_file(report)
        if done and not self.stop.is_set() and not report.unreadable and self._ingester.finished(path):
            moved = archive(self._inbox, self.store.archive, path.resolve())
            self._seen.pop(path, None)
            self.totals.archived += 1
            self.on_archive(path, moved)

    def _in_inbox(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self._inbox)

    def _retry_unreadable(self) -> None:
        """A file unreadable and unchanged for ``settle`` seconds is finished, and bad: quarantine it."""
        now = time.monotonic()
        for path, (key, since) in list(self._unreadable.items()):
            try:
                st = path.stat()
            except OSError:
                self._unreadable.pop(path, None)
                continue
            if (st.st_size, st.st_mtime_ns) != key:
                self._unreadable[path] = ((st.st_size, st.st_mtime_ns), now)
                continue
            if now - since < self.settle:
                continue
            self._seen.pop(path, None)
            self._ingester.quarantine_unreadable = True
            try:
                self.consider(path)
            finally:
                self._ingester.quarantine_unreadable = False
            self._unreadable.pop(path, None)

    def _wanted(self, _change, path: str) -> bool:
        p = Path(path)
        if p in self._private_files or p.name.startswith(".") or p.parent.name.startswith(".") \
                or p.name.endswith((".tmp", "~")):
            return False
        return not any(p.is_relative_to(d) for d in self._private)


def watch(store: Store, dirs: Iterable[str | Path] | None = None, **options) -> WatchTotals:
    """Run a ``Watcher`` until its ``stop`` event is set (see ``Watcher`` for the options)."""
    return Watcher(store, dirs, **options).run()


__all__ = ["WatchTotals", "Watcher", "watch"]
