"""Import speed and memory.

    python bench/bench_import.py                  # the samples + synthetic 1,000 and 5,000 programs
    python bench/bench_import.py --sizes 1000,100000

Prints, per source: wall time of the import (store creation excluded), events appended,
and for the synthetic OpenEvolve databases the peak resident memory of the importing process
(each size runs in its own subprocess, so the peaks do not mix). The issue's budget: the
90-program OpenEvolve sample in under 2 s; memory for 100,000 programs within a small
factor of 1,000.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"
sys.path.insert(0, str(REPO))

from lineage.importers import import_source  # noqa: E402
from lineage.store import Store  # noqa: E402

SAMPLE_SOURCES = [
    ("openevolve", SAMPLES / "openevolve" / "evolve_cache_run0"),
    ("openevolve", SAMPLES / "openevolve" / "arc_tiny" / "evaluation_task_0"),
    ("ai-scientist", SAMPLES / "ai_scientist" / "gan_diffusion"),
    ("adas", SAMPLES / "adas" / "arc_gpt3.5_results.json"),
    ("shinkaevolve", SAMPLES / "shinkaevolve" / "results_autoformalization_small"),
    ("aide", REPO / "tests" / "fixtures" / "aide" / "house_prices"),
    ("dgm", REPO / "tests" / "fixtures" / "dgm" / "20250601120000_000000"),
]


def timed_import(fmt: str, src: Path) -> tuple[float, int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.init(Path(tmp) / "store")
        t = time.perf_counter()
        summary = import_source(store, fmt, src)
        first = time.perf_counter() - t
        t = time.perf_counter()
        again = import_source(store, fmt, src)
        second = time.perf_counter() - t
        assert again.events == 0
        return first, summary.events, second


def synth_openevolve(folder: Path, n: int, seed: int = 7) -> None:
    """An OpenEvolve database of ``n`` programs (a random tree, 5% failed, a few pruned parents)."""
    rng = random.Random(seed)
    progs = folder / "programs"
    progs.mkdir(parents=True)
    # ~240 lines of distinct code, like a real program (each line its own text)
    base = [line for i in range(60) for line in (
        f"def step_{i}(state, weight_{i}=0.{i:02d}):\n", f"    value_{i} = state.get('k{i}', {i}) * weight_{i}\n",
        f"    return value_{i} + len(state) - {i % 7}\n", "\n")]
    codes: dict[int, list[str]] = {}  # the last 256 programs' code (the generator streams too)
    ids: list[str] = []
    for k in range(n):
        pid = f"{k:08d}-0000-4000-8000-{rng.getrandbits(48):012x}"
        if k == 0:
            parent, lines, gen = None, list(base), 0
        else:
            j = rng.randrange(max(0, k - 200), k)  # parents are recent programs, as in a real run
            parent, lines = ids[j], list(codes[j])
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(lines))
                lines[i] = lines[i].rstrip("\n") + f"  # tweak {k}\n" if lines[i].strip() else lines[i]
            gen = 1 + (k % 12)
        failed = k and rng.random() < 0.05
        rec = {"id": pid, "code": "".join(lines), "language": "python", "parent_id": parent, "generation": gen,
               "timestamp": 1_700_000_000 + k, "iteration_found": k,
               "metrics": {"combined_score": float("-inf") if failed else rng.random(), "speed": rng.random()},
               "metadata": {"island": k % 5, "changes": "Change 1: Replace 1 line with 1 line",
                            "parent_metrics": {"combined_score": 0.5}},
               "prompts": None, "complexity": 0.0, "diversity": 0.0}
        (progs / f"{pid}.json").write_text(json.dumps(rec))
        ids.append(pid)
        codes[k] = lines
        codes.pop(k - 256, None)
    # prune 1% of the programs, as OpenEvolve does
    for pid in rng.sample(ids[1:], max(1, n // 100)):
        (progs / f"{pid}.json").unlink()


def child(n: int, trace: bool) -> None:
    """Run in a subprocess: synthesize, import, print a JSON line with time and memory.
    With ``trace``, the Python heap peak of the import alone is measured (tracemalloc; slower)."""
    import tracemalloc

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "db"
        synth_openevolve(src, n)
        store = Store.init(Path(tmp) / "store")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if trace:
            tracemalloc.start()
        t = time.perf_counter()
        summary = import_source(store, "openevolve", src)
        dt = time.perf_counter() - t
        heap = tracemalloc.get_traced_memory()[1] if trace else None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"n": n, "seconds": dt, "events": summary.events, "nodes": summary.nodes,
                          "peak_rss_mb": peak / 1024, "rss_before_mb": before / 1024,
                          "heap_peak_mb": heap / 2**20 if heap is not None else None,
                          "missing_parents": len(summary.missing_parents)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,4000", help="synthetic OpenEvolve database sizes (comma separated)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.trace)
        return

    print("samples (first import / re-import, which must add nothing):")
    for fmt, src in SAMPLE_SOURCES:
        if not src.exists():
            print(f"  {fmt:13} {src.name:40} absent, skipped")
            continue
        first, n, second = timed_import(fmt, src)
        flag = ""
        if src.name == "evolve_cache_run0":
            flag = "  (budget 2 s: " + ("ok" if first < 2 else "OVER") + ")"
        print(f"  {fmt:13} {src.name:40} {first:6.3f} s  {n:5d} events   re-import {second:6.3f} s{flag}")

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if sizes:
        print("synthetic OpenEvolve databases (each in its own process):")
    results = []
    for n in sizes:
        runs = []
        for trace in (False, True):
            cmd = [sys.executable, __file__, "--child", str(n)] + (["--trace"] if trace else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = {**runs[0], "heap_peak_mb": runs[1]["heap_peak_mb"]}
        results.append(r)
        print(f"  {n:7d} programs  {r['seconds']:7.2f} s  {r['events']:8d} events  "
              f"{r['nodes'] / r['seconds']:6.0f} programs/s  importer heap peak {r['heap_peak_mb']:6.1f} MB  "
              f"process RSS +{r['peak_rss_mb'] - r['rss_before_mb']:.1f} MB (incl. DuckDB's cache)")
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(f"  importer heap {a['n']} -> {b['n']} programs ({b['n'] / a['n']:.0f}x more): "
              f"{b['heap_peak_mb'] / a['heap_peak_mb']:.2f}x")

if __name__ == "__main__":
    main()
