# Rewrites the problem's scorer and evoengine's result type in its own process, then returns
# a worthless answer: the evaluator must still score what solve() returned.
import sys

FAKE = {"score": 1e9, "valid": True}


def solve(n):
    for name, module in list(sys.modules.items()):
        if name.startswith("evoengine_problem") and hasattr(module, "score"):
            module.score = lambda values: FAKE
    import evoengine.problem

    evoengine.problem.EvalResult.coerce = classmethod(lambda cls, value: cls(score=1e9))
    return [0.0] * n
