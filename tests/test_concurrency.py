"""Many producers and live readers at once: nothing lost, nothing doubled, the chain holds,
and a reader sees new events within two seconds.

Real processes on one real store: producers append through the SDK, either straight into
the DuckDB file (taking turns on its lock) or into the inbox with `lineage watch` as the
single owner, while a reader process queries the way `lineage sql` does.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from lineage.store import Store
from lineage.verify import verify

PRODUCER = textwrap.dedent("""
    import sys
    from lineage.tracker import Tracker

    store, k, n, mode, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    with Tracker(store, lineage="many", actor=f"ai:worker-{k}", inbox=(mode == "inbox")) as t:
        print("ready", flush=True)
        sys.stdin.readline()
        for start in range(0, n, size):
            with t.batch():  # one transaction (or one fsynced write) per `size` events
                for i in range(start, min(n, start + size)):
                    t.record("score", {"metric": "m", "value": i, "worker": k, "i": i}, node=f"w{k}")
    print("done", flush=True)
""")

# Polls like `lineage sql` does (a read-only connection per query) and prints
# "<unix time> <events seen> <seconds the query waited>" per query.
READER = textwrap.dedent("""
    import sys, time
    from lineage.store import Store

    store = Store.open(sys.argv[1])
    print("ready", flush=True)
    end = time.time() + float(sys.argv[2])
    while time.time() < end:
        t0 = time.time()
        with store.reader() as con:
            n = con.execute("SELECT count(*) FROM events").fetchone()[0]
        print(f"{time.time():.4f} {n} {time.time() - t0:.4f}", flush=True)
        time.sleep(0.05)
""")

# Appends one event every 20 ms and prints "<unix time> <seq>" once each is acknowledged.
LIVE_WRITER = textwrap.dedent("""
    import sys, time
    from lineage.tracker import Tracker

    store, seconds, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    with Tracker(store, lineage="live", actor="ai:loop", inbox=(mode == "inbox")) as t:
        end = time.time() + seconds
        i = 0
        while time.time() < end:
            i += 1
            t.record("annotation", {"text": f"step {i}"})
            print(f"{time.time():.4f} {i}", flush=True)
            time.sleep(0.02)
