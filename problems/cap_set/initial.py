"""Seed for cap_set: the priority that ranks the vectors of F_3^n for a greedy construction.

The evaluator calls `priorities(n)`, which is frozen: it asks `priority` about every vector.
"""

import itertools


# EVOLVE-BLOCK-START
def priority(el: tuple[int, ...], n: int) -> float:
    """How early the greedy construction should try the vector `el`; higher goes first.

    `el` has n entries, each 0, 1 or 2. Vectors with equal priority are tried in
    lexicographic order, so a constant priority gives the lexicographic greedy cap.
    """
    ones = el.count(1)
    twos = el.count(2)
    score = 0.0
    score += 0.0 * ones
    score += 0.0 * twos
    score += 0.0 * ones * twos
    return score
# EVOLVE-BLOCK-END


def priorities(n: int) -> list[float]:
    """`priority` of every vector of F_3^n, in lexicographic order."""
    return [float(priority(el, n)) for el in itertools.product(range(3), repeat=n)]
