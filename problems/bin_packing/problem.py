"""Online bin packing (FunSearch's setting): evolve the `priority` rule that picks a bin.

Items arrive one at a time and must be placed at once. The candidate's frozen `pack` loop
runs in a child process and returns the bin of every item; this evaluator replays that
assignment (every item placed once, no bin over capacity, a new bin opened only when no open
bin had room) and computes the score itself, so the candidate cannot report its own score.

Instances are Weibull(shape 3, scale 45) item sizes, rounded to integers in [1, 100], bin
capacity 100, from fixed seeds: the same instances for every candidate. The score uses the
training instances; held-out instances are reported as metrics only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from evoengine.evaluation import CandidateError, call_candidate
from evoengine.problem import EvalResult, Feature, Problem

CAPACITY = 100
TRAIN_SEEDS = (0, 1, 2, 3)
TRAIN_ITEMS = 2000
HELDOUT_SEEDS = (100, 101, 102)
HELDOUT_ITEMS = 5000
CALL_TIMEOUT_S = 20.0

# Mean excess (%) of bins over the L1 lower bound on these exact instances, from
# `reference_excess` (tests/test_problems.py recomputes them).
REFERENCE = {
    "first_fit_train_excess_pct": 4.700131718175428,
    "best_fit_train_excess_pct": 4.2953206691838455,
    "first_fit_heldout_excess_pct": 4.284310854889366,
    "best_fit_heldout_excess_pct": 3.9203355207489214,
}

DESCRIPTION = f"""\
Online bin packing: write the rule that chooses a bin for each arriving item.

Items arrive one at a time and each must be placed immediately, without
knowing the items still to come, into a bin of capacity {CAPACITY}. Item sizes are integers
from 1 to {CAPACITY}, drawn from a Weibull distribution (nine in ten are between 17 and 65).
Goal: use as few bins as possible.

Write `priority(item, bins)`. `item` is the size of the arriving item (a float); `bins` is a
numpy array with the remaining capacity of every open bin that has room for it, oldest bin
first. Return a numpy array with one score per bin; the item goes into the bin with the
highest score. A new bin is opened only when no open bin has room, so `priority` is never
asked about empty bins. The packing loop that calls `priority` is fixed and cannot be changed.

Score: minus the average percentage of bins used above the lower bound ceil(total size /
capacity) on fixed training instances of {TRAIN_ITEMS} items; higher (closer to 0) is better.
First Fit (the oldest bin that fits) and Best Fit (the bin left fullest) are the classic
baselines. Rules that score well avoid leaving awkward gaps that no future item can fill.
`priority` must be deterministic and fast: it is called once per item, tens of thousands of
times per evaluation, and everything must finish within {CALL_TIMEOUT_S:.0f} seconds.
"""

problem = Problem(
    name="bin_packing",
    description=DESCRIPTION,
    initial="initial.py",
    language="python",
    kind="program",
    features=(
        # Of the placements where several open bins had room: the share that went to the
        # fullest of them (Best Fit's choice), and the share that went to the oldest (First Fit's).
        Feature("best_fit_agreement", 0.0, 1.0, 10),
        Feature("first_fit_agreement", 0.0, 1.0, 10),
    ),
    timeout_s=45.0,
    memory_mb=1024,
)


@dataclass(frozen=True)
class Replay:
    """What replaying one assignment found: bins used and how the choices were made."""

    bins: int
    lower_bound: int
    choices: int  # placements where two or more open bins had room
    best_fit_choices: int  # ... of which went to the fullest such bin
    first_fit_choices: int  # ... of which went to the oldest such bin
    wasted: float  # total free space left in the bins

    @property
    def excess_pct(self) -> float:
        return 100.0 * (self.bins - self.lower_bound) / self.lower_bound


def evaluate(candidate_path: str) -> EvalResult:
    """Pack every instance with the candidate's `pack` in a child process, then score it here."""
    train, heldout = instances()
    try:
        value = call_candidate(
            candidate_path,
            "pack",
            [list(map(float, x)) for x in train + heldout],
            float(CAPACITY),
            timeout_s=CALL_TIMEOUT_S,
        )
    except CandidateError as exc:
        return EvalResult.invalid(f"pack() failed: {exc}")
    return score_assignments(value, train, heldout)


