"""Benchmark: import a 10,000-commit git history (target: under 60 s).

Builds the repository with ``git fast-import`` (seconds, not minutes): 20 source files
edited a few lines at a time, authors rotating between people, agents (openhands,
Claude co-author trailers, copilot-swe-agent[bot]) and dependabot, a feature branch merged
every 100 commits, and an occasional binary file. Then imports it into a fresh store,
imports it again (which must add nothing), and prints the numbers.

    python bench/bench_git.py [--commits 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lineage.agents.gitlog import import_git
from lineage.store import Store

AUTHORS = [
    ("Alice Martin", "alice@example.com", ""),
    ("Bob Chen", "bob@openhands-fan.org", ""),
    ("openhands", "openhands@all-hands.dev", ""),
    ("Alice Martin", "alice@example.com", "\n\nGenerated with [Claude Code](https://claude.com/claude-code)\n\n"
     "Co-Authored-By: Claude Opus 4.5 <noreply@anthropic.com>"),
    ("copilot-swe-agent[bot]", "198982749+Copilot@users.noreply.github.com", "\n\nCo-authored-by: Bob Chen <bob@openhands-fan.org>"),
    ("dependabot[bot]", "49699333+dependabot[bot]@users.noreply.github.com", ""),
]


def fast_import_stream(n: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    files = {f"src/mod{i:02d}.py": [f"def f{i}_{j}(x):\n    return x + {j}\n" for j in range(25)] for i in range(20)}
    out: list[bytes] = []
    mark = 0
    t0 = 1_700_000_000

    def data(b: bytes) -> None:
        out.append(b"data %d\n" % len(b) + b + b"\n")

    def commit(ref: str, k: int, parent: int | None, merge: int | None, edits: int) -> int:
        nonlocal mark
        mark += 1
        name, email, extra = AUTHORS[k % len(AUTHORS)]
        when = t0 + k * 60
        out.append(f"commit {ref}\nmark :{mark}\n".encode())
        out.append(f"author {name} <{email}> {when} +0000\ncommitter {name} <{email}> {when} +0000\n".encode())
        data(f"change {k}: tweak things{extra}\n".encode())
        if parent is not None:
            out.append(f"from :{parent}\n".encode())
        if merge is not None:
            out.append(f"merge :{merge}\n".encode())
        for _ in range(edits):
            path = rng.choice(list(files))
            lines = files[path]
            i = rng.randrange(len(lines))
            lines[i] = f"def f_{k}_{i}(x):\n    return x * {rng.randrange(100)}\n"
            if rng.random() < 0.3:
                lines.append(f"def g_{k}(x):\n    return x - {k}\n")
            body = "".join(lines).encode()
            out.append(f"M 100644 inline {path}\n".encode())
            data(body)
        if k % 997 == 0:
            out.append(b"M 100644 inline assets/blob.bin\n")
            data(bytes(rng.randrange(256) for _ in range(512)) + b"\x00")
        return mark

    main = None
    k = 0
    while k < n:
        if k and k % 100 == 0 and n - k > 4:
            side = main
            for _ in range(3):
                side = commit("refs/heads/feature", k, side, None, 1)
                k += 1
            main = commit("refs/heads/main", k, main, side, 0)
            k += 1
            continue
        main = commit("refs/heads/main", k, main, None, rng.randint(1, 2))
        k += 1
    return b"".join(out)


def build_repo(path: Path, n: int) -> float:
    start = time.perf_counter()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], input=fast_import_stream(n), check=True)
    subprocess.run(["git", "-C", str(path), "reset", "-q", "--hard", "main"], check=True)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--keep", type=Path, default=None, help="build the repo and store here and keep them")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-git-"))
    repo, store_dir = base / "repo", base / "store"
    try:
        built = build_repo(repo, args.commits)
        count = subprocess.run(["git", "-C", str(repo), "rev-list", "--count", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        print(f"built {count} commits with git fast-import in {built:.1f}s")
        store = Store.init(store_dir)
        start = time.perf_counter()
        summary = import_git(store, repo, lineage="bench")
        took = time.perf_counter() - start
        print(f"import: {summary['commits']} commits, {summary['events_added']} events in {took:.1f}s "
              f"({summary['commits'] / took:,.0f} commits/s; target < 60s)")
        print(f"  involvement: human {summary['human_commits']}, ai {summary['ai_commits']}, "
              f"mixed {summary['mixed_commits']}, system {summary['system_commits']}")
        start = time.perf_counter()
        again = import_git(store, repo, lineage="bench")
        print(f"re-import: {again['events_added']} events added in {time.perf_counter() - start:.1f}s")
        return 0 if took < 60 and again["events_added"] == 0 else 1
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
