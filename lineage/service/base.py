"""The plumbing of ``LineageService``: its store, connections, sessions, locking and index.

Every read of the other parts goes through ``_query`` / ``_rows`` here, on one lingering
read-only connection shared by a burst of reads (``session``), under a lock that lets
reads run together and the index refresh or a write of the UI (``exclusive``) run alone:
DuckDB refuses a read-write connection in a process that has a read-only one open on the
same file. Kept apart so that the reads themselves (``tree``, ``detail``, ``analytics``)
are only queries.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from lineage.errors import LineageError
from lineage.node_index import catch_up
from lineage.query import run_query
from lineage.segments import HEAD_SEQ_SQL
from lineage.service.rows import Metric
from lineage.store import SharedReader, Store

# Seconds the UI's read connection stays open after a read (see SharedReader).
READER_LINGER = 0.5


# -- a lock that lets reads run together and a write run alone ---------------------------------


class _ReadWriteLock:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class ServiceBase:
    """The store, the read connection and its lock, and the node index's freshness:
    what every read of ``LineageService`` stands on."""

    def __init__(self, store: Store | str | os.PathLike, *, index_lock_timeout: float = 5.0):
        self.store = store if isinstance(store, Store) else Store.open(store)
        self.index_lock_timeout = index_lock_timeout
        self._lock = _ReadWriteLock()
        self._local = threading.local()  # the connection of a ``session`` on this thread
        # Reads come in bursts (a key press, a poll): they share a connection that lingers a
        # little; it closes at once when another process waits for the file.
        self._reader = SharedReader(self.store, linger=READER_LINGER)
        self._metrics: dict[str, Metric | None] = {}
        self._signals: dict[str, tuple[int, dict[str, list[dict]]]] = {}
        self._index_seq = 0
        self._sizes: dict[str, int] = {}

    @property
    def path(self) -> Path:
        return self.store.root

    # -- plumbing ------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence | dict | None = None) -> pa.Table:
        con = getattr(self._local, "con", None)
        if con is not None:
            return run_query(self.store, sql, params, con=con)
        with self._lock.read(), self._reader.cursor() as con:
            return run_query(self.store, sql, params, con=con)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Run this thread's reads on one cursor until the block ends (the first screen's
        burst). Other processes cannot write while it is open: keep the block to a burst
        of reads, never around waiting for a person."""
        if getattr(self._local, "con", None) is not None:
            yield  # already in one
            return
        with self._lock.read(), self._reader.cursor() as con:
            self._local.con = con
            try:
                yield
            finally:
                self._local.con = None

    def _rows(self, sql: str, params: Sequence | dict | None = None) -> list[dict]:
        return self._query(sql, params).to_pylist()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Let the caller read the store directly (the replay layer does) alongside this
        service's reads, but never while a write of this process is under way."""
        with self._lock.read():
            yield

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold off every read of this service while the caller writes to the store
        (replay, branch): DuckDB cannot mix read-only and writable connections in one process."""
        with self._lock.write():
            self._reader.close()
            yield

    # -- freshness -------------------------------------------------------------------------

    def latest_seq(self) -> int:
        """The seq of the newest event in the store (0 for an empty store)."""
        return self._rows(HEAD_SEQ_SQL)[0]["seq"]

    def heads(self) -> tuple[int, int]:
        """(newest seq in the store, seq the node index is at), in one query."""
        try:
            row = self._rows(f"SELECT ({HEAD_SEQ_SQL}) AS head, "
                             "(SELECT last_seq FROM node_index_state) AS indexed")[0]
        except LineageError:
            return self.latest_seq(), 0
        return row["head"], row["indexed"] or 0

    def index_seq(self) -> int:
        try:
            return self._rows("SELECT last_seq FROM node_index_state")[0]["last_seq"]
        except LineageError:
            return 0  # a store made before the index existed: refresh_index adds it

    def refresh_index(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Fold new events into the node index; returns the seq it is at.

        Needs the store's write lock for as long as the fold takes (milliseconds for a
        live loop's new events). If a writer holds the store longer than
        ``index_lock_timeout``, the index stays where it was and StoreLocked is raised.
        """
        with self._lock.write(), self.store.writer(lock_timeout=self.index_lock_timeout) as w:  # closes our reader
            self._index_seq = catch_up(w.con, progress=progress)
        return self._index_seq