""")


def start(code: str, *args: object) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    return p


def wait_ready(p: subprocess.Popen) -> None:
    line = p.stdout.readline()
    assert line == "ready\n", line + p.stderr.read()


def start_watch(store: Store) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", "from lineage.cli import main; main()", "watch", "--store",
                          str(store.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)
    return p


def stop_watch(p: subprocess.Popen) -> str:
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return out


def rows(store: Store, sql: str) -> list[tuple]:
    with store.reader() as con:
        return con.execute(sql).fetchall()


def wait_for_count(store: Store, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        seen = store.count()
        if seen >= n or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


@pytest.mark.parametrize("mode", ["direct", "inbox"])
def test_four_producers_append_5000_events_each_at_once_while_a_reader_queries(tmp_path, mode):
    store = Store.init(tmp_path / "store")
    watcher = start_watch(store) if mode == "inbox" else None
    # Direct producers take turns on the DuckDB file (a turn costs ~0.1 s of open and close),
    # so they commit 100 events at a time; inbox producers fsync every 20 events.
    producers = [start(PRODUCER, store.root, k, 5000, mode, 100 if mode == "direct" else 20) for k in range(4)]
    for p in producers:
        wait_ready(p)
    reader = start(READER, store.root, 600)
    wait_ready(reader)
    started = time.time()
    for p in producers:  # all at once
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in producers:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and "done" in out, err
    if watcher is not None:
        assert wait_for_count(store, 20_000, timeout=60) == 20_000
        assert "20000 ingested" in stop_watch(watcher)
    finished = time.time()
    time.sleep(0.3)
    reader.terminate()
    reads = [tuple(map(float, line.split())) for line in reader.communicate(timeout=30)[0].splitlines()]

    assert store.count() == 20_000
    ids = Counter(r[0] for r in rows(store, "SELECT event_id FROM events"))
    assert len(ids) == 20_000 and set(ids.values()) == {1}
    made = Counter((r[0], r[1]) for r in rows(store, "SELECT payload->>'worker', payload->>'i' FROM events"))
    assert len(made) == 20_000 and set(made.values()) == {1}  # each (worker, i) exactly once
    assert verify(store).ok
    # The reader kept getting in while the events were being written, and never saw the log shrink.
    seen = [n for _t, n, _wait in reads]
    assert seen == sorted(seen)
    complete = next((t for t, n, _wait in reads if n == 20_000), finished)
    during = [t for t, n, _wait in reads if started <= t < complete and 0 < n < 20_000]
    assert during, f"the reader never got in during {complete - started:.1f}s of writing"
    times = [started] + [t for t, _n, _wait in reads if started <= t <= complete] + [complete]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 2.0, "the reader waited 2 s or more for a turn"


@pytest.mark.parametrize("mode", ["direct", "inbox"])
def test_a_reader_started_before_a_writer_sees_its_events_within_2_seconds(tmp_path, mode):
    store = Store.init(tmp_path / "store")
    watcher = start_watch(store) if mode == "inbox" else None
    reader = start(READER, store.root, 600)
    wait_ready(reader)
    time.sleep(0.3)
    writer = start(LIVE_WRITER, store.root, 2.5, mode)
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    acks = [tuple(map(float, line.split())) for line in out.splitlines()]
    assert wait_for_count(store, len(acks), timeout=10) == len(acks)
    time.sleep(0.3)
    reader.terminate()
    reads = [tuple(map(float, line.split())) for line in reader.communicate(timeout=30)[0].splitlines()]
    if watcher is not None:
        stop_watch(watcher)

    assert len(acks) > 20
    latencies = []
    for acked_at, nth in acks:
        seen_at = next((t for t, n, _w in reads if n >= nth and t >= acked_at), None)
        assert seen_at is not None, f"event {int(nth)} (acknowledged at {acked_at}) was never seen by the reader"
        latencies.append(seen_at - acked_at)
    assert max(latencies) < 2.0, f"slowest: {max(latencies):.2f}s; median {sorted(latencies)[len(latencies) // 2]:.2f}s"


def test_watch_reports_what_it_cannot_parse_in_a_folder_written_by_another_tool(tmp_path):
    store = Store.init(tmp_path / "store")
    folder = tmp_path / "tool-output"
    folder.mkdir()
    (folder / "notes.txt").write_text("not events\n")
    p = subprocess.Popen([sys.executable, "-c", "from lineage.cli import main; main()", "watch", "--store",
                          str(store.root), str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    with open(folder / "run.jsonl", "w") as f:
        f.write('{"lineage": "tool", "kind": "annotation", "actor": "system:tool", "payload": {"text": "ok"}}\n')
        f.write('{"lineage": "tool", "kind": "annotation", "payload": {"text": "who?"}}\n')
        f.write('{"lineage": "tool", "kind": "annot')  # still being written
    assert wait_for_count(store, 1, timeout=10) == 1
    with open(folder / "run.jsonl", "a") as f:
        f.write('ation", "actor": "human:bo", "payload": {"text": "done"}}\n')
    assert wait_for_count(store, 2, timeout=10) == 2
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    text = " ".join((out + err).split())
    assert "notes.txt: not an event file" in text
    assert "run.jsonl:2: invalid event: actor: an actor is required" in text
    assert "2 ingested" in text and "1 quarantined" in text
    assert verify(store).ok
    assert [Path(r[0]).name for r in rows(store, "SELECT payload->>'text' FROM events ORDER BY seq")] == ["ok", "done"]


def wait_until(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def inbox_files(store: Store) -> list[str]:
    return sorted(p.name for p in store.inbox.iterdir()) if store.inbox.exists() else []


def test_an_inbox_file_its_producer_finished_is_ingested_whole_then_archived(tmp_path):
    """A closed Tracker marks its file done; watch ingests it and moves it out of the inbox.
    A producer killed mid-run leaves no marker: its file stays, as it may be the only copy
    of lines not yet read. Restarting watch adds nothing."""
    store = Store.init(tmp_path / "store")
    watcher = start_watch(store)
    try:
        finished = start(PRODUCER, store.root, 1, 300, "inbox", 50)
        wait_ready(finished)
        finished.stdin.write("go\n")
        finished.stdin.flush()
        assert finished.wait(timeout=60) == 0
        killed = start(PRODUCER, store.root, 2, 10**9, "inbox", 50)
        wait_ready(killed)
        killed.stdin.write("go\n")
        killed.stdin.flush()
        assert wait_until(lambda: len(inbox_files(store)) >= 1 and store.count() >= 600, timeout=30)
        killed.kill()
        killed.wait()
        assert wait_until(lambda: (store.archive / "inbox").exists() and len(list((store.archive / "inbox").iterdir())) == 1,
                          timeout=30), inbox_files(store)
    finally:
        out = stop_watch(watcher)
    archived = list((store.archive / "inbox").iterdir())
    assert [p.name.startswith(f"{finished.pid}-") for p in archived] == [True]
    assert len(archived[0].read_bytes().splitlines()) == 300
    left = inbox_files(store)
    assert len(left) == 1 and left[0].startswith(f"{killed.pid}-") and not left[0].endswith(".done")
    assert "1 finished inbox files archived" in out
    assert f"done (its producer finished); moved to {archived[0]}" in " ".join(out.split())
    counts = dict(rows(store, "SELECT actor, count(*) FROM events GROUP BY actor"))
    assert counts["ai:worker-1"] == 300
    again = start_watch(store)
    time.sleep(2.0)  # a full scan of the inbox: the rest of the killed producer's lines
    stop_watch(again)
    written = 300 + len((store.inbox / left[0]).read_bytes().splitlines())
    assert store.count() == written == rows(store, "SELECT count(DISTINCT event_id) FROM events")[0][0]
    assert verify(store).ok


def test_a_marked_file_gives_its_last_line_without_a_newline_and_other_folders_keep_theirs(tmp_path):
    """A producer in another language marks its file done by creating `<file>.done`; its last
    line counts even without a newline. Marked files outside the store's inbox are not moved."""
    store = Store.init(tmp_path / "store")
    folder = tmp_path / "tool-output"
    folder.mkdir()
    line = '{"lineage": "ext", "kind": "annotation", "actor": "system:tool", "payload": {"text": "%s"}}'
    store.inbox.mkdir(exist_ok=True)
    for place in (store.inbox, folder):
        (place / "run.jsonl").write_text(line % "one" + "\n" + line % "two")  # no newline at the end
        (place / "run.jsonl.done").touch()
    p = subprocess.Popen([sys.executable, "-c", "from lineage.cli import main; main()", "watch", "--store",
                          str(store.root), str(store.inbox), str(folder)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: not (store.inbox / "run.jsonl").exists(), timeout=30)
        assert wait_for_count(store, 3, timeout=10) == 3  # the other folder's second line stays pending
    finally:
        out = stop_watch(p)
    assert (store.archive / "inbox" / "run.jsonl").exists() and not (store.inbox / "run.jsonl.done").exists()
    assert (folder / "run.jsonl").exists() and (folder / "run.jsonl.done").exists()
    texts = sorted(r[0] for r in rows(store, "SELECT payload->>'text' FROM events"))
    assert texts == ["one", "one", "two"]
    assert "0 files skipped, 1 finished inbox files archived" in " ".join(out.split())  # markers are not files to skip
    assert verify(store).ok
