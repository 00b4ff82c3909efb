"""A tiny problem for the sandbox tests: `solve(n)` returns n numbers, each worth up to 1.

The evaluator recomputes the score itself (with scipy's linprog, so the tests also show that
scipy works inside the sandbox under its memory limit) and calls the candidate through
`call_candidate`. A candidate containing the marker SANDBOX-DIRECT is instead run inside the
evaluator process itself, to test what the worker does when the evaluator process misbehaves.
A candidate that returns {"values": [...], "report": {...}} gets its report back as the
artifact "report" (JSON): that is how spying candidates tell the tests what they could see,
since they cannot write anywhere the tests can read.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
from scipy.optimize import linprog

from evoengine import EvalResult, Problem
from evoengine.evaluation import CandidateError, call_candidate

problem = Problem(
    name="hostile",
    description="Return n numbers from solve(n); each counts up to 1.",
    initial="seed.py",
    timeout_s=3.0,
    memory_mb=512,
)

N = 3
DIRECT_MARK = "SANDBOX-" + "DIRECT"


def evaluate(candidate_path: str) -> EvalResult:
    if DIRECT_MARK in Path(candidate_path).read_text():
        values = runpy.run_path(candidate_path)["solve"](N)
    else:
        try:
            values = call_candidate(candidate_path, "solve", N, timeout_s=1.0)
        except CandidateError as exc:
            return EvalResult.invalid(str(exc))
    return score(values)


def score(values: object) -> EvalResult:
    report = None
    if isinstance(values, dict) and "report" in values:
        report, values = values["report"], values.get("values")
    try:
        v = np.asarray(values, dtype=float).reshape(N)
    except (TypeError, ValueError):
        return EvalResult.invalid(f"solve({N}) must return {N} numbers (got {values!r:.80})")
    caps = np.clip(np.nan_to_num(v), 0.0, 1.0)
    lp = linprog(-np.ones(N), bounds=[(0.0, c) for c in caps], method="highs")
    artifacts = {"report": json.dumps(report)} if report is not None else {}
    return EvalResult(score=float(-lp.fun), metrics={"lp_iterations": float(lp.nit)}, artifacts=artifacts)


score([1.0] * N)  # warm scipy's lazy imports here, once per worker, not once per candidate
