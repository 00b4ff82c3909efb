"""An evaluator of OpenEvolve's shape that returns their EvaluationResult: metrics plus
artifacts (text that flows back into the next prompt). Needs the openevolve package."""

import math

from evaluator import TARGET, _run
from openevolve.evaluation_result import EvaluationResult


def evaluate(program_path):
    x, y = _run(program_path)
    distance = math.hypot(x - TARGET[0], y - TARGET[1])
    hint = "move x up" if x < TARGET[0] else "move x down"
    return EvaluationResult(
        metrics={"combined_score": 1.0 / (1.0 + distance), "distance": distance},
        artifacts={"hint": hint, "stdout": f"point ({x:.3f}, {y:.3f})"},
    )
