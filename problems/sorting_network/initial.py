"""Seed for sorting_network: one bubble pass, a loop of neighbouring comparators.

The evaluator calls `comparators(n)` and checks the network it returns itself.
"""


# EVOLVE-BLOCK-START
def comparators(n: int) -> list[tuple[int, int]]:
    """The network: comparator (i, j) puts the smaller of wires i and j on wire min(i, j)."""
    pairs = []
    for i in range(0, n - 1, 1):  # one bubble pass: carries the largest value to the last wire
        pairs.append((i, i + 1))
    return pairs
# EVOLVE-BLOCK-END
