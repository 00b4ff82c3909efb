"""The bandits alone, where even the better model's children rarely beat their parent.

Arms improve a child with fixed chances (an improvement's reward is uniform in [0.5, 1], as
`improvement_reward` gives), 4 calls in flight (a reward arrives four picks after its call),
1,300 calls, 20 runs per bandit; reported: the share of the calls after the first 40 that went
to `good`. `capset` uses the rates the simulated models showed on cap_set with the models
(RESULTS-search-quality-models-1000-cap_set-eleventh.md: good 2%, the others near 0).

    python benchmarks/bandit_rare.py --json benchmarks/results-bandit-rare.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evoengine.config import Bandit  # noqa: E402
from evoengine.llm.bandit import make_bandit  # noqa: E402

RATES = {
    "capset": {"good": 0.02, "noisy": 0.003, "useless": 0.0, "broken": 0.001},
    "mid": {"good": 0.08, "noisy": 0.02, "useless": 0.0, "broken": 0.01},
    "frequent": {"good": 0.3, "noisy": 0.1, "useless": 0.0, "broken": 0.04},
}


def good_share(kind: str, rates: dict[str, float], seed: int, calls: int = 1300, in_flight: int = 4) -> float:
    bandit = make_bandit(Bandit(kind=kind), list(rates))
    rng, world = random.Random(seed), random.Random(seed + 999)
    waiting: deque[str] = deque()
    picks = []
    for _ in range(calls):
        if len(waiting) == in_flight:
            arm = waiting.popleft()
            bandit.observe(arm, 0.5 + 0.5 * world.random() if world.random() < rates[arm] else 0.0)
        waiting.append(bandit.select(rng))
        picks.append(waiting[-1])
    after = picks[40:]
    return after.count("good") / len(after)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = {}
    for name, rates in RATES.items():
        for kind in ("ucb1", "thompson"):
            shares = [good_share(kind, rates, seed) for seed in range(args.runs)]
            out[f"{name}/{kind}"] = {"mean": round(statistics.mean(shares), 3), "min": round(min(shares), 3)}
            print(
                f"{name:9s} {kind:9s} share to good {out[f'{name}/{kind}']['mean']:.2f} (lowest run {min(shares):.2f})"
            )
    if args.json:
        args.json.write_text(json.dumps({"rates": RATES, "runs": args.runs, "good_share": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
