"""Regenerate the demo's instance files (seed/instances/*.json). Deterministic: fixed seeds.

    python data/demo/make_instances.py

Three splits drawn from the same four families, each with its own seed:
``train`` (for tuning), ``public`` (the score the loop optimizes) and ``heldout`` (kept
aside to catch overfitting). One instance per line, so a diff of these files reads well.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "seed" / "instances"
SEEDS = {"train": 1, "public": 2, "heldout": 3}


def uniform(rng: random.Random, n: int = 40) -> dict:
    return {"family": "uniform", "capacity": 150, "items": [rng.randint(20, 100) for _ in range(n)]}


def triplets(rng: random.Random, bins: int = 12) -> dict:
    # Falkenauer-style: every optimal bin holds exactly three items filling it to the brim.
    items: list[int] = []
    while len(items) < 3 * bins:
        a = rng.randint(380, 495)
        b = rng.randint(251, 1000 - a - 251)
        c = 1000 - a - b
        if 250 < b < 500 and 250 < c < 500:
            items += [a, b, c]
    rng.shuffle(items)
    return {"family": "triplets", "capacity": 1000, "items": items}


def big_small(rng: random.Random, n: int = 60) -> dict:
    # Items over half the capacity can never share a bin: a trap for the L1 lower bound.
    return {"family": "big-small", "capacity": 100,
            "items": [rng.randint(51, 70) if rng.random() < 0.4 else rng.randint(5, 35) for _ in range(n)]}


def divisible(rng: random.Random, n: int = 60) -> dict:
    # Sizes that add up to the capacity exactly: punishes any off-by-one in the fit test.
    return {"family": "divisible", "capacity": 100, "items": [rng.choice([10, 20, 25, 30, 50, 50]) for _ in range(n)]}


def split(name: str) -> list[dict]:
    rng = random.Random(SEEDS[name])
    out = []
    for k in range(3):
        for family in (uniform, triplets, big_small, divisible):
            inst = family(rng)
            out.append({"name": f"{inst['family']}-{k + 1}", **inst})
    return out


def render(name: str, instances: list[dict]) -> str:
    lines = ",\n".join("  " + json.dumps(inst, separators=(", ", ": ")) for inst in instances)
    return f'{{"split": "{name}", "instances": [\n{lines}\n]}}\n'


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in SEEDS:
        (OUT / f"{name}.json").write_text(render(name, split(name)))


if __name__ == "__main__":
    main()
