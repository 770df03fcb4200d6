"""Score packer.py on one split of the instance files.

    python evaluate.py --split public [--seed 0]

Packs every instance of instances/<split>.json with packer.pack(items, capacity, seed),
checks each packing, and reports three metrics:

  efficiency  sum of lower bounds / bins used (higher is better; 1.0 cannot be beaten)
  bins        bins used over all instances (lower is better)
  fill        mean squared fill of the bins (Falkenauer's fitness; higher is better): it
              also rewards packings that leave their free space in few bins

The last line of stdout is a JSON object of the metrics, and metrics.json in the working
directory holds the same object. A packing that breaks the rules exits with status 2.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import packer


def lower_bound(items, capacity):
    # Total size over capacity, rounded up: no packing can use fewer bins.
    return math.ceil(sum(items) / capacity)


def check(items, capacity, bins):
    if any(sum(b) > capacity for b in bins):
        raise ValueError("a bin is over capacity")
    if sum(len(b) for b in bins) != len(items):
        raise ValueError("items were lost or duplicated")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="public")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = json.loads(Path("instances", f"{args.split}.json").read_text())
    bound = used = 0
    fill = 0.0
    for inst in data["instances"]:
        items, capacity = inst["items"], inst["capacity"]
        bins = packer.pack(list(items), capacity, seed=args.seed)
        try:
            check(items, capacity, bins)
        except ValueError as exc:
            print(f"{inst['name']}: invalid packing: {exc}", file=sys.stderr)
            return 2
        bound += lower_bound(items, capacity)
        used += len(bins)
        fill += sum((sum(b) / capacity) ** 2 for b in bins) / len(bins)

    metrics = {
        "efficiency": round(bound / used, 6),
        "bins": used,
        "fill": round(fill / len(data["instances"]), 6),
    }
    text = json.dumps(metrics, sort_keys=True)
    Path("metrics.json").write_text(text + "\n")
    print(f"{args.split}: {len(data['instances'])} instances, {used} bins, lower bound {bound}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
