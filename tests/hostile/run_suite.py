"""Evaluates candidates with a real EvaluatorPool and prints what became of each, as JSON.

tests/test_sandbox.py imports `leftovers` from here, and runs this file as a normal user
(through as_user.py) to repeat the hostile suite there:

    python run_suite.py SPEC.json

SPEC: {"problem": path, "limits": {Limits fields}, "cases": {name: candidate text}}. Prints
{"isolation": str, "missing": [str], "results": {name: {"result": {...}, "leftovers": [str]}}}.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from evoengine.evaluation import EvaluatorPool, Limits
from evoengine.evaluation.processes import descendants, proc_pid, process_table
from evoengine.evaluation.sandbox import sandbox_uid


def leftovers(pool: EvaluatorPool) -> list[str]:
    """Processes still alive below the pool's workers (beyond their own namespace init), or
    owned by the pool's sandbox uids."""
    table = process_table()
    found = []
    for worker in map(proc_pid, pool.worker_pids()):
        assert worker is not None
        for proc in descendants(worker, table):
            if proc.ppid == worker and "PID namespace" in pool.isolation:
                continue  # the namespace's init, which is the worker loop itself
            found.append(f"pid {proc.pid} ({proc.state}) under worker {worker}")
    uids = {sandbox_uid(slot, os.getpid()) for slot in range(pool.slots)}
    for pid in table:
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if uid in uids:
            found.append(f"pid {pid} runs as sandbox uid {uid}")
    return found


async def run(spec: dict) -> dict:
    limits = Limits(**spec["limits"])
    async with EvaluatorPool(Path(spec["problem"]), 2, limits) as pool:
        results = {}
        for name, text in spec["cases"].items():
            result = await pool.evaluate(text, label=name)
            results[name] = {"result": result.to_dict(), "leftovers": leftovers(pool)}
        return {"isolation": pool.isolation, "missing": pool.missing, "uid": os.getuid(), "results": results}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(Path(sys.argv[1]).read_text())))))
