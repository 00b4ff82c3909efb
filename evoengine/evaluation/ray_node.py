"""The Ray task: `evaluate_on_node` runs in a Ray worker process, on any node of the cluster,
with the warm one-slot `EvaluatorPool` that process keeps between tasks (see ray_backend.py).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import socket
from pathlib import Path
from typing import Any

from .pool import EvaluatorPool
from .sandbox import Limits

# The warm one-slot pool of this Ray worker process: "key", "pool", "loop" (empty elsewhere).
_warm: dict[str, Any] = {}


def evaluate_on_node(
    problem_file: str, limits_json: str, text: str | None, label: str, entry: str = "evaluate"
) -> dict[str, Any]:
    """Evaluate `text` (`None`: only warm the pool up). The problem folder is the worker's
    current directory (the job's working_dir, shipped by Ray)."""
    node = _node_ip()
    # A reused Ray worker may be handed other GPUs than last time: a warm evaluation worker
    # started with another CUDA_VISIBLE_DEVICES must not serve this task.
    key = (problem_file, limits_json, os.environ.get("CUDA_VISIBLE_DEVICES"))
    fresh = _warm.get("key") != key
    if fresh:
        _close_warm()
        loop = asyncio.new_event_loop()
        pool = EvaluatorPool(Path(problem_file).resolve(), 1, Limits.from_json(limits_json))
        try:
            loop.run_until_complete(pool.start())
        except Exception as exc:  # the problem does not import on this node
            loop.run_until_complete(pool.close())
            loop.close()
            return {"failed": "setup", "node": node, "message": str(exc)}
        _warm.update(key=key, pool=pool, loop=loop)
    pool, loop = _warm["pool"], _warm["loop"]
    if text is None:
        return {"ready": True, "node": node, "isolation": pool.isolation, "missing": pool.missing}
    before = (pool.stats.wall_s, pool.stats.cpu_s, pool.stats.worker_restarts)
    result = loop.run_until_complete(pool.evaluate(text, label=label, entry=entry))
    return {
        "result": result.to_dict(),
        "node": node,
        "pid": os.getpid(),
        "wall_s": pool.stats.wall_s - before[0],
        "cpu_s": pool.stats.cpu_s - before[1],
        "restarts": pool.stats.worker_restarts - before[2] + int(fresh),
    }


def _node_ip() -> str:
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:
        return socket.gethostname()


def _close_warm() -> None:
    if _warm:
        with contextlib.suppress(Exception):
            _warm["loop"].run_until_complete(_warm["pool"].close())
            _warm["loop"].close()
    _warm.clear()


atexit.register(_close_warm)
