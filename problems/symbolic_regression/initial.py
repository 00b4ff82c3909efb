"""Seed for symbolic_regression: the least-squares plane through the training points.

The evaluator calls `predict(points)`, which is frozen: it calls `f(x, y)` at every point.
"""


# EVOLVE-BLOCK-START
def f(x: float, y: float) -> float:
    """Predict the target at (x, y); both inputs lie in [-1, 1]."""
    # A polynomial in x and one in y, in Horner form; as given, together the least-squares plane.
    u = 0.0
    u = u * x + 0.0
    u = u * x + 0.0
    u = u * x + -0.80362752  # slope in x
    u = u * x + 0.38847634  # intercept
    v = 0.0
    v = v * y + -0.68018683  # slope in y
    v = v * y + 0.0
    return u + v
# EVOLVE-BLOCK-END


def predict(points: list[list[float]]) -> list[float]:
    """The model's prediction at every (x, y) point."""
    return [float(f(x, y)) for x, y in points]
