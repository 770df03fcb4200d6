"""Crash safety: a process killed with SIGKILL at any moment loses no acknowledged event,
never leaves half an event behind, and the store opens and verifies afterwards.

Real processes, real files: each child is a separate Python that appends through the SDK
(or runs `lineage ingest`) and is killed without warning.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import orjson

from lineage.ingest import ingest
from lineage.store import Store
from lineage.verify import verify

# Appends as fast as it can: single events and small group commits (which are acknowledged
# only when the batch has committed), with a low seal threshold so some kills land in a seal.
# It prints one line per acknowledged event, flushed, only after the store returned.
APPENDER = textwrap.dedent("""
    import sys
    from lineage.tracker import Tracker

    store, run = sys.argv[1], sys.argv[2]
    with Tracker(store, lineage="crash", actor="ai:child") as t:
        t._writer.seal_threshold = 250
        print("ready", flush=True)
        sys.stdin.readline()
        i = 0
        while True:
            if i % 7 == 0:
                with t.batch():
                    ids = [t.record("annotation", {"text": f"{run}-{i}-{k}"}, node=f"n{i % 5}") for k in range(5)]
                for eid in ids:
                    print("ack", eid, flush=True)
            else:
                ack = t.record("score", {"metric": "m", "value": i}, node=f"n{i % 5}")
                print("ack", ack.event_id, ack.seq, flush=True)
            i += 1
""")


class Child:
    """A started child: lines from its stdout are collected by a thread."""

    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen([sys.executable, "-c", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            if not raw.endswith("\n"):
                break  # a line cut by the kill was never acknowledged
            if raw == "ready\n":
                self.ready.set()
            else:
                self.lines.append(raw.split())
        self.ready.set()

    def go(self) -> None:
        assert self.ready.wait(60), self.proc.stderr.read()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill(self) -> list[list[str]]:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join(10)
        return self.lines


def event_ids(store: Store) -> Counter:
    with store.reader() as con:
        return Counter(r[0] for r in con.execute("SELECT event_id FROM events").fetchall())


def test_sigkill_at_a_random_moment_20_times_loses_no_acknowledged_event(tmp_path):
    root = tmp_path / "store"
    Store.init(root)
    rng = random.Random(20)
    acked: list[str] = []
    # The next child is started (and imports) while the previous one is being checked.
    child = Child([APPENDER, str(root), "0"])
    for run in range(20):
        child.go()
        deadline = time.monotonic() + 30
        while not child.lines and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.4))
        lines = child.kill()
        if run < 19:
            child = Child([APPENDER, str(root), str(run + 1)])
        assert lines, f"run {run}: the child acknowledged nothing"
        acked += [parts[1] for parts in lines if parts[0] == "ack"]

        store = Store.open(root)  # opens after the crash (DuckDB replays its WAL)
        report = verify(store)
        assert report.ok, f"run {run}: {[str(f) for f in report.findings]}"
        counts = event_ids(store)
        missing = [e for e in acked if counts[e] == 0]
        assert not missing, f"run {run}: {len(missing)} acknowledged events lost, e.g. {missing[:3]}"
        assert all(n == 1 for n in counts.values()), f"run {run}: an event is stored twice"
    assert len(acked) > 20


def test_a_killed_ingest_resumes_and_stores_every_event_exactly_once(tmp_path):
    store = Store.init(tmp_path / "store")
    n = 40_000
    src = tmp_path / "events.jsonl"
    with open(src, "wb") as f:
        for i in range(n):
            line = {"lineage": "bulk", "kind": "score", "actor": "system:eval", "node": f"n{i % 9}",
                    "payload": {"metric": "acc", "value": i}}
            if i % 2:
                line["event_id"] = f"01937f2a-0000-7000-8000-{i:012d}"  # the rest get derived ids
            f.write(orjson.dumps(line) + b"\n")
    cli = "from lineage.cli import main; main()"
    rng = random.Random(3)
    for _ in range(2):
        p = subprocess.Popen([sys.executable, "-c", cli, "ingest", "--quiet", "--workers", "0",
                              "--store", str(store.root), str(src)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(1.0, 2.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert verify(store).ok
        assert all(c == 1 for c in event_ids(store).values())
    report = ingest(store, [src])
    counts = event_ids(store)
    assert len(counts) == n and all(c == 1 for c in counts.values())
    assert report.quarantined == 0
    assert verify(store).ok


def test_a_bulk_ingest_killed_at_random_moments_resumes_and_stores_every_event_exactly_once(tmp_path):
    # Bulk: every commit is a segment, written while the next one is chained (and committed
    # after it is durable), in validation workers: kills land in any of those steps.
    store = Store.init(tmp_path / "store")
    n, files = 30_000, []
    for k in range(4):
        files.append(tmp_path / f"bulk{k}.jsonl")
        with open(files[-1], "wb") as f:
            for i in range(k * n, (k + 1) * n):
                f.write(orjson.dumps({"event_id": f"01937f2a-0000-7000-8000-{i:012d}", "lineage": "bulk",
                                      "kind": "score", "actor": "system:eval",
                                      "payload": {"metric": "acc", "value": i / 7}}) + b"\n")
    code = textwrap.dedent("""
        import sys
        from lineage.ingest import Ingester
        from lineage.store import Store
        with Ingester(Store.open(sys.argv[1]), bulk_bytes=0, parallel_bytes=0, workers=1, commit_events=3000,
                      chunk_bytes=64 << 10) as ing:
            ing.ingest(sys.argv[2:])
    """)
    rng = random.Random(7)
    killed = 0
    for _ in range(10):
        p = subprocess.Popen([sys.executable, "-c", code, str(store.root), *map(str, files)], stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.5, 1.0))
        p.send_signal(signal.SIGKILL)
        killed += p.wait() == -signal.SIGKILL
        assert verify(store).ok
        assert all(c == 1 for c in event_ids(store).values())
        if killed == 3 or store.count() == 4 * n:
            break
    assert killed >= 2
    report = ingest(store, files, bulk_bytes=0)
    counts = event_ids(store)
    assert len(counts) == 4 * n and all(c == 1 for c in counts.values())
    assert report.quarantined == 0
    assert verify(store).ok


def test_a_producer_killed_mid_line_leaves_a_pending_line_never_half_an_event(tmp_path):
    store = Store.init(tmp_path / "store")
    code = textwrap.dedent("""
        import os, sys
        from lineage.tracker import Tracker
        with Tracker(sys.argv[1], lineage="inbox", actor="ai:w", inbox=True) as t:
            for i in range(50):
                t.record("annotation", {"text": f"note {i}"})
            t._inbox_file.write(b'{"lineage": "inbox", "kind": "annotation", "actor": "ai:w", "pay')
            t._inbox_file.flush()
            os.kill(os.getpid(), 9)
    """)
    subprocess.run([sys.executable, "-c", code, str(store.root)], timeout=60)
    (inbox_file,) = store.inbox.glob("*.jsonl")
    report = ingest(store, [store.inbox])
    assert (report.ingested, report.quarantined) == (50, 0)
    assert report.pending_bytes == len(inbox_file.read_bytes().split(b"\n")[-1]) > 0
    # A finished producer's torn line is declared complete by the operator: then it is quarantined.
    report = ingest(store, [inbox_file], complete=True)
    assert (report.ingested, report.quarantined) == (0, 1)
    assert store.count() == 50
    assert os.path.exists(store.quarantine)
    assert any(Path(store.quarantine).glob("*.jsonl"))
