"""Checkout speed: rebuild a node 1,000 generations deep (50-file tree) from its diff chain.

    python bench/bench_checkout.py                       # 1,000 generations, 50 files
    python bench/bench_checkout.py --generations 5000 --files 200 --repeat 5

Records a linear loop through the SDK (each generation edits a few lines of 1-3 files,
now and then adds or deletes a file), then times ``lineage checkout`` of the last node
into a new directory: cold (a fresh Materializer: reads the log, verifies and parses
every diff, checks every tree hash, writes the files and the manifest). Beside it, the
same history as a git repository (built with ``git fast-import`` in the same run) and
the time of ``git checkout`` of its last commit, into an empty work tree and from the
first commit in an existing one. Git stores whole trees, so it does not replay diffs:
the comparison shows the price of the event log's diff chain.

Target (issue 5, on a 2-core machine): at most 2 s for 1,000 generations of 50 files.
Not a test: numbers depend on the machine and its disk.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from lineage import Store, Tracker
from lineage.trees import read_tree, tree_hash
from replay.materialize import Materializer, checkout

LINES = ["def f{i}(x):", "    return x + {i}", "", "# step {i}", "value_{i} = {i} * 2", "class C{i}: pass", "    pass"]


def initial_tree(rng: random.Random, files: int) -> dict[str, bytes]:
    tree = {}
    for k in range(files):
        path = f"{['src', 'src/pkg', 'tests', 'conf'][k % 4]}/file_{k:03d}.py"
        tree[path] = "".join(rng.choice(LINES).format(i=rng.randint(0, 999)) + "\n" for _ in range(40)).encode()
    return tree


def evolve(rng: random.Random, tree: dict[str, bytes], gen: int, files: int) -> dict[str, bytes]:
    new = dict(tree)
    for path in rng.sample(sorted(new), k=min(len(new), rng.randint(1, 3))):
        lines = new[path].decode().split("\n")
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(lines) - 1)
            lines[i] = rng.choice(LINES).format(i=gen)
        new[path] = "\n".join(lines).encode()
    r = rng.random()
    if r < 0.05:
        new[f"src/gen_{gen}.py"] = f"GEN = {gen}\n".encode()
    elif r < 0.1:
        extra = [p for p in new if "/gen_" in p]
        if extra:
            del new[rng.choice(extra)]
    return new


def record(store_dir: Path, generations: int, files: int, seed: int) -> tuple[list[dict[str, bytes]], float]:
    rng = random.Random(seed)
    trees = [initial_tree(rng, files)]
    start = time.perf_counter()
    with Tracker(store_dir, lineage="bench", actor="ai:bench") as t, t.batch():
        with t.node("g0") as n:
            n.code_diff(before={}, after=trees[0])
        for g in range(1, generations + 1):
            trees.append(evolve(rng, trees[-1], g, files))
            with t.node(f"g{g}", parents=[f"g{g - 1}"]) as n:
                n.code_diff(before=trees[-2], after=trees[-1])
    return trees, time.perf_counter() - start


def git_history(root: Path, trees: list[dict[str, bytes]]) -> tuple[Path, float] | None:
    if shutil.which("git") is None:
        return None
    repo = root / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    subprocess.run(["git", "--git-dir", str(repo), "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    chunks: list[bytes] = []
    prev: dict[str, bytes] = {}
    for i, tree in enumerate(trees, 1):
        msg = f"gen {i - 1}".encode()
        chunks.append(b"commit refs/heads/main\nmark :%d\ncommitter bench <bench@example.com> %d +0000\ndata %d\n%s\n"
                      % (i, 1_700_000_000 + i, len(msg), msg))
        if i > 1:
            chunks.append(b"from :%d\n" % (i - 1))
        for path in sorted(set(prev) - set(tree)):
            chunks.append(b"D %s\n" % path.encode())
        for path, data in sorted(tree.items()):
            if prev.get(path) != data:
                chunks.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))
        chunks.append(b"\n")
        prev = tree
    start = time.perf_counter()
    subprocess.run(["git", "--git-dir", str(repo), "fast-import", "--quiet"], input=b"".join(chunks), check=True)
    subprocess.run(["git", "--git-dir", str(repo), "gc", "-q"], check=True)
    return repo, time.perf_counter() - start


def time_git(root: Path, repo: Path, repeat: int) -> tuple[list[float], list[float]]:
    cold, switch = [], []
    for k in range(repeat):
        work = root / f"git-cold-{k}"
        work.mkdir()
        start = time.perf_counter()
        subprocess.run(["git", "--git-dir", str(repo), "--work-tree", str(work), "checkout", "-q", "-f", "main", "--", "."],
                       check=True)
        cold.append(time.perf_counter() - start)
    clone = root / "git-clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    first = subprocess.run(["git", "-C", str(clone), "rev-list", "--max-parents=0", "HEAD"], check=True,
                           capture_output=True, text=True).stdout.strip()
    for _ in range(repeat):
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", first], check=True)
        start = time.perf_counter()
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", "main"], check=True)
        switch.append(time.perf_counter() - start)
    return cold, switch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=1000)
    ap.add_argument("--files", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-checkout-"))
    try:
        trees, took = record(root / "store", args.generations, args.files, args.seed)
        store = Store.open(root / "store")
        last = f"g{args.generations}"
        print(f"recorded {args.generations} generations of a {args.files}-file tree "
              f"({len(trees[-1])} files at the end) in {took:.2f}s", flush=True)

        times = []
        for k in range(args.repeat):
            dest = root / f"co-{k}"
            start = time.perf_counter()
            co = checkout(store, last, dest)
            times.append(time.perf_counter() - start)
            assert co.tree_hash == tree_hash(trees[-1]) and read_tree(dest) == trees[-1]
        # where the time goes, for one cold rebuild
        start = time.perf_counter()
        mat = Materializer(store, "bench")
        t_index = time.perf_counter() - start
        start = time.perf_counter()
        mat.build(last)
        t_build = time.perf_counter() - start

        rows = [(f"lineage checkout {last} (cold, {len(co.steps)} diffs applied, every hash checked)",
                 min(times), statistics.median(times))]
        git = git_history(root, trees)
        if git is None:
            print("git is not installed: skipping the git comparison")
        else:
            repo, git_build = git
            cold, switch = time_git(root, repo, args.repeat)
            rows.append(("git checkout of the last commit into an empty work tree", min(cold), statistics.median(cold)))
            rows.append((f"git checkout from the first commit to the last ({args.generations} commits apart)",
                         min(switch), statistics.median(switch)))
        width = max(len(r[0]) for r in rows)
        print(f"\n{'':<{width}}  {'best':>8}  {'median':>8}")
        for name, best, med in rows:
            print(f"{name:<{width}}  {best:>7.3f}s  {med:>7.3f}s")
        print(f"\nof one cold rebuild: reading the log {t_index:.3f}s, verifying, parsing and applying "
              f"{args.generations} diffs {t_build:.3f}s; the rest is writing {len(trees[-1])} files and the manifest")
        verdict = "OK" if min(times) <= 2.0 else "OVER"
        print(f"target: <= 2 s for 1,000 generations of 50 files: {verdict} ({min(times):.3f}s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
