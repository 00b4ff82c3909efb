"""Rechecks, for noisy evaluators: a candidate whose score would make it the run's best is
evaluated again before it is believed, and admitted with the mean of its scores.

With a noisy score, the highest of many scores is mostly luck (the winner's curse): a copy of
an average program that drew a lucky sample becomes the best, the parent of the next
children, and what the run hands its user. Rechecking only would-be bests divides the luck
a best can carry by about sqrt(1 + rechecks), at a cost that depends on how often children
beat the best on one sample (on noisy_knapsack, 3 rechecks added 14% to the search's evaluations,
10.5-18.7% over ten seeds; benchmarks/results-rechecks.json).
Each recheck is an evaluation of its own; the budget counts candidates, so a run spends more
evaluations than its candidate count says (each candidate's `rechecks` metric, and the run's
summary, say how many). Off unless a problem or the config asks: on noisy_knapsack it made
no difference ten seeds could see (benchmarks/README.md).
"""

from __future__ import annotations

import statistics
from typing import Any

from ..problem import EvalResult
from ..records import Candidate


async def rechecked(
    pool: Any, text: str, label: str, proposal: int, first: EvalResult, times: int, best: Candidate | None
) -> EvalResult:
    """`first` itself unless it would beat `best`; then `first` with its score replaced by the
    mean over it and up to `times` more evaluations of `text`, which stop once the mean falls to
    the best's score (a copy of the best that drew a lucky sample costs one recheck, not
    `times`); invalid, saying which, if any of them is."""
    bar = best.score if best is not None else None
    if not times or not first.valid or first.score is None or (bar is not None and first.score <= bar):
        return first
    scores = [float(first.score)]
    for n in range(1, times + 1):
        if bar is not None and statistics.fmean(scores) <= bar:
            break
        again = await pool.evaluate(text, label=f"{label} (recheck {n} of {times})", proposal=proposal)
        if not again.valid or again.score is None:
            why = again.feedback or "it returned no score"
            feedback = f"recheck {n} of {times} was invalid (first score {first.score:.6g}): {why}"
            return EvalResult.invalid(feedback, rechecks=float(n))
        scores.append(float(again.score))
    metrics = {
        **first.metrics,
        "first_score": scores[0],
        "score_sd": statistics.stdev(scores),
        "rechecks": float(len(scores) - 1),
    }
    return EvalResult(
        score=statistics.fmean(scores),
        valid=True,
        metrics=metrics,
        features=first.features,
        feedback=first.feedback,
        artifacts=first.artifacts,
        instances=first.instances,
    )
