"""The store: one directory with a DuckDB file, sealed Parquet segments, objects, an inbox.

Concurrency. DuckDB lets one process write a file, and no other process open it while it
does. A writer therefore holds the file only while it is busy: it takes the lock (retrying
while another process holds it), appends, and lets go once idle. Readers (``lineage sql``,
``log``, the terminal UI) open the file read-only for one query at a time, retrying on
the lock the same way, so a reader opened while a loop is writing sees its events as soon
as the writer pauses. Producers that must never wait write JSONL into ``inbox/`` instead.

Within one process, DuckDB shares one database instance between connections, so two
writers there would each believe they own the chain head; a per-store thread lock makes
them take turns.
"""

from __future__ import annotations

import os
import random
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from lineage.db import first_row
from lineage.errors import StoreLocked, StoreNotFound
from lineage.migrations import migrate
from lineage.objects import ObjectStore
from schemas.chain import GENESIS_HASH, canonical_body, chain_hash, now_us

if TYPE_CHECKING:
    from schemas import Draft, Prepared

STORE_ENV = "LINEAGE_STORE"
DEFAULT_STORE = ".lineage"
DB_FILE = "lineage.duckdb"
DEFAULT_SEAL_THRESHOLD = 50_000  # small enough that the hot table never bloats the DuckDB file

ARROW_SCHEMA = pa.schema([
    ("seq", pa.int64()),
    ("event_id", pa.string()),
    ("lineage", pa.string()),
    ("branch", pa.string()),
    ("node", pa.string()),
    ("kind", pa.string()),
    ("actor_kind", pa.string()),
    ("actor", pa.string()),
    ("actor_node", pa.string()),
    ("occurred_at", pa.timestamp("us", tz="UTC")),
    ("recorded_at", pa.timestamp("us", tz="UTC")),
    ("payload", pa.string()),
    ("schema_version", pa.int32()),
    ("caused_by", pa.string()),
    ("prev_hash", pa.string()),
    ("hash", pa.string()),
])

_INSERT_ONE = "INSERT INTO event_log VALUES (?, ?, ?, ?)"

HOT_SCHEMA = pa.schema([("seq", pa.int64()), ("body", pa.string()), ("prev_hash", pa.string()), ("hash", pa.string())])

# One writer at a time per store in this process. A plain Lock, not an RLock: the idle
# thread must be able to release it, and a second Writer in the same thread must not
# re-enter while the first still caches the chain head (it takes the lease over instead).
_process_locks: dict[Path, threading.Lock] = {}
_process_locks_guard = threading.Lock()
_open_writers: dict[Path, int] = {}
# Writers of this process from the moment they try to connect, and the shared readers
# they must close first (see SharedReader).
_writers_here: dict[Path, int] = {}
_shared_readers: dict[Path, weakref.WeakSet] = {}
_holders: dict[Path, Writer] = {}
_local_waiting: dict[Path, int] = {}  # threads of this process waiting for a store's writer lock


def _process_lock(db: Path) -> threading.Lock:
    with _process_locks_guard:
        return _process_locks.setdefault(db, threading.Lock())


def resolve_store_path(store: str | os.PathLike | None = None) -> Path:
    """``--store DIR``, else ``$LINEAGE_STORE``, else ``./.lineage``."""
    if store:
        return Path(store).expanduser().resolve()
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return Path(DEFAULT_STORE).resolve()


@dataclass(frozen=True, slots=True)
class Stored:
    """What the store acknowledges for one appended event."""

    seq: int
    event_id: str
    hash: str


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


# Fair turns. A process that finds the file locked leaves a marker in `.waiting/` until it
# gets in; waiting readers try before waiting writers, and each in the order they came. A
# writer lets go every max_hold seconds, and within YIELD_AFTER seconds when a reader is
# waiting; then it waits, up to HANDOVER_MAX, until the processes that were waiting have
# had their turn. Without this, a reader could lose every race against writers that re-take
# the file (measured: 4+ s waits with four writers appending; with it, under 1 s).
WAITING_DIR = ".waiting"
YIELD_AFTER = 0.2
HANDOVER_MAX = 1.0
UNANNOUNCED_IDLE = 2.0
FIFO_PATIENCE = 1.0


def _waiting_dir(db: Path) -> Path:
    return db.parent / WAITING_DIR


