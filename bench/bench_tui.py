"""Terminal UI speed on a 1,000,000-node lineage. Prints numbers; it is not a timed test.

    python bench/bench_tui.py [--store DIR] [--rebuild]

The store: one lineage of 1,000,000 nodes (a root, 1,000 children, and under each of
them up to 1,000 more), with a score on every tenth node and a proposal on every
thirteenth: 1,177,000 events, sealed into Parquet segments, built with
``Writer.append_many`` on prepared events, then indexed once (``refresh_index``, as
`lineage tui` does on first open).

Measured (targets from the issue):
  first screen from a fresh process: `python -c` start until the tree (root open, its
  1,000 children loaded) and the root's detail are on screen          <= 1 s
  expanding a node with 1,000 children, the cursor on it for 50 ms
  (its children are read ahead once the cursor rests 30 ms)            <= 100 ms
  ... and the instant the cursor lands on it (query, tree, render)
  moving the cursor (highlight and the node's header)                  <= 100 ms
  switching tabs (the tab and its data for the node)                   <= 100 ms
  memory (RSS) with the lineage open                                   <= 500 MB
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import uuid_utils

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lineage.service import LineageService  # noqa: E402
from lineage.store import Store  # noqa: E402
from schemas import Prepared  # noqa: E402

NODES = 1_000_000
LINEAGE = "big"
T0 = 1_735_689_600_000_000  # 2025-01-01, in microseconds


def _event(kind: str, node: str, actor: str, payload: dict, us: int) -> Prepared:
    return Prepared(
        event_id=str(uuid_utils.uuid7()), lineage=LINEAGE, branch="main", node=node, kind=kind,
        actor_kind=actor.split(":", 1)[0], actor=actor, actor_node=None, occurred_us=us,
        payload_json=orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode(),
        schema_version=2 if kind == "score" else 1, caused_by=None,
    )


def build(path: Path) -> dict:
    start = time.perf_counter()
    store = Store.init(path)
    events: list[Prepared] = [_event("node_created", "n0", "human:ada", {"parents": [], "label": "seed"}, T0)]
    k = 1
    gen1 = []
    for i in range(1000):
        nid = f"n{k}"
        k += 1
        gen1.append(nid)
        events.append(_event("node_created", nid, "ai:evolver", {"parents": ["n0"], "label": f"variant {i}"}, T0 + k))
        events.append(_event("score", nid, "system:eval", {"metric": "acc", "value": i / 1000, "split": "public",
                                                          "higher_is_better": True}, T0 + k))
    # 998 families of 1,000, one of 999, one empty: 1 + 1,000 + 998,999 = 1,000,000 nodes
    for gi, parent in enumerate(gen1):
        count = 1000 if gi < 998 else (999 if gi == 998 else 0)
        for _ in range(count):
            nid = f"n{k}"
            k += 1
            events.append(_event("node_created", nid, "ai:evolver", {"parents": [parent]}, T0 + k))
            if k % 10 == 0:
                events.append(_event("score", nid, "system:eval", {"metric": "acc", "value": (k % 1000) / 1000,
                                                                  "split": "public", "higher_is_better": True}, T0 + k))
            if k % 13 == 0:
                events.append(_event("proposal", nid, "ai:evolver", {"idea": "mutate the loop body"}, T0 + k))
    assert k == NODES
    prepared = time.perf_counter()
    with store.writer() as w:
        for i in range(0, len(events), 250_000):
            w.append_many(events[i:i + 250_000])
        w.seal()
    appended = time.perf_counter()
    LineageService(store).refresh_index()
    indexed = time.perf_counter()
    return {"events": len(events), "prepare_s": prepared - start, "append_s": appended - prepared,
            "index_s": indexed - appended}


FIRST_SCREEN = r"""
import asyncio, sys, time
from tui.launch import create_app  # as `lineage tui` does: the store is read while Textual loads
app = create_app(sys.argv[1], poll_interval=None)

async def main():
    async with app.run_test(size=(120, 40)) as pilot:
        while True:
            main = getattr(app, "_main", None)
            if main is not None and main.is_mounted:
                tree = main.genealogy
                if tree.last_line >= 1000 and main.detail.row is not None and "events" in main.detail._loaded:
                    break
            await asyncio.sleep(0.002)
        await pilot.pause(0)
        print("READY", time.time(), tree.last_line + 1, flush=True)

