"""Seed for deceptive_ridge: a design point in the unit square.

The evaluator calls `design()` and scores the point it returns.
"""


# EVOLVE-BLOCK-START
def design() -> list[float]:
    """Return the design point [x, y]; both coordinates must lie in [0, 1]."""
    x = 0.25
    y = 0.3
    return [x, y]
# EVOLVE-BLOCK-END
