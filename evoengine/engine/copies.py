"""Copies: children that behave as a candidate the archive keeps.

An evaluator may say what a candidate did in its `behaviour` artifact (a fingerprint of its
outputs, `evoengine.problem.BEHAVIOUR`). A valid child with the behaviour of a kept candidate
is a copy of it: the ledger counts it against the budget and keeps it nowhere, and its score
becomes one more sample of the original's mean (`pool_copy`). With a noisy evaluator, a family
of programs that behave alike is then one candidate scored many times, its mean the family's
true score, instead of hundreds of candidates whose luckiest sample leads the run (rechecks,
`recheck.py`, cannot stop that: each member is rechecked on its own). With a deterministic one
a copy scores what its original does; it stays out of the population. Off by default
(`evaluation.pool_copies`): on noisy_knapsack with the models it made no difference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..problem import BEHAVIOUR, EvalResult
from ..records import Candidate
from .recheck import with_sample

if TYPE_CHECKING:
    from ..archive import Archive


class Behaviours:
    """The behaviour of every candidate the archive keeps, to tell a copy by. Entries of
    candidates it no longer keeps are dropped now and then (memory stays bounded by the
    archive's); they never count, so when they go changes nothing."""

    def __init__(self, archive: Archive):
        self.archive = archive
        self.held: dict[str, Candidate] = {}
        self._cap = 1000

    def add(self, candidate: Candidate) -> None:
        """Note a kept candidate's behaviour, if its evaluator said one."""
        if candidate.artifacts.get(BEHAVIOUR):
            self.held[candidate.artifacts[BEHAVIOUR]] = candidate
        if len(self.held) > self._cap:
            kept = {c.id for c in self.archive.kept()}
            self.held = {key: c for key, c in self.held.items() if c.id in kept}
            self._cap = 2 * len(self.held) + 1000

    def original(self, result: EvalResult | Candidate) -> Candidate | None:
        """The kept candidate that a valid result behaves as, if any."""
        held = self.held.get(result.artifacts.get(BEHAVIOUR) or "") if result.valid else None
        return held if held is not None and self.archive.holds(held) else None

    def restore(self) -> None:
        """After the archive is restored from a resume snapshot: the behaviours of what it keeps."""
        for candidate in sorted(self.archive.kept(), key=lambda c: c.id):
            self.add(candidate)


def pool_copy(archive: Archive, copy: Candidate, original: Candidate) -> str:
    """Fold a copy's samples (1 + its rechecks) into its original's mean, counted apart as
    `pooled`; returns why the copy is not kept itself."""
    weight = 1 + int(copy.metrics.get("rechecks", 0))
    score, metrics = with_sample(original, float(copy.score), weight)
    archive.rescore(original, score, {**metrics, "pooled": original.metrics.get("pooled", 0.0) + weight})
    return (
        f"behaves as candidate {original.id} (the same {BEHAVIOUR}): its score {copy.score:.6g} is one more "
        f"sample of {original.id}'s, now {score:.6g} over {1 + int(metrics['rechecks'])} evaluations"
    )
