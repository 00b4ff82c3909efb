"""Symbolic regression: recover a formula from 20 noiseless samples, scored on held-out points.

The target is Nguyen-12 (a benchmark of the symbolic-regression literature), a polynomial in
two variables on [-1, 1]^2; neither the formula nor its name is given to the search. The
candidate writes `f(x, y)`. Its frozen `predict` runs in a child process on the 20 training
points and 200 held-out points, and the score is computed here from the held-out predictions
only: -log10(NMSE + 1e-12), NMSE = mean squared error / variance of the targets. An exact
formula scores 12; predicting the mean scores 0. The feedback shows training errors only.
"""

from __future__ import annotations

import ast
import functools
import math
from pathlib import Path
from typing import Any

import numpy as np

from evoengine.evaluation import CandidateError, call_candidate
from evoengine.problem import EvalResult, Feature, Problem

TRAIN_SEED, TRAIN_POINTS = 12, 20
HELDOUT_SEED, HELDOUT_POINTS = 1012, 200
FLOOR = 1e-12  # added to the NMSE, so the score tops out at 12
CALL_TIMEOUT_S = 10.0

DESCRIPTION = f"""\
Symbolic regression: find the formula behind a function of two variables.

Write `f(x, y)`, returning a float, for inputs x and y in [-1, 1]. It is fitted on
{TRAIN_POINTS} training points (the feedback shows the worst ones with their targets) and
scored on {HELDOUT_POINTS} other points of the same square that are never shown. The target
is an exact, smooth, noiseless formula. Score: -log10(NMSE + 1e-12) on the hidden points, where NMSE is
the mean squared error divided by the variance of the targets: predicting the mean scores 0,
an error of 1% of the variance scores 2, the exact formula scores 12. `f` must be
deterministic and return a finite number at every point.
"""

problem = Problem(
    name="symbolic_regression",
    description=DESCRIPTION,
    initial="initial.py",
    language="python",
    kind="program",
    features=(
        # How well it fits the points it can see (log10 of the training NMSE, clipped).
        Feature("log_train_nmse", -12.0, 0.0, 12),
        # How big the formula is: arithmetic operations and calls in the candidate's code.
        Feature("operations", 0.0, 40.0, 10),
    ),
    timeout_s=30.0,
    memory_mb=1024,
)


def target(points: np.ndarray) -> np.ndarray:
    """Nguyen-12: x^4 - x^3 + y^2/2 - y."""
    x, y = points[:, 0], points[:, 1]
    return x**4 - x**3 + 0.5 * y**2 - y


@functools.cache
def datasets() -> tuple[np.ndarray, np.ndarray]:
    """The training and held-out points: fixed, the same for every candidate."""
    train = np.random.default_rng(TRAIN_SEED).uniform(-1.0, 1.0, (TRAIN_POINTS, 2))
    heldout = np.random.default_rng(HELDOUT_SEED).uniform(-1.0, 1.0, (HELDOUT_POINTS, 2))
    return train, heldout


def evaluate(candidate_path: str) -> EvalResult:
    """Run the candidate's `predict` on every point in a child process and score the held-out part."""
    train, heldout = datasets()
    points = np.vstack([train, heldout]).tolist()
    try:
        value = call_candidate(candidate_path, "predict", points, timeout_s=CALL_TIMEOUT_S)
    except CandidateError as exc:
        return EvalResult.invalid(f"predict() failed: {exc}")
    return score_predictions(value, operations(Path(candidate_path).read_text()))


def nmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean((predicted - actual) ** 2) / np.var(actual))


def score_predictions(value: Any, size: int = 0) -> EvalResult:
    """Check the predictions and score them: the held-out ones count, the training ones are feedback."""
    train, heldout = datasets()
    try:
        predicted = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        predicted = None
    if predicted is None or predicted.shape != (TRAIN_POINTS + HELDOUT_POINTS,):
        return EvalResult.invalid(f"predict() must return one float per point; got {str(value)[:200]}")
    bad = np.flatnonzero(~np.isfinite(predicted))
    if len(bad):
        return EvalResult.invalid(f"f() returned a non-finite value at {len(bad)} of the points; it must be finite")
    train_pred, held_pred = predicted[:TRAIN_POINTS], predicted[TRAIN_POINTS:]
    train_y, held_y = target(train), target(heldout)
    train_nmse, held_nmse = nmse(train_pred, train_y), nmse(held_pred, held_y)
    score = -math.log10(held_nmse + FLOOR)
    log_train = max(-12.0, min(0.0, math.log10(train_nmse + FLOOR)))
    worst = np.argsort(-np.abs(train_pred - train_y))[:3]
    rows = "\n".join(
        f"  f({train[k, 0]:.4f}, {train[k, 1]:.4f}) = {train_pred[k]:.6g}, target {train_y[k]:.6g}" for k in worst
    )
    feedback = (
        f"Training NMSE {train_nmse:.3g} (log10 {math.log10(train_nmse + FLOOR):.2f}); the held-out "
        f"score is {score:.4f}.\nLargest training errors:\n{rows}"
    )
    return EvalResult(
        score=score,
        valid=True,
        metrics={"train_nmse": train_nmse, "heldout_nmse": held_nmse, "operations": float(size)},
        features={"log_train_nmse": log_train, "operations": float(min(size, 40))},
        feedback=feedback,
    )


def operations(source: str) -> int:
    """Arithmetic operations and calls in the candidate's code (0 if it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return 0
    return sum(isinstance(node, (ast.BinOp, ast.AugAssign, ast.Call)) for node in ast.walk(tree))
