"""Validation worker processes for large inputs, and how many are worth starting.

A worker is a plain process (``python -c``), not multiprocessing, so the caller's main
module is never imported; it imports only what validation needs (no DuckDB). Tasks say what
to read (bytes of a JSONL file, rows of a Parquet row group), results come back as Arrow
data out of band of their pickle: through the pipe, or in shared memory when large.
"""

from __future__ import annotations

import gc
import mmap
import os
import pickle
import queue
import select
import socket
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pyarrow as pa

from lineage.ingest_parse import _TASKS, Parsed

# Validation workers that keep this process busy chaining and writing (measured on 2 CPUs):
# validating a JSONL line costs about twice what chaining and writing its event does, a
# Parquet row about as much. With more, this process is what they all wait for.
WORKERS = {"jsonl": 2, "parquet": 1}


# -- worker processes -------------------------------------------------------------------------

def _message(obj) -> list:
    """``obj`` as one message: a header, its pickle, then the buffers it holds (Arrow data)
    out of band, which spares copying them into the pickle and out of it again."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    return [struct.pack(f"<{3 + len(views)}Q", len(data), len(views), 0, *(v.nbytes for v in views)), data, *views]


# A result's buffers of at least this many bytes cross in shared memory (Linux): written
# once into a memfd by the worker, mapped by this process, instead of being copied through
# the pipe twice (~0.25 s of this process's time for 1,000,000 events).
SHARED_MIN = 1 << 20
_ALIGN = 64
_CAN_SHARE = hasattr(os, "memfd_create") and hasattr(socket, "send_fds")


def _offsets(sizes) -> list[int]:
    """Where each buffer starts in the shared memory of a message (64-byte aligned, as Arrow likes)."""
    at, offsets = 0, []
    for n in sizes:
        offsets.append(at)
        at += -(-n // _ALIGN) * _ALIGN
    return [*offsets, at]


def _share(message: list, channel: socket.socket) -> list:
    """The message with its buffers moved to a memfd, whose descriptor goes over ``channel``
    now (it is read back, in order, when the message is)."""
    header, data, *views = message
    count = len(views)
    sizes = struct.unpack_from(f"<{count}Q", header, 24)
    offsets = _offsets(sizes)
    fd = os.memfd_create("lineage-ingest", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, offsets[-1])
        for view, at in zip(views, offsets[:-1], strict=True):
            done = 0
            while done < view.nbytes:
                done += os.pwrite(fd, view[done:], at + done)
        socket.send_fds(channel, [b"\0"], [fd])
    finally:
        os.close(fd)
    return [struct.pack(f"<{3 + count}Q", len(data), count, 1, *sizes), data]


def _write(fd: int, parts: list) -> None:
    """Write ``parts`` to a pipe, in as few system calls as it takes (usually one, which
    holds the GIL only at its start and end)."""
    parts = [memoryview(p).cast("B") for p in parts if len(p)]
    while parts:
        done = os.writev(fd, parts[:512])
        while parts and done >= parts[0].nbytes:
            done -= parts.pop(0).nbytes
        if parts and done:
            parts[0] = parts[0][done:]


def _send(fd: int, obj) -> None:
    _write(fd, _message(obj))


def _receive(stream, channel: socket.socket | None = None) -> object:
    size, count, shared = struct.unpack("<QQQ", _read_exactly(stream, 24))
    sizes = struct.unpack(f"<{count}Q", _read_exactly(stream, 8 * count))
    data = _read_exactly(stream, size)
    if shared:
        if channel is None:
            raise RuntimeError("a result in shared memory, and no channel for it")
        _msg, fds, _flags, _addr = socket.recv_fds(channel, 1, 1)
        if not fds:
            raise EOFError
        offsets = _offsets(sizes)
        try:
            memory = mmap.mmap(fds[0], offsets[-1], flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                               prot=mmap.PROT_READ)
        finally:
            for fd in fds:
                os.close(fd)
        view = memoryview(memory)
        return pickle.loads(data, buffers=[pa.py_buffer(view[at:at + n])
                                           for at, n in zip(offsets[:-1], sizes, strict=True)])
    # Arrow's allocator keeps the memory of freed buffers for the next ones: fresh pages
    # would cost a page fault each (~3 µs in a VM), a batch of events ~2,500 of them.
    return pickle.loads(data, buffers=[_read_exactly(stream, n, pa.allocate_buffer(n)) for n in sizes])


def _read_exactly(stream, size: int, into: pa.Buffer | None = None) -> bytearray | pa.Buffer:
    """``size`` bytes of an unbuffered stream (whose reads may return less), or EOFError."""
    data = bytearray(size) if into is None else into
    view, got = memoryview(data), 0
    while got < size:
        n = stream.readinto(view[got:])
        if not n:
            raise EOFError
        got += n
    return data


def _widen_pipe(fd: int) -> None:
    """Let a pipe hold 1 MB (Linux) rather than 64 KB: results cross it twice as fast,
    in a sixteenth of the reads and wake-ups."""
    with suppress(ImportError, OSError, AttributeError):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)


def worker_main() -> None:
    """A validation worker: tasks arrive pickled on stdin, results leave on stdout, in order.

    Run as ``python -c "from lineage.ingest_workers import worker_main; worker_main()"``; a process
    of its own rather than multiprocessing, so the caller's main module is never imported.
    The first message out says the worker is ready. A thread writes the results, so the
    worker goes on with its next task while the parent is still busy with the last ones.
    """
    gc.disable()  # what validation makes is acyclic; see _no_gc
    out = os.dup(1)
    os.dup2(2, 1)  # stray prints must not corrupt the result stream
    tasks = os.fdopen(os.dup(0), "rb", buffering=0)
    results: queue.Queue = queue.Queue(maxsize=4)  # messages not yet written: at most four
    given = os.environ.get("LINEAGE_INGEST_CHANNEL")
    channel = socket.socket(fileno=int(given)) if given else None

    def write() -> None:
        while (message := results.get()) is not None:
            try:
                if channel is not None and sum(len(p) for p in message[2:]) >= SHARED_MIN:
                    message = _share(message, channel)
                _write(out, message)
            except OSError:  # the parent is gone
                os._exit(1)

    writer = threading.Thread(target=write, name="ingest-results")
    writer.start()
    results.put(_message((True, None)))
    while True:
        try:
            name, args = _receive(tasks)
        except EOFError:
            break
        try:
            result = (True, _TASKS[name](*args))
        except (pa.ArrowException, OSError) as exc:  # the input is unreadable: the parent says so
            result = (False, exc)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            result = (False, f"{type(exc).__name__}: {exc}")
        try:
            message = _message(result)
        except (pickle.PicklingError, TypeError, AttributeError):  # an exception that does not pickle
            message = _message((False, f"{type(result[1]).__name__}: {result[1]}"))
        results.put(message)
        del result, message
        gc.collect(0)
    results.put(None)
    writer.join()


class _Workers:
    """Validation worker processes; results come back in task order.

    A task says what to read (bytes of a JSONL file, rows of a Parquet row group), so tasks
    are small; a result is Arrow data, sent out of band. Neither side waits for the other:
    a thread here per worker hands it its tasks, and a thread in the worker writes its
    results, each in one system call, while it goes on with the next task. (A thread that
    reads instead, a pipe-full at a time, needs its process's GIL after every read and
    waits up to a switch interval, 5 ms, for it while the process computes: so this process
    reads a result when it needs it, in its own thread.)

    This process validates tasks too: until a worker is ready (it takes ~0.4 s to import
    what it needs), and whenever it would otherwise wait for a busy one (``_steal``).
    """

    WAITING = 3  # tasks given to a worker at a time: one it works on, the next ones queued

    def __init__(self, n: int):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else root
        self.procs: list[subprocess.Popen] = []
        self.channels: list[socket.socket | None] = []  # where the shared memory of results comes
        for _ in range(n):
            mine = theirs = None
            if _CAN_SHARE:
                mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                env["LINEAGE_INGEST_CHANNEL"] = str(theirs.fileno())
            else:
                env.pop("LINEAGE_INGEST_CHANNEL", None)
            try:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", "from lineage.ingest_workers import worker_main; worker_main()"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0,
                    pass_fds=(theirs.fileno(),) if theirs is not None else ()))
            finally:
                if theirs is not None:
                    theirs.close()
            self.channels.append(mine)
        for proc in self.procs:
            _widen_pipe(proc.stdout.fileno())
        self._ready = [False] * n
        self._given = [0] * n  # tasks sent to each worker and not yet answered
        self._outboxes: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in self.procs]
        self._senders = [threading.Thread(target=self._feed, args=(p, q), daemon=True, name="ingest-feed")
                         for p, q in zip(self.procs, self._outboxes, strict=True)]
        for t in self._senders:
            t.start()

    @staticmethod
    def _feed(proc: subprocess.Popen, outbox: queue.SimpleQueue) -> None:
        """Send the tasks of ``outbox`` to ``proc`` until None, then close its stdin."""
        while (task := outbox.get()) is not None:
            try:
                _send(proc.stdin.fileno(), task)
            except (OSError, ValueError):
                return  # the worker is gone: reading its result says so
        with suppress(OSError):
            proc.stdin.close()

    def run(self, tasks: Iterator[tuple]) -> Iterator[tuple[Parsed, tuple]]:
        """Run ``(task, args, meta)`` tasks; yield (result, meta) in task order."""
        # (worker, meta, None) of a task given out; (-1, meta, result) of one validated here
        pending: deque[tuple[int, tuple, Parsed | None]] = deque()
        tasks = iter(tasks)
        more = True
        clean = False
        try:
            while True:
                for k in self._idle() if more else ():
                    if (task := next(tasks, None)) is None:
                        more = False
                        break
                    name, args, meta = task
                    self._outboxes[k].put((name, args))
                    self._given[k] += 1
                    pending.append((k, meta, None))
                if more and self._steal(pending):
                    if (task := next(tasks, None)) is None:
                        more = False
                    else:
                        name, args, meta = task
                        pending.append((-1, meta, _TASKS[name](*args)))
                elif pending:
                    k, meta, result = pending.popleft()
                    yield (result if k < 0 else self._result(k)), meta
                elif not more:
                    break
                elif (task := next(tasks, None)) is None:
                    more = False
                else:  # no worker is ready yet: validate here meanwhile
                    name, args, meta = task
                    yield _TASKS[name](*args), meta
            clean = True
        finally:
            if not clean:
                self.close(abort=True)  # results still in flight would come back out of step

    def _steal(self, pending: deque) -> bool:
        """Whether to validate the next task here rather than wait for the oldest result:
        when its worker is still at it with more work queued (so it stays busy meanwhile),
        and no result validated here is waiting yet. This process then takes its share
        whenever the workers are slower than its chaining and writing."""
        if not pending or pending[0][0] < 0 or any(k < 0 for k, _meta, _result in pending):
            return False
        k = pending[0][0]
        return self._given[k] >= 2 and not self._answered(k)

    def _idle(self) -> Iterator[int]:
        """Ready workers with room for another task."""
        for k in range(len(self.procs)):
            if not self._ready[k] and self._answered(k):
                self._result(k, ready=True)
                self._ready[k] = True
            while self._ready[k] and self._given[k] < self.WAITING:
                yield k

    def cpu_seconds(self) -> float:
        """CPU time the workers have used so far (Linux; 0 where unknown)."""
        total = 0.0
        for proc in self.procs:
            try:
                with open(f"/proc/{proc.pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()  # after the command name
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
            except (OSError, ValueError, IndexError):
                pass
        return total

    def _answered(self, k: int) -> bool:
        """Whether worker ``k`` has (begun to) send a message."""
        return bool(select.select([self.procs[k].stdout], [], [], 0)[0])

    def _result(self, k: int, ready: bool = False) -> Parsed | None:
        proc = self.procs[k]
        try:
            ok, value = _receive(proc.stdout, self.channels[k])
        except (EOFError, ConnectionError):
            raise RuntimeError(f"an ingest worker process died (exit code {proc.poll()})") from None
        if not ok:
            if isinstance(value, BaseException):
                raise value
            raise RuntimeError(f"an ingest worker failed: {value}")
        if not ready:
            self._given[k] -= 1
        return value

    def close(self, abort: bool = False) -> None:
        """Stop the workers: once their tasks are done, or (``abort``) at once."""
        for q in self._outboxes:
            q.put(None)
        for p in self.procs:
            if abort:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for p, t in zip(self.procs, self._senders, strict=True):
            t.join()
            with suppress(OSError):
                p.stdout.close()
        for channel in self.channels:
            if channel is not None:
                channel.close()
        self.procs, self._outboxes, self._senders, self.channels = [], [], [], []


def default_workers(fmt: str, idle_cpus: float | None = None) -> int:
    """Validation workers worth starting for a large input of format ``fmt`` ("jsonl" or
    "parquet"), given how many CPUs sat idle while this process ingested alone (None: go by
    the load average).

    A worker only pays when a CPU would otherwise idle: measured on 2 CPUs, workers make
    ingest 15-35% faster on an idle machine, and 13-17% slower beside one busy process.
    """
    if idle_cpus is None:
        try:
            idle_cpus = (os.cpu_count() or 1) - 1 - os.getloadavg()[0]  # this process keeps one busy
        except OSError:
            return 0
    return WORKERS[fmt] if idle_cpus >= 0.6 else 0


def _idle_cpu_seconds() -> float | None:
    """CPU time spent idle since boot, all CPUs together (Linux), or None where unknown."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()  # cpu user nice system idle iowait ... (clock ticks)
        return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


