"""Rechecks, for noisy evaluators: a candidate whose score would make it the run's best is
evaluated again before it is believed, and admitted with the mean of its scores; the best it
challenges is scored once more too, and keeps the mean of all its samples.

With a noisy score, the highest of many scores is mostly luck (the winner's curse): a copy of
an average program that drew a lucky sample becomes the best, the parent of the next
children, and what the run hands its user. Rechecking a would-be best divides the luck it can
carry by about sqrt(1 + rechecks), but the bar it must clear is the best's own score, itself
the luckiest of many: against a best that drew a lucky sample, a truly better child's mean
falls below the bar and it is refused (on noisy_knapsack, rechecks of the challenger alone made
no difference ten seeds could see). So each challenge scores the best once more as well: a
lucky best loses its luck as it is challenged (its samples: 1 + its `rechecks` metric), moves
down its islands, and the best of those scored more than once takes its place
(`Archive.rescore`): the next in line by one sample is mostly the next luckiest of a family of
programs that behave alike (on noisy_knapsack with the models, hundreds), which a truly better
child would have to outdraw too.
Each recheck is an evaluation of its own; the budget counts candidates, so a run spends more
evaluations than its candidate count says (the `rechecks` metrics, and the run's summary, say
how many). A resume that replays closings admits each candidate with its latest mean, so a
MAP-Elites cell (rarely an island) can differ from the live run's; the resume snapshot keeps
them as they were when it was taken. Off unless a problem or the config asks.
Rechecks do not keep a family's luckiest member from leading when the family is hundreds
strong; copies (`copies.py`) do, for an evaluator that says how a candidate behaves.
"""

from __future__ import annotations

import statistics
from typing import Any

from ..problem import EvalResult
from ..records import Candidate


async def rechecked(
    pool: Any, text: str, label: str, proposal: int, first: EvalResult, times: int, best: Candidate | None
) -> tuple[EvalResult, float | None]:
    """`first` itself unless it would beat `best`. Then the best is scored once more (its new
    sample, returned second, goes into its mean: an incumbent that drew a lucky sample loses its
    luck as it is challenged) and `first` is returned with its score replaced by the mean over it
    and up to `times` more evaluations of `text`, which stop once the mean falls to the best's
    (a copy of the best that drew a lucky sample costs one recheck, not `times`); invalid,
    saying which, if any of them is."""
    bar = best.score if best is not None else None
    if not times or not first.valid or first.score is None or (bar is not None and first.score <= bar):
        return first, None
    again = None
    if best is not None and bar is not None:
        incumbent = await pool.evaluate(
            best.text, label=f"{label} (candidate {best.id}, the best, scored again)", proposal=proposal
        )
        if incumbent.valid and incumbent.score is not None:
            again = float(incumbent.score)
            bar = with_sample(best, again)[0]
    scores = [float(first.score)]
    for n in range(1, times + 1):
        if bar is not None and statistics.fmean(scores) <= bar:
            break
        repeat = await pool.evaluate(text, label=f"{label} (recheck {n} of {times})", proposal=proposal)
        if not repeat.valid or repeat.score is None:
            why = repeat.feedback or "it returned no score"
            feedback = f"recheck {n} of {times} was invalid (first score {first.score:.6g}): {why}"
            return EvalResult.invalid(feedback, rechecks=float(n)), again
        scores.append(float(repeat.score))
    metrics = {
        **first.metrics,
        "first_score": scores[0],
        "score_sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
        "rechecks": float(len(scores) - 1),
    }
    result = EvalResult(
        score=statistics.fmean(scores),
        valid=True,
        metrics=metrics,
        features=first.features,
        feedback=first.feedback,
        artifacts=first.artifacts,
        instances=first.instances,
    )
    return result, again


def with_sample(candidate: Candidate, sample: float, weight: int = 1) -> tuple[float, dict[str, float]]:
    """`candidate`'s score and metrics with one more sample in its mean (its samples: 1 + its
    `rechecks` metric, which counts the new one), or `weight` samples whose mean is `sample`."""
    n = 1 + int(candidate.metrics.get("rechecks", 0))
    mean = (float(candidate.score) * n + sample * weight) / (n + weight)
    return mean, {**candidate.metrics, "rechecks": float(n - 1 + weight)}
