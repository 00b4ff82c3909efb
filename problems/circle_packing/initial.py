"""Seed for circle_packing: 26 circle centres in the unit square.

The evaluator calls `construct_packing()` and recomputes the radii itself from the centres.
"""

import numpy as np


# EVOLVE-BLOCK-START
def construct_packing():
    """Return 26 centres [[x, y], ...] inside the unit square.

    Layout: one circle in the middle, an inner ring around it and an outer ring around
    that. The ring sizes below are far from tuned: the whole pattern sits in the middle
    of the square and leaves the corners empty.
    """
    middle = [0.5, 0.5]
    inner_count = 8
    inner_radius = 0.1
    inner_phase = 0.0
    outer_count = 25 - inner_count
    outer_radius = 0.2
    outer_phase = 0.0

    centres = [middle]
    for k in range(inner_count):
        angle = 2.0 * np.pi * k / inner_count + inner_phase
        centres.append([middle[0] + inner_radius * np.cos(angle), middle[1] + inner_radius * np.sin(angle)])
    for k in range(outer_count):
        angle = 2.0 * np.pi * k / outer_count + outer_phase
        centres.append([middle[0] + outer_radius * np.cos(angle), middle[1] + outer_radius * np.sin(angle)])

    centres = np.clip(np.array(centres), 0.01, 0.99)
    return centres.tolist()
# EVOLVE-BLOCK-END
