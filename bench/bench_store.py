"""Event store speed and size, beside a bare DuckDB insert of the same rows from Arrow.

    python bench/bench_store.py                 # 1,000,000 events for size and verify
    python bench/bench_store.py --events 200000 --single 1000

Prints one table. Targets (issue 2, on a 2-core machine): durable single append through
the SDK p50 <= 1 ms; batched/group-commit >= 20,000 events/s; <= 150 bytes per event
with ~200-byte payloads after seal; verify >= 200,000 events/s.

Not a test: numbers depend on the machine and its disk.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from lineage import Store, Tracker
from lineage.objects import sha256_file
from lineage.store import ARROW_SCHEMA, DEFAULT_SEAL_THRESHOLD
from lineage.verify import verify
from schemas import Draft, Prepared, canonical_body, chain_hash, prepare
from schemas.chain import GENESIS_HASH, now_us


def vocabulary(size: int = 5000, seed: int = 0) -> tuple[list[str], list[float]]:
    """Made-up words with Zipf frequencies: text about as compressible as English prose."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        w = "".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words, [1 / (rank + 1) for rank in range(size)]


WORDS, WEIGHTS = vocabulary()
CUM = list(itertools.accumulate(WEIGHTS))


# -- realistic events ----------------------------------------------------------------------


def payloads(rng: random.Random) -> Iterator[tuple[str, dict]]:
    """An endless mix of kinds whose canonical payload is about 200 bytes."""

    def text(n: int) -> str:
        return " ".join(rng.choices(WORDS, cum_weights=CUM, k=n))

    while True:
        r = rng.random()
        if r < 0.35:
            yield "score", {"metric": rng.choice(("fill", "bins_used", "waste")), "value": round(rng.random(), 6),
                            "split": rng.choice(("public", "eval", "heldout")), "evaluator": "eval.py --fast",
                            "notes": text(12)}
        elif r < 0.6:
            yield "proposal", {"idea": text(18), "rationale": text(10)}
        elif r < 0.8:
            yield "run", {"command": ["python", "eval.py", "--seed", str(rng.randrange(1000))], "status": "ok",
                          "seed": rng.randrange(1 << 16), "duration_s": round(rng.random() * 30, 3),
                          "cost": {"tokens": rng.randrange(100_000), "dollars": round(rng.random(), 4)},
                          "environment": {"PYTHONHASHSEED": "0"}}
        else:
            yield "annotation", {"text": text(26), "topic": "lesson"}


def drafts(n: int, seed: int = 1) -> Iterator[Draft]:
    rng = random.Random(seed)
    gen = payloads(rng)
    for i in range(n):
        kind, payload = next(gen)
        node = f"n{i // 8:07d}"
        actor = ("ai:researcher-sim", "system:evaluator", "human:alice")[i % 3]
        yield Draft(lineage="packing", kind=kind, actor=actor, payload=payload, node=node)


def arrow_rows(events: list[Prepared], first_seq: int = 1) -> pa.Table:
    """The same rows as the store keeps, as a 16-column Arrow table (the bare-DuckDB baseline)."""
    rec = now_us()
    cols: dict[str, list] = {name: [] for name in ARROW_SCHEMA.names}
    prev = GENESIS_HASH
    for seq, e in enumerate(events, start=first_seq):
        h = chain_hash(prev, canonical_body(seq, e.event_id, e.lineage, e.branch, e.node, e.kind, e.actor_kind,
                                            e.actor, e.actor_node, e.occurred_us, rec, e.payload_json,
                                            e.schema_version, e.caused_by))
        row = (seq, e.event_id, e.lineage, e.branch, e.node, e.kind, e.actor_kind, e.actor, e.actor_node,
               e.occurred_us, rec, e.payload_json, e.schema_version, e.caused_by, prev, h)
        for name, value in zip(ARROW_SCHEMA.names, row, strict=True):
            cols[name].append(value)
        prev = h
    return pa.table({n: pa.array(cols[n], ARROW_SCHEMA.field(n).type) for n in ARROW_SCHEMA.names}, schema=ARROW_SCHEMA)


