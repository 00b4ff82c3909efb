"""A tiny, cheap test problem: tune three constants towards a hidden optimum."""

from evoengine import EvalResult, Feature, Problem
from evoengine.evaluation import CandidateError, call_candidate

problem = Problem(
    name="quadratic",
    description="Return three floats (a, b, c) from `params()`. The score is higher the closer "
    "they are to an unknown target.",
    initial="initial.py",
    features=(Feature("a", -5.0, 5.0, 8), Feature("b", -5.0, 5.0, 8)),
    timeout_s=10,
    memory_mb=1024,
)

TARGET = (1.5, -2.0, 0.75)


def evaluate(path: str) -> EvalResult:
    try:
        value = call_candidate(path, "params", timeout_s=5)
    except CandidateError as exc:
        return EvalResult.invalid(str(exc))
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
        return EvalResult.invalid(f"params() must return three numbers, got {value!r}")
    error = sum((v - t) ** 2 for v, t in zip(value, TARGET, strict=True))
    return EvalResult(
        score=-error,
        metrics={"error": error},
        features={"a": max(-5.0, min(5.0, value[0])), "b": max(-5.0, min(5.0, value[1]))},
        feedback=f"squared distance to target: {error:.4f}",
    )
