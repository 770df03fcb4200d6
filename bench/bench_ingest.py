"""Ingest throughput: `lineage ingest` of JSONL and Parquet, beside a bare DuckDB Arrow insert.

    python bench/bench_ingest.py                 # 1,000,000 events
    python bench/bench_ingest.py --events 200000 --workers 2
    python bench/bench_ingest.py --dir /tmp/bi --repeat 3   # files kept and reused; median of 3

Generates N events (~200-byte payloads, a mix of kinds) as one JSONL file and one Parquet
file with the envelope columns, then measures, each in a fresh process and a fresh store:

- ingest of the JSONL file (validation, dedup, hash chain, durable commit: end to end);
- ingest of the Parquet file;
- a bare DuckDB insert of the same rows from Arrow (the Parquet file read into an Arrow
  table first, untimed), into a plain table, committed and closed: the floor for storing
  these bytes in DuckDB at all.

Prints events/s, and peak RSS of the ingesting process and of its validation workers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = ("score", "score", "score", "score", "score", "score", "score", "proposal", "annotation", "run")


def generate(n: int, jsonl: Path, parquet: Path) -> None:
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq
    import uuid_utils

    base = 1_740_000_000_000_000
    cols: dict[str, list] = {k: [] for k in ("event_id", "lineage", "branch", "node", "kind", "actor", "occurred_at", "payload")}
    writer = None
    with open(jsonl, "wb") as out:
        for i in range(n):
            kind = KINDS[i % len(KINDS)]
            pad = f"candidate {i} tried a variation of the packing heuristic; " * 2
            if kind == "score":
                payload, actor = {"metric": "fill_rate", "value": (i % 9973) / 9973, "split": "eval", "notes": pad[:120]}, "system:evaluator"
            elif kind == "proposal":
                payload, actor = {"idea": pad[:150], "rationale": "prior best plateaued"}, "ai:gpt-5"
            elif kind == "annotation":
                payload, actor = {"text": pad[:160], "topic": "lesson"}, "human:ana"
            else:
                payload, actor = {"command": ["python", "eval.py", "--seed", str(i)], "status": "ok", "seed": i,
                                  "duration_s": 1.5, "cost": {"tokens": 1200}}, "system:runner"
            us = base + i * 1000
            env = {"event_id": str(uuid_utils.uuid7()), "lineage": "bench", "branch": "main", "node": f"n{i // 10}",
                   "kind": kind, "actor": actor,
                   "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 1_000_000)) + f".{us % 1_000_000:06d}+00:00",
                   "payload": payload}
            out.write(orjson.dumps(env) + b"\n")
            for k in cols:
                cols[k].append(us if k == "occurred_at" else orjson.dumps(payload).decode() if k == "payload" else env[k])
            if len(cols["event_id"]) == 100_000 or i == n - 1:
                table = pa.table({**{k: v for k, v in cols.items() if k != "occurred_at"},
                                  "occurred_at": pa.array(cols["occurred_at"], pa.int64()).cast(pa.timestamp("us", tz="UTC"))})
                writer = writer or pq.ParquetWriter(parquet, table.schema, compression="zstd")
                writer.write_table(table)
                cols = {k: [] for k in cols}
    writer.close()


def child(what: str, src: str, target: str, workers: int | None) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    from lineage.memory import keep_freed_memory

    keep_freed_memory()  # as the `lineage` command does, before pyarrow loads
    t0 = time.perf_counter()
    if what == "bare":
        import duckdb
        import pyarrow.parquet as pq

        table = pq.read_table(src)
        t0 = time.perf_counter()
        con = duckdb.connect(target)
        con.register("arrow_rows", table)
        con.execute("CREATE TABLE events AS SELECT * FROM arrow_rows")
        con.close()
        events = table.num_rows
        extra = {}
    else:
        from lineage.ingest import ingest
        from lineage.store import Store

        store = Store.init(target)
        t0 = time.perf_counter()
        report = ingest(store, [src], workers=workers)
        events = report.ingested
        extra = {"quarantined": report.quarantined, "duplicates": report.duplicates}
    elapsed = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"what": what, "events": events, "seconds": elapsed, "rss_mb": me.ru_maxrss / 1024,
                      "worker_rss_mb": kids.ru_maxrss / 1024, "cpu_s": me.ru_utime + me.ru_stime,
                      "worker_cpu_s": kids.ru_utime + kids.ru_stime, **extra}))


def measure(what: str, src: Path, target: Path, workers: int | None) -> dict:
    # a fresh store (or database file) every time: a rerun must not find the last one's events
    if target.is_dir():
        shutil.rmtree(target)
    target.unlink(missing_ok=True)
    args = [sys.executable, __file__, "--child", what, str(src), str(target)]
    if workers is not None:
        args += ["--workers", str(workers)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=None, help="validation worker processes (default: ingest's)")
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one); its files are "
                                                 "reused by a later run with as many --events")
    ap.add_argument("--repeat", type=int, default=1, help="measure each this many times, taking turns; "
                                                          "report the median (and the range)")
    ap.add_argument("--verify", action="store_true", help="also verify the hash chain of both stores")
    ap.add_argument("--child", nargs=3, metavar=("WHAT", "SRC", "TARGET"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(*a.child, a.workers)
        return

    work = Path(a.dir or tempfile.mkdtemp(prefix="lineage-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    jsonl, parquet, made = work / "events.jsonl", work / "events.parquet", work / "generated.json"
    t0 = time.perf_counter()
    if made.exists() and json.loads(made.read_text()) == {"events": a.events} and jsonl.exists() and parquet.exists():
        how = "generated before"
    else:
        made.unlink(missing_ok=True)
        generate(a.events, jsonl, parquet)
        made.write_text(json.dumps({"events": a.events}))
        how = f"generated in {time.perf_counter() - t0:.1f}s"
    print(f"{a.events:,} events: {jsonl.stat().st_size / 1e6:.0f} MB JSONL, {parquet.stat().st_size / 1e6:.0f} MB Parquet "
          f"({how}) in {work}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'':34}{'events/s':>12}{'× bare':>8}{'seconds':>10}{'peak RSS':>11}{'workers RSS':>13}{'CPU s':>8}")
    runs: dict[str, list[dict]] = {}
    cases = (("jsonl", jsonl, "lineage ingest, JSONL"), ("parquet", parquet, "lineage ingest, Parquet"),
             ("bare", parquet, "bare DuckDB insert from Arrow"))
    for _ in range(a.repeat):
        for what, src, _label in cases:
            target = work / f"store-{what}" if what != "bare" else work / "bare.duckdb"
            r = measure(what, src, target, a.workers)
            assert r["events"] == a.events, r
            runs.setdefault(what, []).append(r)
    # The machine's speed drifts (by up to 30% within minutes here): the ratio to the bare
    # insert, measured in the same run and taking turns, is what compares across runs.
    bare = sorted(r["events"] / r["seconds"] for r in runs["bare"])[len(runs["bare"]) // 2]
    for what, _src, label in cases:
        rates = sorted(r["events"] / r["seconds"] for r in runs[what])
        r = sorted(runs[what], key=lambda r: r["events"] / r["seconds"])[len(rates) // 2]
        spread = f"  ({rates[0]:,.0f} to {rates[-1]:,.0f})" if len(rates) > 1 else ""
        worker = f"{r['worker_rss_mb']:>10.0f} MB" if r["worker_rss_mb"] > 1 else f"{'-':>13}"
        print(f"{label:34}{r['events'] / r['seconds']:>12,.0f}{r['events'] / r['seconds'] / bare:>8.2f}{r['seconds']:>10.2f}{r['rss_mb']:>8.0f} MB{worker}"
              f"{r['cpu_s'] + r['worker_cpu_s']:>8.1f}{spread}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if a.verify:
        from lineage.store import Store
        from lineage.verify import verify

        for what in ("jsonl", "parquet"):
            report = verify(Store.open(work / f"store-{what}"), objects=False)
            print(f"verify {what}: {'ok' if report.ok else report.findings[0]} ({report.events:,} events)")


if __name__ == "__main__":
    main()
