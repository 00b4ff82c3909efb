"""Self-evolution with the offline operators: does the evolved harness beat the default one
on held-out seeds?

Runs `evoengine self-evolve` (the outer search evolves evoengine/harness/default.py's policy
block; each candidate harness is scored by inner searches on the suite with seeds 1..S),
then scores the best harness and the default one by inner searches on seeds the evolution
never saw, and prints both with the harness diff.

    python benchmarks/self_evolve.py --budget 20 --inner-budget 30 --seeds 2 --heldout 10

Held-out searches are paired (the same problem and seed for both harnesses); the result says
the mean difference with its 95% t-interval and is written to benchmarks/results-self-evolve.json
with the command that made it. The self-evolution run is made afresh each time unless
`--reuse` names an earlier run directory whose best harness to compare.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evoengine.problem import resolve_problem_path
from evoengine.selfevolve import DEFAULT_HARNESS, inner_search

HELD_OUT = 100  # held-out seeds are 100, 101, ...


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--inner-budget", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--heldout", type=int, default=10, help="held-out seeds per problem")
    ap.add_argument("--suite", default="circle_packing,deceptive_ridge")
    ap.add_argument("--reuse", type=Path, help="compare the best harness of this earlier run instead of evolving one")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results-self-evolve.json"))
    args = ap.parse_args()
    run_dir = args.reuse or Path(tempfile.mkdtemp()) / "self-evolve"
    t0 = time.monotonic()
    if args.reuse is None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "evoengine.cli",
                "self-evolve",
                "--budget",
                str(args.budget),
                "--inner-budget",
                str(args.inner_budget),
                "--seeds",
                str(args.seeds),
                "--suite",
                args.suite,
                "--run-dir",
                str(run_dir),
                "-q",
            ],
            check=True,
        )
    evolve_s = time.monotonic() - t0
    best = run_dir / "best" / "harness.py"
    problems = [str(resolve_problem_path(p.strip()).parent) for p in args.suite.split(",")]
    seeds = range(HELD_OUT, HELD_OUT + args.heldout)
    table = {}
    for name, harness in (("default", DEFAULT_HARNESS), ("evolved", best)):
        areas = {
            f"{Path(p).name}:{s}": inner_search(harness, p, s, args.inner_budget, [], proxy=False)
            for p in problems
            for s in seeds
        }
        table[name] = {
            "mean": round(statistics.mean(areas.values()), 4),
            "per_run": {k: round(v, 4) for k, v in areas.items()},
        }
    keys = list(table["default"]["per_run"])
    gains = [table["evolved"]["per_run"][k] - table["default"]["per_run"][k] for k in keys]
    wins = sum(g > 0 for g in gains)
    losses = sum(g < 0 for g in gains)
    mean = statistics.mean(gains)
    half = 0.0
    if len(gains) > 1:
        from scipy.stats import t

        half = t.ppf(0.975, len(gains) - 1) * statistics.stdev(gains) / len(gains) ** 0.5
    diff = "".join(
        difflib.unified_diff(
            DEFAULT_HARNESS.read_text().splitlines(True),
            best.read_text().splitlines(True),
            "default.py",
            "evolved.py",
            n=1,
        )
    )
    record = {
        "command": " ".join(["python", "benchmarks/self_evolve.py", *sys.argv[1:]]),
        "finished": time.strftime("%Y-%m-%d %H:%M"),
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "run_dir": str(run_dir),
        "evolve_s": round(evolve_s, 1) if args.reuse is None else None,
        "suite_seeds": args.seeds,
        "held_out_seeds": list(seeds),
        "inner_budget": args.inner_budget,
        "results": table,
        "paired_gain": {
            "mean": round(mean, 5),
            "ci95": [round(mean - half, 5), round(mean + half, 5)],
            "higher": wins,
            "lower": losses,
            "searches": len(gains),
        },
        "diff": diff,
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "diff"}, indent=2))
    print(diff)


if __name__ == "__main__":
    main()