def bare_table_sql() -> str:
    types = {pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.string(): "VARCHAR", pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ"}
    return "CREATE TABLE events (" + ", ".join(f"{f.name} {types[f.type]}" for f in ARROW_SCHEMA) + ")"


# -- measurements ------------------------------------------------------------------------------


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def single_appends(root: Path, n: int, idle_n: int = 20, idle_gap: float = 0.3) -> dict:
    events = [prepare(d) for d in drafts(n, seed=2)]
    out = {}

    # Through the SDK, as a loop calls it (validation included, Tracker defaults).
    t_samples = []
    with Tracker(root / "single-sdk", lineage="packing", actor="ai:researcher-sim") as t:
        t.record("annotation", {"text": "warm-up"})
        for d in drafts(n, seed=3):
            start = time.perf_counter()
            t.record(d.kind, d.payload, node=d.node, actor=d.actor)
            t_samples.append(time.perf_counter() - start)
    out["tracker"] = t_samples

    # A loop that works between events: the Tracker lets go of the file when idle (0.25 s
    # by default) so readers get in, and the next record opens it again.
    idle_samples = []
    with Tracker(root / "single-idle", lineage="packing", actor="ai:researcher-sim") as t:
        t.record("annotation", {"text": "warm-up"})
        for d in list(drafts(idle_n, seed=3)):
            time.sleep(idle_gap)
            start = time.perf_counter()
            t.record(d.kind, d.payload, node=d.node, actor=d.actor)
            idle_samples.append(time.perf_counter() - start)
    out["tracker_idle"] = idle_samples

    # Writer.append with already validated events: the store's own cost.
    w_samples = []
    store = Store.init(root / "single-writer")
    with store.writer() as w:
        w.append(events[0])
        for e in events:
            start = time.perf_counter()
            w.append(e)
            w_samples.append(time.perf_counter() - start)
    out["writer"] = w_samples

    # Validation alone.
    p_samples = []
    for d in drafts(n, seed=4):
        start = time.perf_counter()
        prepare(d)
        p_samples.append(time.perf_counter() - start)
    out["prepare"] = p_samples

    # Bare DuckDB: one autocommitted INSERT of the same 16-column row.
    table = arrow_rows(events)
    rows = table.to_pylist()
    con = duckdb.connect(str(root / "bare-single.duckdb"))
    con.execute(bare_table_sql())
    placeholders = ", ".join("?" for _ in ARROW_SCHEMA)
    b_samples = []
    for r in rows:
        values = list(r.values())
        start = time.perf_counter()
        con.execute(f"INSERT INTO events VALUES ({placeholders})", values)
        b_samples.append(time.perf_counter() - start)
    con.close()
    out["bare"] = b_samples
    return out


def batched(root: Path, n: int, batch: int) -> dict:
    out = {}
    # SDK: Tracker.batch(), validation included.
    all_drafts = list(drafts(n, seed=5))
    start = time.perf_counter()
    with Tracker(root / "batch-sdk", lineage="packing", actor="ai:researcher-sim") as t:
        for i in range(0, n, batch):
            with t.batch():
                for d in all_drafts[i:i + batch]:
                    t.record(d.kind, d.payload, node=d.node, actor=d.actor)
    out["tracker"] = n / (time.perf_counter() - start)

    # prepare() alone, then Writer.append_many on prepared events.
    start = time.perf_counter()
    events = [prepare(d) for d in all_drafts]
    out["prepare"] = n / (time.perf_counter() - start)
    store = Store.init(root / "batch-writer")
    start = time.perf_counter()
    with store.writer() as w:
        for i in range(0, n, batch):
            w.append_many(events[i:i + batch])
    out["writer"] = n / (time.perf_counter() - start)

    # Bare DuckDB: INSERT the same rows from Arrow, same batch size.
    table = arrow_rows(events)
    con = duckdb.connect(str(root / "bare-batch.duckdb"))
    con.execute(bare_table_sql())
    start = time.perf_counter()
    for i in range(0, n, batch):
        chunk = table.slice(i, batch)
        con.register("chunk", chunk)
        con.execute("INSERT INTO events SELECT * FROM chunk")
        con.unregister("chunk")
    out["bare"] = n / (time.perf_counter() - start)
    con.close()
    return out


def build_big(root: Path, n: int, seal_threshold: int, chunk: int = 50_000) -> tuple[Store, float]:
    """A store of ``n`` events via prepare + append_many, auto-sealing as configured."""
    store = Store.init(root / "big")
    start = time.perf_counter()
    gen = drafts(n, seed=6)
    with store.writer(seal_threshold=seal_threshold) as w:
        done = 0
        while done < n:
            k = min(chunk, n - done)
            w.append_many([prepare(next(gen)) for _ in range(k)])
            done += k
        w.seal()
        w.con.execute("CHECKPOINT")
    return store, n / (time.perf_counter() - start)


def sizes(store: Store) -> dict:
    parquet = sum(p.stat().st_size for p in store.segments_dir.glob("*.parquet"))
    db = store.db.stat().st_size
    wal = Path(str(store.db) + ".wal")
    return {"parquet": parquet, "db": db, "wal": wal.stat().st_size if wal.exists() else 0}


def compacted_db_size(root: Path, store: Store) -> int:
    """lineage.duckdb rewritten into a fresh file (what a `compact` step would leave)."""
    path = root / "compacted.duckdb"
    con = duckdb.connect()
    con.execute(f"ATTACH '{store.db}' AS src (READ_ONLY)")
    con.execute(f"ATTACH '{path}' AS fresh")
    con.execute("COPY FROM DATABASE src TO fresh")
    con.close()
    return path.stat().st_size


def bare_size(root: Path, store: Store) -> int:
    """The same rows in a bare DuckDB table (native storage), after CHECKPOINT."""
    path = root / "bare-size.duckdb"
    con = duckdb.connect(str(path))
    glob = str(store.segments_dir / "*.parquet").replace("'", "''")
    con.execute(f"CREATE TABLE events AS SELECT * FROM read_parquet('{glob}')")
    con.execute("CHECKPOINT")
    con.close()
    return path.stat().st_size


def verify_timing(store: Store) -> dict:
    start = time.perf_counter()
    report = verify(store)
    total = time.perf_counter() - start
    assert report.ok, report.findings
    start = time.perf_counter()
    for p in store.segments_dir.glob("*.parquet"):
        sha256_file(p)
    hashing = time.perf_counter() - start
    return {"events": report.events, "seconds": total, "file_hash_seconds": hashing}


# -- report ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the size/verify store (default 1,000,000)")
    ap.add_argument("--single", type=int, default=2_000, help="single appends to time (default 2,000)")
    ap.add_argument("--batched", type=int, default=100_000, help="events for the batched path (default 100,000)")
    ap.add_argument("--batch-size", type=int, default=10_000, help="events per group commit (default 10,000)")
    ap.add_argument("--seal-threshold", type=int, default=DEFAULT_SEAL_THRESHOLD,
                    help=f"auto-seal threshold of the size/verify store (default {DEFAULT_SEAL_THRESHOLD:,}, the store's)")
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one, removed after)")
    args = ap.parse_args()

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="lineage-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"lineage store benchmark  ({os.cpu_count()} cpus, work dir {root})")
    try:
        sample = [prepare(d) for d in drafts(2000, seed=9)]
        mean_payload = statistics.mean(len(e.payload_json.encode()) for e in sample)

        single = single_appends(root, args.single)
        batch = batched(root, args.batched, args.batch_size)
        store, build_rate = build_big(root, args.events, args.seal_threshold)
        size = sizes(store)
        compacted = compacted_db_size(root, store)
        bare = bare_size(root, store)
        vt = verify_timing(store)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)

    ms = 1000.0
    n = args.events
    rows = [
        ("single append, Tracker.record (validate + commit)", f"p50 {pct(single['tracker'], .5) * ms:.3f} ms   p99 {pct(single['tracker'], .99) * ms:.3f} ms", "p50 <= 1 ms"),
        ("single append, Tracker.record, 0.3 s of loop work between", f"p50 {pct(single['tracker_idle'], .5) * ms:.3f} ms   max {max(single['tracker_idle']) * ms:.3f} ms", ""),
        ("single append, Writer.append (prepared)", f"p50 {pct(single['writer'], .5) * ms:.3f} ms   p99 {pct(single['writer'], .99) * ms:.3f} ms", ""),
        ("  prepare() alone", f"p50 {pct(single['prepare'], .5) * ms:.3f} ms   p99 {pct(single['prepare'], .99) * ms:.3f} ms", ""),
        ("  bare DuckDB 16-col INSERT, autocommit", f"p50 {pct(single['bare'], .5) * ms:.3f} ms   p99 {pct(single['bare'], .99) * ms:.3f} ms", "baseline"),
        (f"batched, Tracker.batch() x{args.batch_size}", f"{batch['tracker']:,.0f} events/s", ">= 20,000/s"),
        (f"batched, append_many x{args.batch_size} (prepared)", f"{batch['writer']:,.0f} events/s", ""),
        ("  prepare() alone", f"{batch['prepare']:,.0f} events/s", ""),
        (f"  bare DuckDB INSERT from Arrow x{args.batch_size}", f"{batch['bare']:,.0f} events/s", "baseline"),
        (f"bulk build {n:,} (prepare + append_many 50k, seal every {args.seal_threshold:,})", f"{build_rate:,.0f} events/s", ""),
        (f"size, mean payload {mean_payload:.0f} B: Parquet only", f"{size['parquet'] / n:.1f} B/event", ""),
        ("size: Parquet + lineage.duckdb (+ .wal)", f"{(size['parquet'] + size['db'] + size['wal']) / n:.1f} B/event  (db {size['db'] / 1e6:.1f} MB)", "<= 150 B/event"),
        ("  lineage.duckdb if rewritten (COPY FROM DATABASE)", f"{compacted / 1e6:.1f} MB -> total {(size['parquet'] + compacted) / n:.1f} B/event", ""),
        ("  bare DuckDB table of the same rows", f"{bare / n:.1f} B/event", "baseline"),
        (f"verify {vt['events']:,} events (chain + files)", f"{vt['events'] / vt['seconds']:,.0f} events/s  ({vt['seconds']:.2f} s)", ">= 200,000/s"),
        ("  of which rehashing segment files", f"{vt['file_hash_seconds']:.2f} s", ""),
    ]
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    print(f"{'measure':<{w1}}  {'result':<{w2}}  target")
    print("-" * (w1 + w2 + 16))
    for a, b, c in rows:
        print(f"{a:<{w1}}  {b:<{w2}}  {c}")


if __name__ == "__main__":
    main()
