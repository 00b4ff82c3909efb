"""A deceptive landscape for testing diversity: a broad hill near the seed, a narrow higher peak
far from it, reachable only by crossing a valley and climbing a low ridge.

The candidate returns a point (x, y) in the unit square; the score is a fixed function of it
(`landscape`). Hill climbing from the seed converges on the hill (score 1). The peak (score 2)
sits at the top of a ridge whose every point scores below the hill, so a population that keeps
only its best members throws the stepping stones away; a MAP-Elites archive over (x, y) keeps
one per cell and can walk them across. See README.md for the picture.
"""

from __future__ import annotations

import math
from typing import Any

from evoengine.evaluation import CandidateError, call_candidate
from evoengine.problem import EvalResult, Feature, Problem

CALL_TIMEOUT_S = 10.0

# The landscape: (centre, width, height) of each part. Only README.md and this file know them.
HILL = ((0.35, 0.35), 0.08, 1.0)  # broad local optimum near the seed
PEAK = ((0.65, 0.65), 0.04, 2.0)  # narrow global optimum
RIDGE_X, RIDGE_WIDTH, RIDGE_TOP = 0.65, 0.05, 0.7  # low ridge along x = 0.65 rising to the peak

DESCRIPTION = """\
Find the design point (x, y) in the unit square with the highest score.

Write `design()`. It must return a list of two floats [x, y], each within [0, 1]. The score
is a fixed, continuous, deterministic function of the point, and nothing more is known about it
than what the feedback reports. It has more than one local optimum: small changes that
improve the score can lead into a dead end, and a better region may only be reached by
passing through worse ones. Returning points outside the square is invalid.
"""

problem = Problem(
    name="deceptive_ridge",
    description=DESCRIPTION,
    initial="initial.py",
    language="python",
    kind="program",
    features=(Feature("x", 0.0, 1.0, 10), Feature("y", 0.0, 1.0, 10)),
    timeout_s=20.0,
    memory_mb=1024,
)


def evaluate(candidate_path: str) -> EvalResult:
    """Run the candidate's `design()` in a child process and score the point."""
    try:
        value = call_candidate(candidate_path, "design", timeout_s=CALL_TIMEOUT_S)
    except CandidateError as exc:
        return EvalResult.invalid(f"design() failed: {exc}")
    return score_design(value)


def score_design(value: Any) -> EvalResult:
    """Validate the returned point and score it on the landscape."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return EvalResult.invalid(f"design() must return [x, y], two numbers; got {value!r:.200}")
    x, y = float(value[0]), float(value[1])
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):  # also rejects nan
        return EvalResult.invalid(f"design() returned ({x:.4g}, {y:.4g}); both coordinates must lie in [0, 1]")
    score = landscape(x, y)
    return EvalResult(
        score=score,
        valid=True,
        metrics={"x": x, "y": y},
        features={"x": x, "y": y},
        feedback=f"The point ({x:.4f}, {y:.4f}) scores {score:.6f}.",
    )


def landscape(x: float, y: float) -> float:
    """The score: the highest of the hill, the ridge and the peak at (x, y)."""
    (hx, hy), h_width, h_height = HILL
    (px, py), p_width, p_height = PEAK
    hill = h_height * _bump(x - hx, y - hy, h_width)
    peak = p_height * _bump(x - px, y - py, p_width)
    # The ridge rises linearly in y towards the peak and falls off across x.
    along = max(0.0, 1.0 - abs(y - py) / py)
    ridge = RIDGE_TOP * along * math.exp(-((x - RIDGE_X) ** 2) / (2 * RIDGE_WIDTH**2))
    return max(hill, ridge, peak)


def _bump(dx: float, dy: float, width: float) -> float:
    return math.exp(-(dx * dx + dy * dy) / (2 * width * width))
