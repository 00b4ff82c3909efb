"""A test problem whose evaluator asks a model about what the candidate's code returns: the
evaluator model path with candidate code run by `call_candidate` beside it."""

from evoengine import EvalResult, Problem
from evoengine.evaluation import CandidateError, call_candidate, models

problem = Problem(
    name="model_judge",
    description="Return a sentence from `answer()`; a judge model rates it.",
    initial="initial.py",
    timeout_s=60,
    memory_mb=1024,
    evaluator_models=("judge",),
)


def evaluate(path: str) -> EvalResult:
    try:
        said = call_candidate(path, "answer", timeout_s=30)
    except CandidateError as exc:
        return EvalResult.invalid(str(exc))
    reply = models.chat([{"role": "user", "content": f"Rate this answer: {str(said)[:2000]}"}], model="judge")
    return EvalResult(score=float(len(reply)), artifacts={"answer": str(said)[:8000], "judge": reply})
