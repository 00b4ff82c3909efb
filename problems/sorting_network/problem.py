"""Sorting networks on 6 wires: a problem whose better programs need a different shape.

The candidate's `comparators(n)` returns a list of comparators (i, j); applied in order, each
puts the smaller of wires i and j on the lower-numbered wire. The evaluator checks the network
on all 2^6 inputs of zeros and ones (by the 0-1 principle, a network that sorts those sorts
everything) and scores the share sorted minus 0.001 per comparator: sorting everything
matters most, then using few comparators.

The seed is one bubble pass (a loop of 5 neighbouring comparators), which sorts few inputs.
Tuning its constants cannot make it sort: more passes, other strides and comparators
outside the loop can. Statement edits (a loop or a comparator duplicated, moved or deleted)
change the network's shape; constant edits change which wires a loop touches.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from evoengine.evaluation import CandidateError, call_candidate
from evoengine.problem import EvalResult, Feature, Problem

WIRES = 6
MAX_COMPARATORS = 100
COMPARATOR_COST = 0.001
CALL_TIMEOUT_S = 10.0

DESCRIPTION = f"""\
Design a sorting network on {WIRES} wires: correct first, then as small as possible.

Write `comparators(n)` (it is called with n = {WIRES}). It returns a list of comparators, pairs
(i, j) of distinct wire numbers in 0..n-1; applied in order, each compares the values on
wires i and j and puts the smaller on the lower-numbered wire. The network must sort every
input. It is checked on all {2**WIRES} inputs of zeros and ones (a network that sorts those
sorts any input). Score: the share of those inputs it sorts, minus {COMPARATOR_COST} per
comparator; at most {MAX_COMPARATORS} comparators. The feedback names an input it fails on.
"""

problem = Problem(
    name="sorting_network",
    description=DESCRIPTION,
    initial="initial.py",
    language="python",
    kind="program",
    features=(
        Feature("comparators", 0.0, 40.0, 20),
        # Layers when comparators on disjoint wires run in parallel.
        Feature("depth", 0.0, 20.0, 10),
    ),
    timeout_s=30.0,
    memory_mb=1024,
)


@functools.cache
def binary_inputs(n: int = WIRES) -> np.ndarray:
    """All 2^n inputs of zeros and ones, one per row."""
    return np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.int8)


def evaluate(candidate_path: str) -> EvalResult:
    """Get the network from a child process and check it here."""
    try:
        value = call_candidate(candidate_path, "comparators", WIRES, timeout_s=CALL_TIMEOUT_S)
    except CandidateError as exc:
        return EvalResult.invalid(f"comparators() failed: {exc}")
    return score_network(value)


def parse_network(value: Any) -> list[tuple[int, int]]:
    """The comparators as (low, high) wire pairs; ValueError says what is wrong."""
    if not isinstance(value, list):
        raise ValueError(f"comparators() must return a list of (i, j) pairs; got {type(value).__name__}")
    if len(value) > MAX_COMPARATORS:
        raise ValueError(f"comparators() returned {len(value)} comparators; at most {MAX_COMPARATORS} are allowed")
    pairs = []
    for k, pair in enumerate(value):
        ok = isinstance(pair, list) and len(pair) == 2
        if not ok or not all(isinstance(w, int) and not isinstance(w, bool) for w in pair):
            raise ValueError(f"comparator {k} is {pair!r:.60}; each must be a pair of wire numbers (i, j)")
        i, j = pair
        if not (0 <= i < WIRES and 0 <= j < WIRES) or i == j:
            raise ValueError(f"comparator {k} is ({i}, {j}); wires are 0..{WIRES - 1} and a comparator needs two")
        pairs.append((min(i, j), max(i, j)))
    return pairs


def apply_network(pairs: list[tuple[int, int]], inputs: np.ndarray) -> np.ndarray:
    """Every input row after the network has run on it."""
    out = inputs.copy()
    for i, j in pairs:
        low, high = np.minimum(out[:, i], out[:, j]), np.maximum(out[:, i], out[:, j])
        out[:, i], out[:, j] = low, high
    return out


def depth(pairs: list[tuple[int, int]]) -> int:
    """Parallel layers: each comparator runs one step after the last one on either of its wires."""
    ready = [0] * WIRES
    for i, j in pairs:
        ready[i] = ready[j] = max(ready[i], ready[j]) + 1
    return max(ready, default=0)


def score_network(value: Any) -> EvalResult:
    """Check the network on every 0-1 input and score it."""
    try:
        pairs = parse_network(value)
    except ValueError as exc:
        return EvalResult.invalid(str(exc))
    inputs = binary_inputs()
    out = apply_network(pairs, inputs)
    unsorted = np.flatnonzero((np.diff(out, axis=1) < 0).any(axis=1))
    share = 1.0 - len(unsorted) / len(inputs)
    layers = depth(pairs)
    score = share - COMPARATOR_COST * len(pairs)
    lines = [
        f"{len(pairs)} comparators in {layers} parallel layers; sorts {len(inputs) - len(unsorted)} "
        f"of the {len(inputs)} zero-one inputs."
    ]
    if len(unsorted):
        k = unsorted[0]
        lines.append(f"It fails on input {inputs[k].tolist()}: the output is {out[k].tolist()}.")
    else:
        lines.append("It sorts every input; fewer comparators score higher.")
    return EvalResult(
        score=score,
        valid=True,
        metrics={"sorted_share": share, "comparators": float(len(pairs)), "depth": float(layers)},
        features={"comparators": float(min(len(pairs), 40)), "depth": float(min(layers, 20))},
        feedback="\n".join(lines),
    )