def _announce(db: Path, role: str) -> Path | None:
    """Mark this process as waiting for ``db`` (best effort: a read-only store may refuse)."""
    d = _waiting_dir(db)
    try:
        d.mkdir(exist_ok=True)
        marker = d / f"{os.getpid()}-{time.time_ns()}-{threading.get_ident()}-{role}"
        marker.touch()
        return marker
    except OSError:
        return None


def _ahead(mine: str, other: str) -> bool:
    """Whether the waiter ``other`` goes before ``mine``: readers (quick) before writers,
    then first come, first served."""
    try:
        m, o = mine.split("-"), other.split("-")
        return (o[3] == "r", -int(o[1])) > (m[3] == "r", -int(m[1]))
    except (IndexError, ValueError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _waiters(db: Path) -> set[str]:
    """Markers of other live processes waiting for ``db``; markers of dead ones are removed."""
    d = _waiting_dir(db)
    try:
        names = os.listdir(d)
    except OSError:
        return set()
    out = set()
    for name in names:
        try:
            pid = int(name.split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        if not _pid_alive(pid):
            with suppress(OSError):
                (d / name).unlink()
            continue
        out.add(name)
    return out


def _connect(db: Path, *, read_only: bool, timeout: float) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, retrying while another process holds its lock."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    marker: Path | None = None
    try:
        while True:
            try:
                con = duckdb.connect(str(db), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if not _is_lock_error(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreLocked(
                        f"{db} is busy: another process has held it for {timeout:.0f}s ({exc}). "
                        "Wait for it, or send events through the inbox (Tracker(..., inbox=True))."
                    ) from exc
                if marker is None:
                    marker = _announce(db, "r" if read_only else "w")
                    waiting_since = time.monotonic()
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.02)
                # Take turns: let those ahead try first (unless one seems stuck for FIFO_PATIENCE).
                while marker is not None and time.monotonic() - waiting_since < FIFO_PATIENCE:
                    if not any(_ahead(marker.name, w) for w in _waiters(db)):
                        break
                    time.sleep(0.003)
    finally:
        if marker is not None:
            with suppress(OSError):
                marker.unlink()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET python_enable_replacements = false")
    return con


class Store:
    """A lineage store on disk. Cheap to construct; opens DuckDB only when asked."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.db = self.root / DB_FILE
        self.segments_dir = self.root / "segments"
        self.objects = ObjectStore(self.root / "objects")
        self.inbox = self.root / "inbox"
        self.quarantine = self.root / "quarantine"
        self.archive = self.root / "archive"  # inbox files ingested whole and marked done

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    def init(cls, root: str | os.PathLike | None = None) -> Store:
        store = cls(resolve_store_path(root))
        for d in (store.root, store.segments_dir, store.objects.root, store.inbox, store.quarantine):
            d.mkdir(parents=True, exist_ok=True)
        with store.writer() as w:
            w.con  # noqa: B018 - opening runs the migrations
        return store

    @classmethod
    def open(cls, root: str | os.PathLike | None = None) -> Store:
        path = resolve_store_path(root)
        store = cls(path)
        if not store.db.exists():
            raise StoreNotFound(f"no lineage store at {path}; create one with `lineage init --store {path}` (or run `lineage demo`)")
        return store

    def exists(self) -> bool:
        return self.db.exists()

    # -- writing -------------------------------------------------------------------

    def writer(self, **options) -> Writer:
        return Writer(self, **options)

    def append(self, drafts: Draft | Sequence[Draft]) -> list[Stored]:
        """Validate and durably append events; all or nothing."""
        from schemas import Draft, prepare  # validation (pydantic) loads only for writers

        if isinstance(drafts, Draft):
            drafts = [drafts]
        prepared = [prepare(d) for d in drafts]
        with self.writer() as w:
            return w.append_many(prepared)

    def seal(self):
        with self.writer() as w:
            return w.seal()

    # -- reading -------------------------------------------------------------------

    @contextmanager
    def reader(self, timeout: float = 30.0) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for one unit of work. Released on exit so writers can go on."""
        if not self.db.exists():
            raise StoreNotFound(f"no lineage store at {self.root}; create one with `lineage init`")
        if _open_writers.get(self.db):
            # This process is writing: DuckDB shares the instance, a cursor sees committed data.
            con = duckdb.connect(str(self.db))
            con.execute("SET TimeZone = 'UTC'")
            try:
                yield con
            finally:
                con.close()
            return
        con = _connect(self.db, read_only=True, timeout=timeout)
        try:
            yield con
        finally:
            con.close()

    def query_arrow(self, sql: str, params: Sequence | None = None) -> pa.Table:
        with self.reader() as con:
            return con.sql(sql, params=params or None).to_arrow_table()

    def count(self) -> int:
        with self.reader() as con:
            return first_row(con.execute("SELECT count(*) FROM events"))[0]

    def events(self, *, lineage: str | None = None, node: str | None = None, kind: str | None = None,
               since: int = 0, limit: int | None = None) -> list:
        """Stored events as typed ``EventEnvelope`` records, in seq order."""
        import orjson

        from schemas.event import EventEnvelope

        where, params = ["seq > ?"], [since]
        for col, value in (("lineage", lineage), ("node", node), ("kind", kind)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY seq" + (f" LIMIT {int(limit)}" if limit else "")
        rows = self.query_arrow(sql, params).to_pylist()
        return [EventEnvelope(**{**r, "payload": orjson.loads(r["payload"])}) for r in rows]


class SharedReader:
    """A read-only connection kept open across reads that come close together.

    An interactive reader (the terminal UI) reads in bursts: a key press costs a query or
    two, and opening the file costs 15-25 ms each time, as much as the query. This keeps
    one connection (each read gets its own cursor on it) until no read has come for
    ``linger`` seconds, or at once when another process is waiting for the file (its
    marker in ``.waiting/``, checked every ``CHECK_EVERY`` seconds), so a writer waits a
    few milliseconds longer than it would for a reader that opens and closes, no more.
    While this process holds a writer, reads go through ``Store.reader`` instead.
    """

    CHECK_EVERY = 0.02

    def __init__(self, store: Store, *, linger: float = 0.5, timeout: float = 30.0) -> None:
        self.store = store
        self.linger = linger
        self.timeout = timeout
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._last_use = 0.0
        self._idle = threading.Condition(self._lock)
        _shared_readers.setdefault(store.db, weakref.WeakSet()).add(self)

    @property
    def is_open(self) -> bool:
        return self._con is not None

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if _writers_here.get(self.store.db):
            with self.store.reader(self.timeout) as con:
                yield con
            return
        with self._lock:
            if self._con is None:
                if not self.store.db.exists():
                    raise StoreNotFound(f"no lineage store at {self.store.root}; create one with `lineage init`")
                self._con = _connect(self.store.db, read_only=True, timeout=self.timeout)
                threading.Thread(target=self._watch, args=(self._con,), name="lineage-reader-linger",
                                 daemon=True).start()
            cur = self._con.cursor()
            self._users += 1
        try:
            # settings belong to each cursor, not to the connection
            cur.execute("SET TimeZone = 'UTC'")
            cur.execute("SET python_enable_replacements = false")
            yield cur
        finally:
            cur.close()
            with self._lock:
                self._users -= 1
                self._last_use = time.monotonic()
                self._idle.notify_all()

    def close(self, wait: float = 30.0) -> None:
        """Close the connection now, once the reads under way (up to ``wait`` seconds)
        are done; the next read opens it again."""
        with self._lock:
            self._idle.wait_for(lambda: self._users == 0, timeout=wait)
            con, self._con = self._con, None
        if con is not None:
            con.close()

    def _watch(self, con: duckdb.DuckDBPyConnection) -> None:
        while True:
            time.sleep(self.CHECK_EVERY)
            with self._lock:
                if self._con is not con:
                    return  # closed (and maybe reopened: that one has its own watcher)
                if self._users:
                    continue
                if time.monotonic() - self._last_use < self.linger and not _waiters(self.store.db):
                    continue
                self._con = None
            con.close()
            return


class Writer:
    """Holds the store for appending. Use as a context manager, or call ``release()``.

    ``idle_release``: let go of the DuckDB file after this many idle seconds (a loop that
    computes between events then never blocks readers). ``max_hold``: when appending
    continuously, hand the file over this often so readers and other writers get a turn.
    """

    def __init__(
        self,
        store: Store,
        *,
        lock_timeout: float = 60.0,
        idle_release: float | None = None,
        max_hold: float | None = None,
        seal_threshold: int = DEFAULT_SEAL_THRESHOLD,
    ):
        self.store = store
        self.lock_timeout = lock_timeout
        self.idle_release = idle_release
        self.max_hold = max_hold
        self.seal_threshold = seal_threshold
        self._con: duckdb.DuckDBPyConnection | None = None
        self._thread_lock = _process_lock(store.db)
        self._mutex = threading.RLock()
        self._head_seq = 0
        self._head_hash = GENESIS_HASH
        self._hot = 0
        self._held_since = 0.0
        self._last_used = 0.0
        self._closed = False
        self._idle_thread: threading.Thread | None = None
        self._schema_checked = False
        self._owner: int | None = None
        self._checked_waiters = 0.0

    # -- the lease -------------------------------------------------------------------

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        with self._mutex:
            if self._con is None:
                self._acquire()
            self._last_used = time.monotonic()
            return self._con

    def _acquire(self) -> None:
        holder = _holders.get(self.store.db)
        if holder is not None and holder is not self and holder._owner == threading.get_ident():
            # Another Writer of this very thread holds the store: it cannot be mid-append
            # while we run, so it hands the lease over and re-reads the head when next used.
            holder.release()
        if not self._thread_lock.acquire(blocking=False):
            _local_waiting[self.store.db] = _local_waiting.get(self.store.db, 0) + 1
            try:
                got = self._thread_lock.acquire(timeout=self.lock_timeout)
            finally:
                _local_waiting[self.store.db] -= 1
            if not got:
                raise StoreLocked(f"{self.store.db} is held by another writer in this process for over {self.lock_timeout:.0f}s")
        _writers_here[self.store.db] = _writers_here.get(self.store.db, 0) + 1
        try:
            # DuckDB refuses a writable connection beside a read-only one in one process.
            for reader in list(_shared_readers.get(self.store.db, ())):
                reader.close(wait=self.lock_timeout)
            self.store.root.mkdir(parents=True, exist_ok=True)
            con = _connect(self.store.db, read_only=False, timeout=self.lock_timeout)
            if not self._schema_checked:
                # Once per Writer: a re-acquired lease finds the schema as it left it
                # (other writers seal, which redefines `events` in its own transaction).
                migrate(con)
                from lineage.segments import ensure_events_view

                ensure_events_view(con, self.store)
                self._schema_checked = True
            row = first_row(con.execute("SELECT seq, hash FROM event_log ORDER BY seq DESC LIMIT 1"))
            if row is None:
                row = first_row(con.execute("SELECT last_seq, last_hash FROM segments ORDER BY last_seq DESC LIMIT 1"))
            self._head_seq, self._head_hash = row if row else (0, GENESIS_HASH)
            self._hot = first_row(con.execute("SELECT count(*) FROM event_log"))[0]
        except BaseException:
            _writers_here[self.store.db] -= 1
            self._thread_lock.release()
            raise
        self._con = con
        self._held_since = time.monotonic()
        self._owner = threading.get_ident()
        _holders[self.store.db] = self
        _open_writers[self.store.db] = _open_writers.get(self.store.db, 0) + 1
        if self.idle_release and self._idle_thread is None:
            self._idle_thread = threading.Thread(target=self._release_when_idle, daemon=True)
            self._idle_thread.start()

    def release(self) -> None:
        with self._mutex:
            if self._con is None:
                return
            try:
                self._con.close()
            finally:
                self._con = None
                _open_writers[self.store.db] -= 1
                _writers_here[self.store.db] -= 1
                if _holders.get(self.store.db) is self:
                    del _holders[self.store.db]
                self._thread_lock.release()

    def close(self) -> None:
        self._closed = True
        self.release()

    def _release_when_idle(self) -> None:
        while not self._closed:
            time.sleep(min(0.05, self.idle_release))
            with self._mutex:
                if self._con is None:
                    continue
                idle = time.monotonic() - self._last_used
                # Letting go costs a checkpoint now and a reopen at the next append (~50 ms),
                # so an idle loop keeps the file unless someone is waiting for it; clients
                # that cannot announce themselves (a plain duckdb shell) get it after UNANNOUNCED_IDLE.
                wanted = _local_waiting.get(self.store.db, 0) > 0 or _waiters(self.store.db)
                if idle >= UNANNOUNCED_IDLE or (idle >= self.idle_release and wanted):
                    self.release()

    def _maybe_yield(self) -> None:
        """Under continuous appends, let other processes in: every ``max_hold`` s, and within
        ``YIELD_AFTER`` s when a reader announces that it is waiting; then wait for the
        processes that were waiting to have had their turn."""
        if self._con is None:
            return
        now = time.monotonic()
        held = now - self._held_since
        due = bool(self.max_hold) and held >= self.max_hold
        waiting: set[str] = set()
        if (due or held >= YIELD_AFTER) and now - self._checked_waiters >= 0.02:
            self._checked_waiters = now
            waiting = _waiters(self.store.db)
            due = due or any(w.endswith("-r") for w in waiting)
        if not due:
            return
        self.release()
        deadline = time.monotonic() + HANDOVER_MAX
        while waiting and time.monotonic() < deadline:
            time.sleep(0.005)
            waiting &= _waiters(self.store.db)
        time.sleep(0.002 + random.random() * 0.008)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def head(self) -> tuple[int, str]:
        with self._mutex:
            self.con  # noqa: B018 - make sure the head is read from disk
            return self._head_seq, self._head_hash

    # -- appending -----------------------------------------------------------------

    def append(self, event: Prepared) -> Stored:
        """Durably append one event (one DuckDB commit)."""
        with self._mutex:
            self._maybe_yield()
            con = self.con
            seq = self._head_seq + 1
            rec = now_us()
            e = event
            body = canonical_body(
                seq, e.event_id, e.lineage, e.branch, e.node, e.kind, e.actor_kind, e.actor,
                e.actor_node, e.occurred_us, rec, e.payload_json, e.schema_version, e.caused_by)
            h = chain_hash(self._head_hash, body)
            con.execute(_INSERT_ONE, [seq, body, self._head_hash, h])
            self._head_seq, self._head_hash = seq, h
            self._hot += 1
            self._last_used = time.monotonic()
            self._seal_if_due()
            return Stored(seq, e.event_id, h)

    def append_many(self, events: Sequence[Prepared], *, skip_existing: bool = False) -> list[Stored]:
        """Append a batch in one transaction (group commit): all of it, or none of it.

        ``skip_existing``: leave out events whose ``event_id`` is already stored (or repeated
        within the batch), which makes re-sending a file or re-running an import a no-op.
        Only the events actually appended are acknowledged.
        """
        if not events:
            return []
        with self._mutex:
            self._maybe_yield()
            con = self.con
            if skip_existing:
                events = self._new_only(con, events)
                if not events:
                    return []
            table, acks = self._chain(events)
            con.register("_lineage_batch", table)
            try:
                con.execute("BEGIN")
                con.execute("INSERT INTO event_log SELECT * FROM _lineage_batch")
                con.execute("COMMIT")
            except BaseException:
                with suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("_lineage_batch")
            self._head_seq, self._head_hash = acks[-1].seq, acks[-1].hash
            self._hot += len(acks)
            self._last_used = time.monotonic()
            self._seal_if_due()
            return acks

    @staticmethod
    def _new_only(con: duckdb.DuckDBPyConnection, events: Sequence[Prepared]) -> list[Prepared]:
        ids = pa.table({"event_id": pa.array([e.event_id for e in events], pa.string())})
        con.register("_lineage_ids", ids)
        try:
            known = {r[0] for r in con.execute(
                "SELECT event_id FROM events WHERE event_id IN (SELECT event_id FROM _lineage_ids)").fetchall()}
        finally:
            con.unregister("_lineage_ids")
        out, seen = [], set()
        for e in events:
            if e.event_id in known or e.event_id in seen:
                continue
            seen.add(e.event_id)
            out.append(e)
        return out

    def _chain(self, events: Sequence[Prepared]) -> tuple[pa.Table, list[Stored]]:
        """Assign seq, recorded_at and hashes to a batch, as hot-log rows in Arrow."""
        seq = self._head_seq
        prev = self._head_hash
        rec = now_us()
        seqs, bodies, prevs, hashes, acks = [], [], [], [], []
        for e in events:
            seq += 1
            body = canonical_body(
                seq, e.event_id, e.lineage, e.branch, e.node, e.kind, e.actor_kind, e.actor,
                e.actor_node, e.occurred_us, rec, e.payload_json, e.schema_version, e.caused_by)
            h = chain_hash(prev, body)
            seqs.append(seq)
            bodies.append(body)
            prevs.append(prev)
            hashes.append(h)
            acks.append(Stored(seq, e.event_id, h))
            prev = h
        table = pa.Table.from_arrays(
            [pa.array(seqs, pa.int64()), pa.array(bodies, pa.string()), pa.array(prevs, pa.string()), pa.array(hashes, pa.string())],
            schema=HOT_SCHEMA,
        )
        return table, acks

    def _seal_if_due(self) -> None:
        if self.seal_threshold and self._hot >= self.seal_threshold:
            self.seal()

    def seal(self):
        from lineage.segments import seal

        with self._mutex:
            result = seal(self.con, self.store)
            if result is not None:
                self._hot = 0
            return result
