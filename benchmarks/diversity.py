"""Islands plus MAP-Elites against a single population, on a deceptive problem.

problems/deceptive_ridge has a broad hill next to the seed and a higher, narrow peak reachable
only along a ridge that scores worse than the hill until its top. Each configuration runs the
same budget with the offline operators over several seeds; we record the best score of each.

    python benchmarks/diversity.py --budget 300 --seeds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from evoengine.config import load_config
from evoengine.engine import create

REPO = Path(__file__).resolve().parent.parent

SETUPS = {
    "islands + MAP-Elites": ["islands.count=4"],  # ring migration, grid elites, mixed selection
    "islands + MAP-Elites, elite parents 0.3": ["islands.count=4", "selection.elites=0.3", "selection.exploit=0.5"],
    "single population": [
        "islands.count=1",
        "elites.enabled=false",
        "selection.exploit=1.0",
        "selection.explore=0.0",
        "selection.elites=0.0",
        "selection.diverse_inspirations=0",
    ],
}


def run(overrides: list[str], seed: int, budget: int) -> float:
    config = load_config(None, [*overrides, f"seed={seed}", f"budget.candidates={budget}", "elites.builtin=[]"])
    with tempfile.TemporaryDirectory() as tmp:
        engine = create(REPO / "problems" / "deceptive_ridge", config, run_dir=Path(tmp) / "run")
        summary = asyncio.run(engine.run())
    return summary.best.score if summary.best else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    results = {}
    for name, overrides in SETUPS.items():
        t0 = time.monotonic()
        bests = [run(overrides, seed, args.budget) for seed in range(args.seeds)]
        results[name] = {
            "best_per_seed": [round(b, 4) for b in bests],
            "mean": round(statistics.mean(bests), 4),
            "found_peak": sum(b > 1.5 for b in bests),
            "seconds": round(time.monotonic() - t0, 1),
        }
    print(json.dumps({"budget": args.budget, "seeds": args.seeds, "results": results}, indent=2))


if __name__ == "__main__":
    main()
