"""How long evaluation workers outlive a SIGKILLed engine.

Starts `evoengine run tests/problems/quadratic` again and again, SIGKILLs the engine process
alone (not its process group: workers run in sessions of their own, as after a kill -9 of
the engine's pid) at a random moment from 0 to `--latest` s after its first worker process
appeared (while workers import and boot, and mid-run), then polls /proc every millisecond
until no process started for that engine is left (workers, bubblewrap, namespace inits,
evaluators, candidates: all keep the worker's command line, which names the engine's pid).
Prints one JSON object: the latencies in ms, with their median, 95th percentile and maximum.

    python benchmarks/engine_kill.py --kills 40
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def started_for(engine: int) -> list[int]:
    """Processes whose command line names `engine` after --parent (the pool's workers and
    everything forked from them)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--parent" in words and words[words.index(b"--parent") + 1 :][:1] == [str(engine).encode()]:
            found.append(int(entry.name))
    return found


def one_kill(rng: random.Random, latest: float, folder: Path) -> dict:
    run_dir = folder / f"run-{time.monotonic_ns()}"
    engine = subprocess.Popen(
        [sys.executable, "-m", "evoengine.cli", "run", str(REPO / "tests/problems/quadratic"), "--budget", "100000"]
        + ["--run-dir", str(run_dir), "-q"],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not started_for(engine.pid) and engine.poll() is None:
        time.sleep(0.005)
    at = rng.uniform(0.0, latest)
    time.sleep(at)
    workers = len(started_for(engine.pid))
    os.kill(engine.pid, signal.SIGKILL)
    killed = time.monotonic()
    engine.wait()
    while started_for(engine.pid) and time.monotonic() < killed + 30:
        time.sleep(0.001)
    latency = time.monotonic() - killed
    left = started_for(engine.pid)
    for pid in left:  # never leave anything behind, even when measuring a failure
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"after_s": round(at, 3), "processes": workers, "gone_ms": round(latency * 1000, 1), "left": len(left)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=40)
    ap.add_argument("--latest", type=float, default=3.0, help="latest kill, seconds after the first worker appeared")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="evoengine-kill-"))
    try:
        kills = [one_kill(rng, args.latest, folder) for _ in range(args.kills)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    gone = sorted(k["gone_ms"] for k in kills)
    print(
        json.dumps(
            {
                "kills": len(kills),
                "processes_at_kill": [min(k["processes"] for k in kills), max(k["processes"] for k in kills)],
                "median_ms": statistics.median(gone),
                "p95_ms": gone[max(0, round(0.95 * len(gone)) - 1)],
                "max_ms": gone[-1],
                "over_100_ms": sum(g > 100 for g in gone),
                "left_after_30_s": sum(k["left"] for k in kills),
                "each": kills,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
