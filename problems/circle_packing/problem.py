"""Circle packing: 26 circles in the unit square, maximise the sum of their radii.

The candidate only proposes centres. The radii are recomputed here by linear programming
(the largest radii those centres admit), so a candidate cannot claim radii it did not earn;
radii it reports are checked and mentioned in the feedback, never scored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linprog

from evoengine.evaluation import CandidateError, call_candidate
from evoengine.problem import EvalResult, Feature, Problem

N_CIRCLES = 26
TOL = 1e-9  # how far outside the square a centre may lie, and how much circles may overlap
CALL_TIMEOUT_S = 30.0
TOUCH = 1e-6  # a circle closer than this to a wall or another circle touches it
SMALL_RADIUS = 0.01

DESCRIPTION = f"""\
Pack {N_CIRCLES} non-overlapping circles into the unit square, maximising the sum of radii.

The square is [0, 1] x [0, 1]; circles must lie inside it and must not overlap.

Write `construct_packing()`. It must return the {N_CIRCLES} circle centres as a list of
[x, y] pairs (a {N_CIRCLES}x2 list or numpy array), every coordinate within [0, 1]. It may
instead return `(centres, radii)`, but reported radii are never scored: the evaluator
computes, by linear programming, the largest radii your centres admit (every circle inside
the square, no two circles overlapping) and the score is the sum of those radii. Only the
centres matter, so place them so that every circle can grow: use the walls and corners,
mix circle sizes, leave no large empty gaps, and never put two centres very close together.

`construct_packing()` may compute the centres any way it likes (a fixed pattern, a
numerical optimisation with numpy/scipy, a search), but it must be deterministic (seed any
randomness) and finish within {CALL_TIMEOUT_S:.0f} seconds. Feedback names centres
outside the square, circles that got almost no radius, and the largest empty spot left;
circles are numbered by their position in your list, starting at 0.
"""

problem = Problem(
    name="circle_packing",
    description=DESCRIPTION,
    initial="initial.py",
    language="python",
    kind="program",
    features=(
        # Spread of circle sizes: 0 = all equal (grid-like), higher = a mix of large and small.
        Feature("radius_cv", 0.0, 0.5, 10),
        # Share of circles pressed against a wall of the square.
        Feature("boundary_fraction", 0.0, 1.0, 10),
    ),
    timeout_s=60.0,
    memory_mb=1024,
)


def evaluate(candidate_path: str) -> EvalResult:
    """Run the candidate's `construct_packing()` in a child process and score its centres."""
    try:
        value = call_candidate(candidate_path, "construct_packing", timeout_s=CALL_TIMEOUT_S)
    except CandidateError as exc:
        return EvalResult.invalid(f"construct_packing() failed: {exc}")
    return score_packing(value)


def score_packing(value: Any) -> EvalResult:
    """Score what `construct_packing()` returned: centres, or (centres, radii)."""
    try:
        centres, reported = parse_packing(value)
    except ValueError as exc:
        return EvalResult.invalid(str(exc))
    outside = centres_outside(centres)
    if outside:
        return EvalResult.invalid(_listing(outside, "centres outside the unit square"))

    centres = np.clip(centres, 0.0, 1.0)
    radii = lp_radii(centres)
    wall = wall_distances(centres)
    i, j = np.triu_indices(N_CIRCLES, 1)
    dist = np.linalg.norm(centres[i] - centres[j], axis=1)
    gaps = dist - radii[i] - radii[j]
    if radii.min() < 0 or (wall - radii).min() < -TOL or gaps.min() < -TOL:
        # lp_radii repairs solver round-off, so this means a bug here, not in the candidate.
        raise RuntimeError("LP radii violate the packing constraints")

    total = float(radii.sum())
    on_wall = wall - radii <= TOUCH
    small = np.flatnonzero(radii < SMALL_RADIUS)
    hole_r, hole_at = largest_hole(centres, radii)
    cv = float(radii.std() / radii.mean()) if total > 0 else 0.0
    metrics = {
        "sum_radii": total,
        "min_radius": float(radii.min()),
        "max_radius": float(radii.max()),
        "radius_cv": cv,
        "circles_on_boundary": float(on_wall.sum()),
        "contacts": float((gaps <= TOUCH).sum()),
        "small_circles": float(len(small)),
        "min_centre_distance": float(dist.min()),
        "largest_hole_radius": hole_r,
    }
    features = {
        "radius_cv": min(cv, problem.features[0].high),
        "boundary_fraction": float(on_wall.mean()),
    }

    lines = [
        f"Sum of radii {total:.6f} (radii recomputed by linear programming from your centres; "
        f"smallest {radii.min():.4f}, largest {radii.max():.4f}).",
        f"{int(on_wall.sum())} circles touch a wall; {int((gaps <= TOUCH).sum())} pairs of circles touch.",
    ]
    if len(small):
        names = ", ".join(str(k) for k in small[:10]) + (" ..." if len(small) > 10 else "")
        lines.append(
            f"{len(small)} circles have radius < {SMALL_RADIUS} (circles {names}): their centres are "
            "crowded by neighbours or too close to a wall; move them into open space."
        )
    close = np.flatnonzero(dist < 1e-3)
    for k in close[:3]:
        lines.append(f"Circles {i[k]} and {j[k]} have centres only {dist[k]:.2e} apart, so both stay tiny.")
    if hole_r > 0.01:
        lines.append(
            f"Largest empty spot: a circle of radius {hole_r:.3f} would still fit at "
            f"({hole_at[0]:.3f}, {hole_at[1]:.3f})."
        )
    if reported is not None:
        lines.append(_reported_note(centres, reported, total))
    return EvalResult(score=total, valid=True, metrics=metrics, features=features, feedback="\n".join(lines))


