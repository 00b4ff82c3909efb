"""Evaluation throughput (candidates per second) of the local pool and the `ray` backend.

    python benchmarks/ray_throughput.py                         # the recorded matrix
    python benchmarks/ray_throughput.py --cheap 200 --slow 24   # quicker
    python benchmarks/ray_throughput.py --append benchmarks/RESULTS-ray.md

Two generated problems: "cheap", whose evaluate() spends ~10 ms of CPU, and "slow", whose
evaluate() sleeps 0.5 s (an evaluation that waits, like a simulator or a remote call).
Each backend evaluates distinct candidates with `slots` evaluations in flight, after a
warm-up of 3 x slots candidates (excluded: it pays for worker start-up, which Ray does
lazily). The ray backend runs on a private local Ray (ray.address unset) with
ray.num_cpus = cores / slots per task, so both backends get the same machine. "Overhead" is the time per candidate and slot beyond the
evaluation itself: slots / throughput - evaluation time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoengine.config import Ray  # noqa: E402
from evoengine.evaluation import EvaluatorPool, Limits  # noqa: E402
from evoengine.evaluation.ray_backend import RayPool  # noqa: E402

WORKLOADS = {
    "cheap": (
        "spin 10 ms of CPU",
        0.010,
        "    stop = time.process_time() + 0.010\n    while time.process_time() < stop:\n        pass\n",
    ),
    "slow": ("sleep 0.5 s", 0.5, "    time.sleep(0.5)\n"),
}

PROBLEM = '''"""Benchmark problem: {what}."""

import time
from pathlib import Path

from evoengine import EvalResult, Problem

problem = Problem(name="bench_{name}", description="benchmark", initial="initial.py",
                  timeout_s=30, memory_mb=1024)


def evaluate(path: str) -> EvalResult:
{work}    return EvalResult(score=float(len(Path(path).read_text())))
'''


def make_problem(root: Path, name: str) -> Path:
    what, _, work = WORKLOADS[name]
    folder = root / name
    folder.mkdir()
    (folder / "problem.py").write_text(PROBLEM.format(what=what, name=name, work=work))
    (folder / "initial.py").write_text("# EVOLVE-BLOCK-START\nX = 0\n# EVOLVE-BLOCK-END\n")
    return folder / "problem.py"


async def measure(pool, count: int, slots: int) -> tuple[float, float]:
    """(start-up seconds, candidates per second) for `count` distinct candidates."""
    t0 = time.perf_counter()
    await pool.start()
    startup = time.perf_counter() - t0
    try:
        # warm-up: Ray starts its worker processes (each with a warm evaluation worker) lazily
        await asyncio.gather(*(pool.evaluate(f"X = {-i}\n") for i in range(1, 3 * slots + 1)))
        t0 = time.perf_counter()
        results = await asyncio.gather(*(pool.evaluate(f"X = {i}\n", label=f"c{i}") for i in range(count)))
        elapsed = time.perf_counter() - t0
    finally:
        await pool.close()
    bad = [r.feedback for r in results if not r.valid]
    if bad:
        raise SystemExit(f"benchmark evaluations failed: {bad[0]}")
    return startup, count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cheap", type=int, default=400, help="candidates for the cheap problem")
    parser.add_argument("--slow", type=int, default=40, help="candidates for the slow problem")
    parser.add_argument("--append", type=Path, help="append the markdown table to this file")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cores = os.cpu_count() or 1
    plan = [("cheap", 2, args.cheap), ("slow", 2, args.slow), ("slow", 8, args.slow * 4)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        problems = {name: make_problem(Path(tmp), name) for name in WORKLOADS}
        for name, slots, count in plan:
            limits = Limits(timeout_s=30, memory_mb=1024)
            per_task = Ray(num_cpus=cores / slots)
            for backend, pool in (
                ("local", EvaluatorPool(problems[name], slots, limits)),
                ("ray", RayPool(problems[name], slots, limits, per_task)),
            ):
                startup, rate = asyncio.run(measure(pool, count, slots))
                eval_s = WORKLOADS[name][1]
                overhead_ms = (slots / rate - eval_s) * 1000
                row = (
                    f"| {name} ({WORKLOADS[name][0]}) | {backend} | {slots} | {count} | "
                    f"{rate:.1f} | {slots / eval_s:.1f} | {overhead_ms:.1f} | {startup:.1f} |"
                )
                print(row, flush=True)
                rows.append(row)
    header = [
        "| workload | backend | slots | candidates | candidates/s | ideal/s | overhead ms | start-up s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    machine = f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"
    try:
        import ray

        machine += f", Ray {ray.__version__}"
    except ImportError:
        pass
    table = "\n".join([f"Machine: {machine}.", "", *header, *rows, ""])
    if args.append:
        with args.append.open("a") as f:
            f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
