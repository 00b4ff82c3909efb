"""Seed for bin_packing: an online bin-packing heuristic (First Fit).

The evaluator calls `pack(instances, capacity)`, which is frozen: it packs the items one at a
time, in order, asking `priority` which open bin should take each item.
"""

import numpy as np


# EVOLVE-BLOCK-START
def priority(item: float, bins: np.ndarray) -> np.ndarray:
    """Score every open bin that can take `item`; the item goes into the highest-scoring one.

    `bins` holds the remaining capacity of each open bin with room for the item, oldest bin
    first. Return one score per bin (an array of the same length).
    """
    age = np.arange(len(bins), dtype=float)  # 0 = the oldest open bin
    room_left = bins - item  # space each bin would have left after taking the item
    return -1.0 * age + 0.001 * room_left
# EVOLVE-BLOCK-END


def pack(instances: list[list[float]], capacity: float) -> list[list[int]]:
    """Pack each instance online and return, per instance, the bin index of every item.

    An item goes into the open bin with room for it that `priority` scores highest; a new bin
    is opened only when no open bin has room. Bins are numbered in the order they opened.
    """
    assignments = []
    for items in instances:
        remaining = np.empty(len(items), dtype=float)
        n_open = 0
        assignment = []
        for item in items:
            fits = np.flatnonzero(remaining[:n_open] >= item)
            if len(fits) == 0:
                remaining[n_open] = capacity - item
                assignment.append(n_open)
                n_open += 1
                continue
            scores = np.asarray(priority(float(item), remaining[fits]), dtype=float)
            if scores.shape != fits.shape:
                raise ValueError(
                    f"priority() must return one score per bin: got shape {scores.shape} "
                    f"for {len(fits)} bins"
                )
            best = int(fits[int(np.argmax(scores))])
            remaining[best] -= item
            assignment.append(best)
        assignments.append(assignment)
    return assignments