def parse_packing(value: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Split a returned value into a (26, 2) array of centres and optional reported radii.

    Raises ValueError with a message for the candidate when the value has the wrong shape.
    """
    expected = f"construct_packing() must return {N_CIRCLES} centres as a {N_CIRCLES}x2 list (or (centres, radii))"
    reported = None
    arr = _as_array(value)
    if arr is None or arr.shape != (N_CIRCLES, 2):
        if isinstance(value, (list, tuple)) and len(value) == 2:
            arr = _as_array(value[0])
            reported = _as_array(value[1])
            if reported is not None and reported.shape != (N_CIRCLES,):
                reported = None  # radii are never scored; a malformed list is simply ignored
        if arr is None:
            raise ValueError(f"{expected}; got {_describe(value)}")
    if arr.shape != (N_CIRCLES, 2):
        raise ValueError(f"{expected}; got an array of shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if len(bad):
        k = int(bad[0])
        raise ValueError(f"{len(bad)} centre(s) are not finite numbers, e.g. circle {k} at ({arr[k, 0]}, {arr[k, 1]})")
    return arr, reported


def centres_outside(centres: np.ndarray) -> list[str]:
    """One line per centre lying outside the unit square (beyond the 1e-9 tolerance)."""
    out = np.flatnonzero(((centres < -TOL) | (centres > 1 + TOL)).any(axis=1))
    return [f"circle {k} centre ({centres[k, 0]:.4g}, {centres[k, 1]:.4g}) lies outside the unit square" for k in out]


def wall_distances(centres: np.ndarray) -> np.ndarray:
    """Distance from each centre to the nearest side of the unit square."""
    return np.clip(np.minimum(centres, 1.0 - centres).min(axis=1), 0.0, None)


def lp_radii(centres: np.ndarray) -> np.ndarray:
    """The radii maximising their sum for fixed centres: max Σr s.t. rᵢ + rⱼ ≤ dᵢⱼ, 0 ≤ rᵢ ≤ wallᵢ.

    The solver's answer is then shrunk by its own round-off so that the result is feasible
    exactly (up to float arithmetic), not just to the solver's tolerance.
    """
    centres = np.asarray(centres, dtype=float)
    n = len(centres)
    wall = wall_distances(centres)
    i, j = np.triu_indices(n, 1)
    dist = np.linalg.norm(centres[i] - centres[j], axis=1)
    rows = np.arange(len(i))
    a_ub = np.zeros((len(i), n))
    a_ub[rows, i] = 1.0
    a_ub[rows, j] = 1.0
    res = linprog(-np.ones(n), A_ub=a_ub, b_ub=dist, bounds=np.column_stack([np.zeros(n), wall]), method="highs")
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"radius LP failed: {res.message}")
    radii = np.clip(res.x, 0.0, wall)
    excess = np.clip(radii[i] + radii[j] - dist, 0.0, None)
    shrink = np.zeros(n)
    np.maximum.at(shrink, i, excess)
    np.maximum.at(shrink, j, excess)
    return np.clip(radii - shrink, 0.0, None)


def largest_hole(centres: np.ndarray, radii: np.ndarray, steps: int = 101) -> tuple[float, np.ndarray]:
    """Approximate the largest circle that fits in the space left over (grid search)."""
    axis = np.linspace(0.0, 1.0, steps)
    points = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    # distances from every grid point to every centre, in one (points x circles) buffer: the same
    # values as a norm over the last axis of a (points x circles x 2) array, without making one
    free = np.subtract.outer(points[:, 0], centres[:, 0])
    dy = np.subtract.outer(points[:, 1], centres[:, 1])
    free *= free
    dy *= dy
    free += dy
    np.sqrt(free, out=free)
    free -= radii
    room = np.minimum(free.min(axis=1), wall_distances(points))
    best = int(room.argmax())
    return float(max(room[best], 0.0)), points[best]


def reported_radii_problems(centres: np.ndarray, radii: np.ndarray) -> list[str]:
    """What is wrong with radii a candidate reported, if anything (one line per kind of fault)."""
    if not np.isfinite(radii).all() or (radii < 0).any():
        return ["some reported radii are negative or not finite"]
    problems = []
    out = radii - wall_distances(centres)
    bad = np.flatnonzero(out > TOL)
    if len(bad):
        k = int(bad[out[bad].argmax()])
        problems.append(f"{len(bad)} circles stick out of the square (worst: circle {k} by {out[k]:.2e})")
    i, j = np.triu_indices(len(centres), 1)
    overlap = radii[i] + radii[j] - np.linalg.norm(centres[i] - centres[j], axis=1)
    bad = np.flatnonzero(overlap > TOL)
    if len(bad):
        k = int(bad[overlap[bad].argmax()])
        problems.append(f"{len(bad)} pairs of circles overlap (worst: circles {i[k]} and {j[k]} by {overlap[k]:.2e})")
    return problems


def _reported_note(centres: np.ndarray, reported: np.ndarray, total: float) -> str:
    problems = reported_radii_problems(centres, reported)
    if problems:
        return f"Your reported radii were not scored, and they are infeasible: {'; '.join(problems)}."
    claimed = float(reported.sum())
    if claimed < total - 1e-6:
        return (
            f"Your reported radii sum to {claimed:.6f}; the best radii for your centres sum to "
            f"{total:.6f}, which is what is scored."
        )
    return "Your reported radii are feasible; the score uses the LP radii for your centres."


def _as_array(value: Any) -> np.ndarray | None:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a value of type {type(value).__name__}"


def _listing(lines: list[str], what: str) -> str:
    head = f"{len(lines)} {what}: " if len(lines) > 1 else ""
    shown = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
    return head + shown + ". Every centre must satisfy 0 <= x <= 1 and 0 <= y <= 1."
