"""Seed for noisy_knapsack: an online knapsack policy that takes every item that fits.

The evaluator calls `run(instances, capacity)`, which is frozen: it offers the items of each
instance one at a time and asks `accept` whether to take each.
"""


# EVOLVE-BLOCK-START
def accept(value: float, weight: float, room: float, items_left: int) -> bool:
    """Whether to take the item now offered; a taken item must fit (`weight <= room`).

    `room` is the capacity still free, `items_left` how many items come after this one.
    """
    ratio = value / weight
    threshold = 0.0
    return weight <= room and ratio >= threshold
# EVOLVE-BLOCK-END


def run(instances: list[list[list[float]]], capacity: float) -> list[list[bool]]:
    """For each instance (a list of [value, weight] items, in arrival order), the decisions."""
    decisions = []
    for items in instances:
        room = capacity
        taken = []
        for k, (value, weight) in enumerate(items):
            take = bool(accept(value, weight, room, len(items) - k - 1))
            if take:
                room -= weight
            taken.append(take)
        decisions.append(taken)
    return decisions
