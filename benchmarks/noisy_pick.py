"""Finding or picking: on noisy_knapsack, how good are the programs a search finds, and how good
is the one its noisy score puts first?

    python benchmarks/noisy_pick.py --seeds 3 --budget 600 --json benchmarks/results-noisy-pick.json

For each seed, the default search and independent sampling (`selection.strategy=iid`) run
offline on noisy_knapsack. Every valid candidate carries its noise-free quality (the mean over
the whole instance pool, the artifact `pool_mean`). Reported per run: the pool mean of the
candidate the noisy score ranked first (what the run hands its user), the best pool mean among
all its candidates (what it found), and the share of candidates above `--above`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import evoengine

SETUPS = {"search": {}, "iid": {"selection__strategy": "iid"}}


def measure(run: evoengine.Run, above: float) -> dict[str, float]:
    scored = [c for c in run.candidates() if c.valid and c.score is not None and "pool_mean" in (c.artifacts or {})]
    true = {c.id: float(c.artifacts["pool_mean"]) for c in scored}
    picked = max(scored, key=lambda c: (c.score, -c.id))
    return {
        "candidates": len(scored),
        "picked_noisy": picked.score,
        "picked_true": true[picked.id],
        "found_true": max(true.values()),
        "share_above": sum(v > above for v in true.values()) / len(true),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument("--above", type=float, default=0.85)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name, overrides in SETUPS.items():
                t0 = time.monotonic()
                run = evoengine.run(
                    "noisy_knapsack", run_dir=Path(tmp) / f"{name}-{seed}", budget=args.budget, seed=seed, **overrides
                )
                row = {"setup": name, "seed": seed, **measure(run, args.above), "wall_s": time.monotonic() - t0}
                runs.append(row)
                print(json.dumps(row), flush=True)
    summary = {}
    for name in SETUPS:
        mine = [r for r in runs if r["setup"] == name]
        summary[name] = {k: statistics.fmean(r[k] for r in mine) for k in ("picked_true", "found_true", "share_above")}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": runs, "summary": summary})
        )


if __name__ == "__main__":
    main()
