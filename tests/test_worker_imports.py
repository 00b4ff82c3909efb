"""A module an evaluation imports is imported once by its worker, so later evaluations inherit it
instead of importing it again; what a candidate writes and imports itself never is, nor a
module whose import does something, and
numpy's global generator still draws afresh in every evaluation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from evoengine.evaluation import EvaluatorPool, Limits

# The evaluator runs the candidate's report() in its own process, as a problem may.
PROBLEM = """
import json, runpy
from evoengine import EvalResult, Problem

problem = Problem(name="imports", description="reports what its evaluator had imported", initial="seed.py")


def evaluate(path):
    report = runpy.run_path(path)["report"]()
    return EvalResult(score=1.0, artifacts={"report": json.dumps(report)})
"""

CANDIDATE = """
import sys


def report():
    seen = {name: name in sys.modules for name in ("colorsys", "numpy.random", "planted_module", "this")}
    import colorsys
    import numpy.random
    import this  # prints; the worker never imports a module that does something

    with open("planted_module.py", "w") as f:
        f.write("X = 1\\n")
    sys.path.insert(0, ".")
    import planted_module

    return {"seen": seen, "draw": float(numpy.random.rand())}
"""


def test_an_evaluations_imports_are_inherited_by_the_next_but_never_a_candidates_own_module(tmp_path: Path):
    folder = tmp_path / "problem"
    folder.mkdir()
    (folder / "problem.py").write_text(PROBLEM)
    (folder / "seed.py").write_text(CANDIDATE)

    async def three_reports() -> list[dict]:
        pool = EvaluatorPool(folder / "problem.py", 1, Limits(timeout_s=20))  # one worker: it serves all three
        await pool.start()
        try:
            results = [await pool.evaluate(CANDIDATE, label=f"candidate {k}") for k in range(3)]
        finally:
            await pool.close()
        assert all(r.valid for r in results), [r.feedback for r in results]
        return [json.loads(r.artifacts["report"]) for r in results]

    first, *later = asyncio.run(three_reports())
    assert first["seen"] == {"colorsys": False, "numpy.random": False, "planted_module": False, "this": False}
    for report in later:  # the standard library's and numpy's modules came with the fork
        assert report["seen"] == {"colorsys": True, "numpy.random": True, "planted_module": False, "this": False}
    draws = [first["draw"]] + [r["draw"] for r in later]
    assert len(set(draws)) == 3, draws  # numpy.random imported by the worker is seeded afresh in each evaluation