def score_assignments(value: Any, train: list[list[int]], heldout: list[list[int]]) -> EvalResult:
    """Check the returned assignments against the instances and score the training ones."""
    every = train + heldout
    if not isinstance(value, list) or len(value) != len(every):
        got = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
        return EvalResult.invalid(f"pack() must return one assignment per instance ({len(every)}); got {got}")
    replays = []
    for k, (items, assignment) in enumerate(zip(every, value, strict=True)):
        name = f"training instance {k}" if k < len(train) else f"held-out instance {k - len(train)}"
        try:
            replays.append(replay(items, assignment, CAPACITY, count_choices=k < len(train)))
        except ValueError as exc:
            return EvalResult.invalid(f"{name}: {exc}")
    train_r, held_r = replays[: len(train)], replays[len(train) :]
    train_excess = float(np.mean([r.excess_pct for r in train_r]))
    held_excess = float(np.mean([r.excess_pct for r in held_r])) if held_r else 0.0
    choices = sum(r.choices for r in train_r)
    bf = sum(r.best_fit_choices for r in train_r) / choices if choices else 0.0
    ff = sum(r.first_fit_choices for r in train_r) / choices if choices else 0.0
    bins = sum(r.bins for r in train_r)
    metrics = {
        "train_excess_pct": train_excess,
        "heldout_excess_pct": held_excess,
        "train_bins": float(bins),
        "train_lower_bound": float(sum(r.lower_bound for r in train_r)),
        "mean_free_space_per_bin": sum(r.wasted for r in train_r) / bins,
        **REFERENCE,
    }
    per_instance = ", ".join(f"{r.excess_pct:.2f}%" for r in train_r)
    feedback = (
        f"Training instances ({len(train)} x {len(train[0])} items): {train_excess:.3f}% more bins "
        f"than the lower bound on average ({per_instance}); First Fit gets "
        f"{REFERENCE['first_fit_train_excess_pct']:.3f}%, Best Fit "
        f"{REFERENCE['best_fit_train_excess_pct']:.3f}%.\n"
        f"Bins end with {metrics['mean_free_space_per_bin']:.2f} units of free space on average.\n"
        f"Where several bins had room, {100 * bf:.1f}% of items went to the fullest bin (Best Fit's "
        f"choice) and {100 * ff:.1f}% to the oldest (First Fit's choice)."
    )
    return EvalResult(
        score=-train_excess,
        valid=True,
        metrics=metrics,
        features={"best_fit_agreement": bf, "first_fit_agreement": ff},
        feedback=feedback,
        instances={f"train_{k}": -r.excess_pct for k, r in enumerate(train_r)},
    )


def replay(items: list[int], assignment: Any, capacity: float, *, count_choices: bool = True) -> Replay:
    """Re-run an assignment as an online packing; ValueError says what rule it breaks.

    `count_choices` also records, for the features, how each choice between several bins
    that had room was made (slower: it looks at every open bin for every item).
    """
    if not isinstance(assignment, list) or len(assignment) != len(items):
        got = f"{len(assignment)} entries" if isinstance(assignment, list) else type(assignment).__name__
        raise ValueError(f"expected a bin index for each of the {len(items)} items, got {got}")
    remaining = np.empty(len(items), dtype=float)
    n_open = choices = best = first = 0
    for k, (item, b) in enumerate(zip(items, assignment, strict=True)):
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= n_open:
            raise ValueError(
                f"item {k} was put in bin {b!r}; bins are numbered 0, 1, ... in the order they open "
                f"(only {n_open} were open)"
            )
        if b == n_open:
            if n_open and remaining[:n_open].max() >= item:
                had_room = int(np.flatnonzero(remaining[:n_open] >= item)[0])
                raise ValueError(f"item {k} (size {item}) opened a new bin although bin {had_room} had room")
            remaining[n_open] = capacity - item
            n_open += 1
            continue
        if remaining[b] < item:
            raise ValueError(
                f"item {k} (size {item}) does not fit in bin {b} ({remaining[b]:g} free): "
                "the bin would exceed its capacity"
            )
        if count_choices:
            fits = np.flatnonzero(remaining[:n_open] >= item)
            if len(fits) > 1:
                choices += 1
                best += remaining[b] == remaining[fits].min()
                first += b == fits[0]
        remaining[b] -= item
    lower = -(-int(sum(items)) // int(capacity))
    return Replay(n_open, lower, choices, int(best), int(first), float(remaining[:n_open].sum()))


def weibull_items(seed: int, n: int) -> list[int]:
    """One instance: n integer sizes, Weibull(shape 3, scale 45) rounded and clipped to [1, 100]."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.weibull(3.0, n) * 45.0), 1, CAPACITY).astype(int).tolist()


@functools.cache
def _instances() -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    train = tuple(tuple(weibull_items(s, TRAIN_ITEMS)) for s in TRAIN_SEEDS)
    heldout = tuple(tuple(weibull_items(s, HELDOUT_ITEMS)) for s in HELDOUT_SEEDS)
    return train, heldout


def instances() -> tuple[list[list[int]], list[list[int]]]:
    """The (training, held-out) instances every candidate is scored on."""
    train, heldout = _instances()
    return [list(x) for x in train], [list(x) for x in heldout]


def pack_with_rule(items: list[int], capacity: float, rule: str) -> list[int]:
    """Trusted reference packer: "first_fit" or "best_fit", same online loop as the seed."""
    remaining = np.empty(len(items), dtype=float)
    n_open = 0
    assignment = []
    for item in items:
        fits = np.flatnonzero(remaining[:n_open] >= item)
        if len(fits) == 0:
            b = n_open
            remaining[b] = capacity
            n_open += 1
        elif rule == "first_fit":
            b = int(fits[0])
        elif rule == "best_fit":
            b = int(fits[np.argmin(remaining[fits])])
        else:
            raise ValueError(f"unknown rule {rule!r}")
        remaining[b] -= item
        assignment.append(b)
    return assignment


def reference_excess() -> dict[str, float]:
    """First Fit and Best Fit mean excess (%) on the training and held-out instances."""
    train, heldout = instances()
    out = {}
    for rule in ("first_fit", "best_fit"):
        for split, insts in (("train", train), ("heldout", heldout)):
            pcts = [
                replay(x, pack_with_rule(x, CAPACITY, rule), CAPACITY, count_choices=False).excess_pct for x in insts
            ]
            out[f"{rule}_{split}_excess_pct"] = float(np.mean(pcts))
    return out
