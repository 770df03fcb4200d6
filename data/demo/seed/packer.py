"""Pack items into as few bins as possible.

evaluate.py calls pack(items, capacity, seed) once per instance and expects a list of
bins, each a list of item sizes. `seed` is for heuristics that randomize: they must draw
from random.Random(seed), so that a rerun packs exactly the same way.
"""


def fits(load, item, capacity):
    """Whether `item` still fits into a bin that already holds `load`."""
    return load + item < capacity


def choose_bin(loads, item, capacity):
    """Index of the open bin that takes `item`, or None to open a new one."""
    # Next fit: only the last opened bin is considered, as if the others were closed.
    for i in range(len(loads))[-1:]:
        if fits(loads[i], item, capacity):
            return i
    return None


def pack(items, capacity, seed=0):
    bins, loads = [], []
    for item in items:
        i = choose_bin(loads, item, capacity)
        if i is None:
            bins.append([item])
            loads.append(item)
        else:
            bins[i].append(item)
            loads[i] += item
    return bins
