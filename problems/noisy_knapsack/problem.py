"""Online knapsack scored on a random sample: a problem whose score is noisy.

Items arrive one at a time, each with a value and a weight; the candidate's `accept` decides
at once whether to take it, and a taken item must fit in what is left of the capacity. Each
instance is scored by the value taken over the best value any choice of its items could have
taken (0/1 knapsack by dynamic programming). The instances come from a fixed pool of 200, but
each evaluation scores the mean over 8 of them drawn afresh, so the same program scores
differently from one evaluation to the next: selecting on one score favours lucky draws.

The mean over the whole pool, the candidate's true quality, is computed too and kept in the
artifact `pool_mean`, which prompts never show; benchmarks use it to judge what a search
picked.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np

from evoengine.evaluation import CandidateError, call_candidate
from evoengine.problem import BEHAVIOUR, EvalResult, Feature, Problem

POOL_SEED, POOL_SIZE, ITEMS = 7, 200, 30
CAPACITY = 40
SAMPLE = 8  # instances per evaluation, drawn afresh each time
CALL_TIMEOUT_S = 10.0

DESCRIPTION = f"""\
Online knapsack: decide for each arriving item, at once and for good, whether to take it.

An instance is a sequence of {ITEMS} items, each with an integer weight from 1 to 10 and a
positive value; the knapsack holds a total weight of {CAPACITY}. Write
`accept(value, weight, room, items_left)`, returning True to take the offered item: `room`
is the capacity still free, `items_left` the number of items still to come. A taken item
must fit (weight <= room). An instance scores the value taken divided by the best value any
choice of its items could have had (so 1.0 is perfect). Each evaluation scores the mean over
{SAMPLE} instances drawn at random from a larger pool, so the score of one program varies
from one evaluation to the next: a higher score may be luck. `accept` must be
deterministic and fast.
"""

problem = Problem(
    name="noisy_knapsack",
    description=DESCRIPTION,
    initial="initial.py",
    language="python",
    kind="program",
    features=(
        # Over the whole pool: the share of offered items taken, and of the capacity filled.
        Feature("taken_share", 0.0, 0.5, 10),
        Feature("fill", 0.5, 1.0, 10),
    ),
    timeout_s=30.0,
    memory_mb=1024,
    # A child that would be the best is evaluated 3 times more, and the best it challenges once
    # more: at 1,000 evaluations the search hands back a better program with them than without
    # (30 seeds, benchmarks/README.md).
    rechecks=3,
)


@functools.cache
def pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values and weights (pool x items) of every instance, and each instance's best value."""
    rng = np.random.default_rng(POOL_SEED)
    weights = rng.integers(1, 11, size=(POOL_SIZE, ITEMS))
    values = np.round(weights * rng.lognormal(0.0, 0.5, size=(POOL_SIZE, ITEMS)), 3)
    best = np.array([knapsack_optimum(v, w, CAPACITY) for v, w in zip(values, weights, strict=True)])
    return values, weights, best


def knapsack_optimum(values: np.ndarray, weights: np.ndarray, capacity: int) -> float:
    """The best total value of items fitting in `capacity` (0/1 knapsack, integer weights)."""
    best = np.zeros(capacity + 1)
    for value, weight in zip(values, weights, strict=True):
        w = int(weight)
        best[w:] = np.maximum(best[w:], best[:-w] + value) if w <= capacity else best[w:]
    return float(best[-1])


def evaluate(candidate_path: str) -> EvalResult:
    """Run the candidate's policy on the whole pool in a child process; score a fresh random sample."""
    values, weights, _ = pool()
    instances = np.stack([values, weights], axis=-1).tolist()
    try:
        value = call_candidate(candidate_path, "run", instances, float(CAPACITY), timeout_s=CALL_TIMEOUT_S)
    except CandidateError as exc:
        return EvalResult.invalid(f"run() failed: {exc}")
    return score_decisions(value, np.random.default_rng())


def score_decisions(value: Any, rng: np.random.Generator) -> EvalResult:
    """Replay the decisions, score every instance, and report the mean over a sample drawn with `rng`."""
    values, weights, best = pool()
    try:
        taken = np.asarray(value, dtype=bool)
    except (TypeError, ValueError):
        taken = None
    if taken is None or taken.shape != values.shape:
        return EvalResult.invalid(f"run() must return {POOL_SIZE} lists of {ITEMS} decisions; got {str(value)[:200]}")
    load = np.cumsum(weights * taken, axis=1)
    over = np.argwhere(load > CAPACITY)
    if len(over):
        k, item = over[0]
        return EvalResult.invalid(
            f"instance {k}: item {item} (weight {weights[k, item]}) was taken with only "
            f"{CAPACITY - load[k, item] + weights[k, item]:g} room left; a taken item must fit"
        )
    ratio = (values * taken).sum(axis=1) / best
    sample = rng.choice(POOL_SIZE, size=SAMPLE, replace=False)
    score = float(ratio[sample].mean())
    worst = sample[np.argsort(ratio[sample])[:2]]
    lines = [f"Mean over {SAMPLE} random instances: {score:.4f} of the best possible value."]
    for k in worst:
        lines.append(
            f"An instance where it got {ratio[k]:.3f}: took {int(taken[k].sum())} of {ITEMS} items, "
            f"filling {int(load[k, -1])} of {CAPACITY}."
        )
    return EvalResult(
        score=score,
        valid=True,
        metrics={"sample_size": float(SAMPLE)},
        features={"taken_share": float(taken.mean()), "fill": float(load[:, -1].mean() / CAPACITY)},
        feedback="\n".join(lines),
        # Its decisions on the whole pool fingerprint what it does: programs that decide alike (a
        # threshold moved between two ratios no item has) are one program scored again and again.
        artifacts={
            "pool_mean": f"{ratio.mean():.6f}",
            BEHAVIOUR: hashlib.blake2b(np.packbits(taken).tobytes(), digest_size=16).hexdigest(),
        },
    )


pool()  # once per evaluation worker, at import: every sandbox forked from it finds the pool ready