asyncio.run(main())
"""


def first_screen(path: Path, runs: int = 3) -> list[float]:
    """Seconds from starting the process until the screen is ready (as the process reports
    it: its exit, which a person does not wait for, is not counted)."""
    times = []
    for _ in range(runs):
        start = time.time()
        out = subprocess.run([sys.executable, "-c", FIRST_SCREEN, str(path)], capture_output=True, text=True,
                             cwd=ROOT, timeout=120)
        ready = next((line.split() for line in out.stdout.splitlines() if line.startswith("READY")), None)
        if ready is None:
            raise SystemExit(f"first screen did not come up:\n{out.stdout}\n{out.stderr[-2000:]}")
        times.append(float(ready[1]) - start)
    return times


def rss_mb() -> tuple[float, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def send_key(app, key: str) -> None:
    """Deliver a key as the terminal would. (Pilot.press also waits until the whole process
    is idle, worker threads included, which would time the background queries, not the UI.)"""
    from textual import events

    event = events.Key(key, key if len(key) == 1 else None)
    event.set_sender(app)
    app._driver.send_message(event)


async def until(predicate, timeout: float = 10.0) -> float:
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.0005)
    return time.perf_counter() - start


async def interactive(path: Path) -> dict:
    from tui.app import create_app

    app = create_app(path, poll_interval=None)
    out: dict[str, list[float]] = {"expand": [], "cold": [], "cursor": [], "tab": [], "detail": []}
    async with app.run_test(size=(120, 40)) as pilot:
        await until(lambda: getattr(app, "_main", None) is not None and app.main.genealogy.last_line >= 1000, 30)
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        tree = app.main.genealogy
        detail = app.main.detail
        # expanding: the first few families of 1,000 under the root
        for i in range(5):
            tree.move_cursor(tree.root.children[0].children[i])
            await pilot.pause(0.05)
            before = tree.last_line
            start = time.perf_counter()
            send_key(app, "l")
            await until(lambda b=before: tree.last_line >= b + 1000)
            await pilot.pause(0)  # the frame that shows it
            out["expand"].append(time.perf_counter() - start)
            await pilot.pause(0.2)
        # ... and at once, the cursor not resting on the node first (nothing read ahead)
        for i in range(5, 10):
            tree.move_cursor(tree.root.children[0].children[i])
            before = tree.last_line
            start = time.perf_counter()
            send_key(app, "l")
            await until(lambda b=before: tree.last_line >= b + 1000)
            await pilot.pause(0)
            out["cold"].append(time.perf_counter() - start)
            await pilot.pause(0.2)
        # moving the cursor: the highlight moves and the node's header shows it
        for _ in range(20):
            before = tree.cursor_line
            start = time.perf_counter()
            send_key(app, "down")
            await until(lambda b=before: tree.cursor_line == b + 1 and detail.row is not None
                        and detail.row.node == tree.current_row().node)
            await pilot.pause(0)
            out["cursor"].append(time.perf_counter() - start)
            # ... and then its Events tab, after the cursor rests (includes the 80 ms rest)
            await until(lambda: "events" in detail._loaded, 5)
            out["detail"].append(time.perf_counter() - start)
        # switching tabs: each tab with its data for the node under the cursor
        for tab_key, tab in (("3", "scores"), ("4", "artifacts"), ("1", "events"), ("2", "diff"), ("3", "scores"),
                             ("1", "events")):
            detail._loaded.pop(tab, None)
            start = time.perf_counter()
            send_key(app, tab_key)
            await until(lambda t=tab: t in detail._loaded and detail.active_tab == t)
            await pilot.pause(0)
            out["tab"].append(time.perf_counter() - start)
        rss, peak = rss_mb()
        shown = tree.last_line + 1
    return {**out, "rss_mb": rss, "peak_mb": peak, "shown_lines": shown}


def ms(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:6.1f} ms   max {max(values) * 1000:6.1f} ms   "
            f"(n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "lineage-bench-tui")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    path = args.store
    if args.rebuild or not (path / "lineage.duckdb").exists():
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        print(f"building a {NODES:,}-node lineage in {path} …", flush=True)
        info = build(path)
        print(f"  {info['events']:,} events: prepared {info['prepare_s']:.1f}s, appended and sealed "
              f"{info['append_s']:.1f}s, indexed {info['index_s']:.1f}s")
    else:
        LineageService(path).refresh_index()
        print(f"using the store in {path} (--rebuild to build it again)")
    segments = sum(f.stat().st_size for f in (path / "segments").glob("*.parquet"))
    print(f"  store: {(path / 'lineage.duckdb').stat().st_size / 1e6:.0f} MB DuckDB (with the index), "
          f"{segments / 1e6:.0f} MB Parquet")

    firsts = first_screen(path)
    print(f"first screen, fresh process:  {ms(firsts)}   target <= 1000 ms")
    res = asyncio.run(interactive(path))
    print(f"expand a node (1,000 kids):   {ms(res['expand'])}   target <= 100 ms")
    print(f"  … the instant the cursor lands: {ms(res['cold'])}   (nothing read ahead: query, tree, render)")
    print(f"move the cursor:              {ms(res['cursor'])}   target <= 100 ms")
    print(f"  … and its Events tab:       {ms(res['detail'])}   (includes the 80 ms rest before loading)")
    print(f"switch tabs (with data):      {ms(res['tab'])}   target <= 100 ms")
    print(f"memory with the lineage open: RSS {res['rss_mb']:.0f} MB (peak {res['peak_mb']:.0f} MB), "
          f"{res['shown_lines']:,} tree lines shown   target <= 500 MB")
    print(f"(machine: {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
