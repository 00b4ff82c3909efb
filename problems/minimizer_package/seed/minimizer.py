"""A first-order minimiser: `minimize(grad, x0)` returns the point it reaches.

The step size and the iteration budget come from settings.yaml, beside this file.
"""

from pathlib import Path

import yaml

SETTINGS = yaml.safe_load((Path(__file__).parent / "settings.yaml").read_text())
STEP = float(SETTINGS["step"])
STEPS = int(SETTINGS["steps"])


# EVOLVE-BLOCK-START
def minimize(grad, x0):
    """Gradient descent from x0 with STEPS calls of grad; a velocity term is kept but unused."""
    x = list(x0)
    v = [0.0] * len(x)
    for _ in range(STEPS):
        g = grad(x)
        v = [0.0 * vi - STEP * gi for vi, gi in zip(v, g)]
        x = [xi + vi for xi, vi in zip(x, v)]
    return x


# EVOLVE-BLOCK-END
