"""Cap sets in F_3^5, built greedily in the order of an evolved priority (FunSearch's setting).

A cap set is a set of vectors of F_3^n with no three on a line, i.e. no three distinct
a, b, c with a + b + c = 0 (mod 3). The candidate writes `priority(el, n)`; its frozen
`priorities` runs in a child process and returns the priority of every vector. This
evaluator then builds the cap itself: it tries the vectors from the highest priority down
(ties in lexicographic order) and keeps each one that completes no line with two already
kept. The score is the size of that cap, so only the order the priority induces matters.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from evoengine.evaluation import CandidateError, call_candidate
from evoengine.problem import EvalResult, Feature, Problem

N = 5
CALL_TIMEOUT_S = 10.0

DESCRIPTION = f"""\
Find a large cap set in F_3^{N}, built greedily in the order your priority function gives.

A cap set is a set of vectors of length {N} with entries in {{0, 1, 2}} in which no three
distinct vectors a, b, c satisfy a + b + c = 0 (mod 3) in every coordinate (no three lie
on a line). Write `priority(el, n)`: `el` is one vector (a tuple of n = {N} ints in {{0, 1, 2}}), and
the return value is a float. The evaluator tries every one of the {3**N} vectors, highest
priority first (ties in lexicographic order), and keeps a vector whenever it does not
complete a line with two vectors already kept. Score: the number of vectors kept. A
constant priority keeps the {2**N} vectors with entries in {{0, 1}}. `priority` must be
deterministic, return a finite number, and is called once per vector.
"""

problem = Problem(
    name="cap_set",
    description=DESCRIPTION,
    initial="initial.py",
    language="python",
    kind="program",
    features=(
        # Mean share of non-zero entries in the kept vectors.
        Feature("nonzero_share", 0.0, 1.0, 10),
        # Of the non-zero entries of the kept vectors, the share that are 2.
        Feature("twos_share", 0.0, 1.0, 10),
    ),
    timeout_s=30.0,
    memory_mb=1024,
)


@functools.cache
def vectors(n: int = N) -> np.ndarray:
    """Every vector of F_3^n, in lexicographic order (row k is the base-3 digits of k)."""
    return np.array(list(itertools.product(range(3), repeat=n)), dtype=np.int64)


def evaluate(candidate_path: str) -> EvalResult:
    """Get the candidate's priorities from a child process, then build and score the cap here."""
    try:
        value = call_candidate(candidate_path, "priorities", N, timeout_s=CALL_TIMEOUT_S)
    except CandidateError as exc:
        return EvalResult.invalid(f"priorities() failed: {exc}")
    return score_priorities(value)


def greedy_cap(order: np.ndarray, n: int = N) -> list[int]:
    """The cap kept by trying vectors (indexes into `vectors(n)`) in `order`."""
    vecs = vectors(n)
    index_of = 3 ** np.arange(n)[::-1]
    blocked = np.zeros(len(vecs), dtype=bool)  # vectors that would complete a line
    kept: list[int] = []
    for k in order:
        if blocked[k]:
            continue
        if kept:
            third = (-(vecs[kept] + vecs[k])) % 3
            blocked[third @ index_of] = True
        kept.append(int(k))
        blocked[k] = True
    return kept


def is_cap(rows: np.ndarray) -> bool:
    """No three distinct rows sum to 0 mod 3 (checked pairwise: the third is determined)."""
    seen = {tuple(r) for r in rows.tolist()}
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            third = tuple(((-(rows[i] + rows[j])) % 3).tolist())
            if third in seen and third != tuple(rows[i].tolist()):
                return False
    return True


def score_priorities(value: Any) -> EvalResult:
    """Check the priorities, build the greedy cap and score its size."""
    vecs = vectors()
    try:
        pri = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        pri = None
    if pri is None or pri.shape != (len(vecs),):
        return EvalResult.invalid(
            f"priorities() must return one float per vector ({len(vecs)}); got {str(value)[:200]}"
        )
    bad = np.flatnonzero(~np.isfinite(pri))
    if len(bad):
        return EvalResult.invalid(f"priority{tuple(vecs[bad[0]].tolist())} is {pri[bad[0]]}; priorities must be finite")
    order = np.argsort(-pri, kind="stable")
    kept = greedy_cap(order)
    rows = vecs[kept]
    if not is_cap(rows):  # the construction guarantees it; this guards the evaluator itself
        raise RuntimeError("the greedy construction produced a set with a line")
    nonzero = rows != 0
    nonzero_share = float(nonzero.mean())
    twos_share = float((rows == 2).sum() / max(1, nonzero.sum()))
    by_weight = np.bincount(nonzero.sum(axis=1), minlength=N + 1)
    distinct = len(np.unique(pri))
    kept_set = set(kept)
    first_refused = next((k for k in order if k not in kept_set), None)
    lines = [
        f"The greedy construction kept {len(kept)} vectors.",
        "Kept vectors by number of non-zero entries: " + ", ".join(f"{w}: {int(c)}" for w, c in enumerate(by_weight)),
        f"Your priority takes {distinct} distinct values over the {len(vecs)} vectors "
        "(ties are tried in lexicographic order).",
    ]
    if first_refused is not None:
        lines.append(
            f"The highest-priority vector refused was {tuple(vecs[first_refused].tolist())}: "
            "it completed a line with two vectors kept before it."
        )
    return EvalResult(
        score=float(len(kept)),
        valid=True,
        metrics={"cap_size": float(len(kept)), "distinct_priorities": float(distinct)},
        features={"nonzero_share": nonzero_share, "twos_share": twos_share},
        feedback="\n".join(lines),
    )
