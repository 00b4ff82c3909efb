"""Isolated, cheap, killable evaluation of untrusted candidates.

- `EvaluatorPool` (pool.py): warm worker processes; `await pool.evaluate(text)` -> EvalResult.
- `worker.py`: the worker; forks one sandboxed evaluator per candidate.
- `sandbox.py`: `Limits` and the kernel mechanisms that enforce them (`Isolation`).
- `processes.py`: waiting with deadlines, killing whole process trees, explaining deaths.
- `call.py`: `call_candidate`, for problem evaluators to run candidate functions in a
  further child so candidate code never runs inside the evaluator.
"""

from __future__ import annotations

from .call import CandidateError, call_candidate
from .pool import EvaluatorPool, PoolStats
from .sandbox import Isolation, Limits

__all__ = ["CandidateError", "EvaluatorPool", "Isolation", "Limits", "PoolStats", "call_candidate"]
