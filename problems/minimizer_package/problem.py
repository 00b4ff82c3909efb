"""A candidate of two files: a first-order minimiser's code (`minimizer.py`) and its settings
(`settings.yaml`). The step size lives in the settings, the update rule in the code; the seed
is plain gradient descent with a tiny step and its velocity term switched off, so the best
scores need a larger step (settings) and momentum (code) together. See README.md.

The evaluator gets a folder holding both files and calls `minimize(grad, x0)` of
`minimizer.py` in a child process (`call_candidate`), once per test function, with a
gradient oracle that refuses calls beyond the budget. It computes the function values
itself from the returned points.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from evoengine.evaluation import CandidateError, call_candidate
from evoengine.problem import EvalResult, Feature, Problem

BUDGET = 30  # gradient calls per test function (settings.yaml says so, outside its EVOLVE-BLOCK)
CALL_TIMEOUT_S = 10.0
FLOOR, CEILING = -3.0, 12.0  # per-test score bounds: a divergence scores FLOOR, an exact minimum CEILING

# Quadratics f(x) = 0.5 * sum(lam_i * z_i^2), z = R x: eigenvalues, rotation angle (2-D), start.
TESTS: dict[str, tuple[list[float], float, list[float]]] = {
    "narrow_valley": ([1.0, 40.0], 0.0, [1.0, 1.0]),
    "tilted_valley": ([2.0, 30.0], math.pi / 6, [-1.0, 2.0]),
    "four_scales": ([1.0, 4.0, 12.0, 36.0], 0.0, [1.0, 1.0, 1.0, 1.0]),
}

DESCRIPTION = f"""\
Improve a small first-order minimiser made of two files. `minimizer.py` defines
`minimize(grad, x0)`: starting from the point x0 (a list of floats) it may call `grad(x)`
(the gradient at x, a list of floats) at most {BUDGET} times and returns the point it reaches.
`settings.yaml` holds its settings: the iteration budget (fixed) and the step size, which
`minimizer.py` reads when it is imported.

The score is the mean, over a few smooth test functions of 2 to 4 variables with very
different curvatures along different directions, of -log10(f(x_end) / f(x0)): the number of
orders of magnitude the function value fell (at most {CEILING:g}; a divergence scores {FLOOR:g}).
Calling grad more than {BUDGET} times is refused.
"""

problem = Problem(
    name="minimizer_package",
    description=DESCRIPTION,
    initial="seed",
    language="python",
    kind="program",
    features=(Feature("log10_step", -4.0, 0.0, 8), Feature("block_lines", 5.0, 45.0, 8)),
    timeout_s=30.0,
    memory_mb=1024,
)


def _quadratic(lams: list[float], angle: float) -> tuple[Any, Any]:
    """f and its gradient for eigenvalues `lams`, the first two coordinates rotated by `angle`."""
    c, s = math.cos(angle), math.sin(angle)

    def rotate(x: list[float], sign: float) -> list[float]:
        z = list(x)
        z[0], z[1] = c * x[0] - sign * s * x[1], sign * s * x[0] + c * x[1]
        return z

    def f(x: list[float]) -> float:
        z = rotate(x, 1.0)
        return 0.5 * sum(lam * zi * zi for lam, zi in zip(lams, z, strict=True))

    def grad(x: list[float]) -> list[float]:
        return rotate([lam * zi for lam, zi in zip(lams, rotate(x, 1.0), strict=True)], -1.0)

    return f, grad


def _oracle(grad: Any, n: int) -> Any:
    """`grad` for the candidate: checks its argument and refuses calls beyond the budget."""
    calls = [0]

    def oracle(x: Any) -> list[float]:
        calls[0] += 1
        if calls[0] > BUDGET:
            raise RuntimeError(f"grad was called more than {BUDGET} times")
        point = [float(v) for v in x]
        if len(point) != n:
            raise ValueError(f"grad(x) needs {n} coordinates, got {len(point)}")
        return grad(point)

    return oracle


def _point(value: Any, n: int) -> list[float] | str:
    """The returned point, or why it is not one."""
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return f"minimize() must return a list of {n} floats (got {str(value)[:80]})"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return f"minimize() returned non-numbers: {str(value)[:80]}"
    return [float(v) for v in value]


def _features(folder: Path) -> dict[str, float]:
    try:
        step = float(yaml.safe_load((folder / "settings.yaml").read_text())["step"])
    except Exception:  # noqa: BLE001 - a broken settings file shows in the score's reason, not here
        step = 0.0
    text = (folder / "minimizer.py").read_text()
    block = text.split("# EVOLVE-BLOCK-START")[-1].split("# EVOLVE-BLOCK-END")[0]
    lines = sum(1 for line in block.splitlines() if line.strip())
    return {"log10_step": math.log10(step) if step > 0 else -4.0, "block_lines": float(lines)}


def evaluate(candidate_path: str) -> EvalResult:
    """Run `minimize` on each test function and score how far each function value fell."""
    folder = Path(candidate_path)
    scores: dict[str, float] = {}
    lines = []
    for name, (lams, angle, x0) in TESTS.items():
        f, grad = _quadratic(lams, angle)
        try:
            value = call_candidate(
                folder / "minimizer.py", "minimize", _oracle(grad, len(x0)), list(x0), timeout_s=CALL_TIMEOUT_S
            )
        except CandidateError as exc:
            return EvalResult.invalid(f"{name}: minimize() failed: {exc}")
        point = _point(value, len(x0))
        if isinstance(point, str):
            return EvalResult.invalid(f"{name}: {point}")
        ratio = f(point) / f(x0)
        if not math.isfinite(ratio):
            scores[name] = FLOOR
        else:
            scores[name] = min(CEILING, max(FLOOR, -math.log10(max(ratio, 10.0**-CEILING))))
        lines.append(f"{name}: f fell by {scores[name]:.2f} orders of magnitude (f_end/f_start = {ratio:.3g})")
    score = sum(scores.values()) / len(scores)
    return EvalResult(
        score=score,
        metrics={f"orders_{k}": v for k, v in scores.items()},
        features=_features(folder),
        feedback="\n".join(lines),
        instances=scores,
    )
