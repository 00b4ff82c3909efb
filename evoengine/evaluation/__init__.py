"""Isolated, cheap, killable evaluation of untrusted candidates.

- `EvaluatorPool` (pool.py): warm worker processes; `await pool.evaluate(text)` -> EvalResult.
- `protocol.py`: starting, talking to and stopping those helper processes (and the Ray driver).
- `worker.py`: the worker; forks one sandboxed evaluator per candidate.
- `sandbox.py`: `Limits` and the kernel mechanisms that enforce them (`Isolation`).
- `namespaces.py`, `view.py`, `mounts.py`, `seccomp.py`: the worker's namespaces, what an
  evaluation can see (files, environment) and how that is mounted, the network filter.
- `processes.py`: running a child with a deadline, killing whole process trees, explaining deaths.
- `ray_backend.py` (`RayPool`), `ray_driver.py`, `ray_node.py`: the Ray backend, a module
  per process.
- `call.py`: `call_candidate`, for problem evaluators to run candidate functions in a
  further child so candidate code never runs inside the evaluator.
- `models.py`: the models a problem's evaluator asks, through the engine's proxy
  (`models.chat`, `model_client()`), the key out of the sandbox's reach.
"""

from __future__ import annotations

from ..lazy import lazy_names

# Loaded on first use: a problem file imports `call_candidate` from here inside the worker,
# which must not pay for the pool's modules (its boot is on the path to a run's first evaluation).
_WHERE = {
    "CandidateError": "call",
    "call_candidate": "call",
    "EvaluatorModelError": "models",
    "model_client": "models",
    "EvaluatorPool": "pool",
    "PoolStats": "pool",
    "Isolation": "sandbox",
    "Limits": "sandbox",
}

__all__ = sorted(_WHERE)


__getattr__ = lazy_names(__name__, _WHERE)
