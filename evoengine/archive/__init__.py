"""The archive: what the engine keeps of a run in memory to choose the next parents.

`Archive` is the one door the engine uses. Every evaluated candidate goes through
`admit`, in admission order, valid or not; `select` returns a parent, its island and
inspirations. Behind it: `islands.IslandModel` (capped populations, migration, resets),
`elites.EliteArchive` (MAP-Elites) and `selection.ParentSelector`. The run store
(`evoengine/store/`) is the truth; this is a cache of it whose state is a deterministic
function of the admitted sequence (no clock, no global RNG), so a resumed run rebuilds it
by admitting the stored candidates again. Memory is bounded by the island caps, the
elite cells and the refine counts, not by the length of the run.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import Config
from ..problem import Problem
from ..records import Candidate
from .elites import EliteArchive
from .islands import IslandModel
from .selection import ARMS, BEST, MIX, SEED, ParentSelector, Selection

__all__ = ["Archive", "ArchiveEvent", "Selection"]

RECENT_BESTS = 4  # a child of any of the last few parents refine took counts as refinement (bests, equals)


def _sampled(candidate: Candidate) -> bool:
    """Scored more than once (`rechecks`): a challenger rechecked, or a best scored again."""
    return bool(candidate.metrics.get("rechecks"))


@dataclass(frozen=True)
class ArchiveEvent:
    """Something the archive did that the store should record.

    kinds: "migration" {source, target, ids}; "reset" {island, founder_island, founder_id,
    evicted}; "elite" {id, cell, status: new|improved, replaced, score}. (The ledger adds
    "best" {id, score} when the run's best changes.)
    """

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class _IslandCounts:
    admitted: int = 0
    invalid: int = 0


class Archive:
    """Islands, MAP-Elites and parent selection behind one narrow interface."""

    def __init__(self, config: Config, problem: Problem):
        self.config = config
        self.problem = problem
        self.islands = IslandModel(config.islands, config.seed)
        self.elites = EliteArchive(config.elites, problem, config.seed) if config.elites.enabled else None
        self.selector = ParentSelector(config.selection)
        self.admitted = 0
        self.valid = 0
        self._best: Candidate | None = None
        self._walk: Candidate | None = None  # refine's parent: the latest among the best's equals (`drift`)
        self._bests: deque[int] = deque(maxlen=RECENT_BESTS)  # ids of refine's latest parents, newest last
        self._seed: Candidate | None = None  # the first admitted candidate, kept as a last resort
        self._counts = [_IslandCounts() for _ in range(config.islands.count)]

    # ------------------------------------------------------------- admitting

    def anchor(self, seed_text: str) -> None:
        """Build the MAP-Elites cells from the seed's text ahead of its admission (start-up does
        this while the evaluation workers boot); `admit` does it otherwise."""
        if self.elites is not None:
            self.elites.anchor(seed_text)

    def admit(self, candidate: Candidate, copy: bool = False) -> list[ArchiveEvent]:
        """Take one evaluated candidate (valid or not); returns what changed worth recording.
        A `copy` (a child that behaves as a kept candidate) is counted, and taught to the
        selector as a child that gained nothing, but kept nowhere."""
        self.admitted += 1
        if self._seed is None:
            self._seed = candidate
            if self.elites is not None:
                self.elites.anchor(candidate.text)
        for parent in dict.fromkeys(candidate.parents):
            self.islands.note_child(parent)
        everywhere = candidate.operator == "seed"
        homes = range(len(self.islands)) if everywhere else [candidate.island % len(self.islands)]
        for i in homes:
            self._counts[i].admitted += 1
        events: list[ArchiveEvent] = []
        scored = candidate.valid and candidate.score is not None
        self.valid += int(scored)
        valid = scored and not copy
        new_best = valid and (self._best is None or candidate.fitness() > self._best.fitness())
        # With `drift`, a child as good as the best and no longer than refine's parent becomes that
        # parent: a plateau is walked, and the walk does not grow the program (a longer tie is
        # mostly dead code, which makes every later edit less likely to change anything).
        tie = (
            valid
            and not new_best
            and self.config.selection.drift
            and candidate.fitness() == self._best.fitness()
            and len(candidate.text) <= len(self._walk.text)
        )
        arm = placed = None
        if candidate.parents and not everywhere:
            parent = candidate.parents[0]
            seed = self._seed is not None and parent == self._seed.id
            arm = BEST if parent in self._bests else SEED if seed else MIX
        gains = arm is not None and self._gains(candidate, new_best)  # read before this child becomes the best
        if valid:
            if new_best:
                self._best = candidate
            if new_best or tie:
                self._walk = candidate
                self._bests.append(candidate.id)
            if everywhere:
                self.islands.place_everywhere(candidate)
            else:
                self.islands.place(candidate, homes[0])
            if self.elites is not None:
                placed = self.elites.add(candidate)
                if placed is not None:
                    events.append(
                        ArchiveEvent(
                            "elite",
                            {
                                "id": candidate.id,
                                "cell": placed.cell,
                                "status": placed.status,
                                "replaced": placed.replaced,
                                "score": candidate.score,
                            },
                        )
                    )
        elif not scored:
            for i in homes:
                self._counts[i].invalid += 1
        if arm is not None:  # a new best that gains counts 1; a stepping stone of the mix (a bettered cell) its credit
            stone = placed is not None and arm == MIX
            self.selector.learn(arm, 1.0 if gains else self.config.selection.cell_credit if stone else 0.0)
        resets, migrations = self.islands.tick(self.admitted)
        events += [ArchiveEvent("reset", asdict(r)) for r in resets]
        events += [ArchiveEvent("migration", asdict(m)) for m in migrations]
        return events

    def rescore(self, candidate: Candidate, score: float, metrics: dict[str, float]) -> None:
        """Give an admitted valid candidate a new score (a noisy evaluator's mean over more
        samples): it moves on its islands; if it was the run's best, the best is now the best of
        what is kept and was scored more than once (after a lucky best loses its luck, the next
        in line by one sample is mostly the next luckiest of its kind, and a better child would
        have to draw above it as well); if not, it becomes the best only by beating it."""
        before = candidate.fitness()
        candidate.rescore(score, metrics)
        self.islands.rescore(candidate, before)
        if candidate is not self._best:  # one that is not the best becomes it only by beating it
            if self._best is None or candidate.fitness() > self._best.fitness():
                self._best = self._walk = candidate
                self._bests.append(candidate.id)
            return
        kept = [next((c for c in island.members if _sampled(c)), None) for island in self.islands.islands]
        if self.elites is not None:
            kept += [elite.candidate for elite in self.elites.elites() if _sampled(elite.candidate)]
        best = max((c for c in kept if c is not None), key=lambda c: (c.fitness(), -c.id), default=self._best)
        if best is not self._best:
            self._best = self._walk = best
            self._bests.append(best.id)

    def _gains(self, candidate: Candidate, new_best: bool) -> bool:
        """A new best that counts for `refine`: one gaining over `selection.min_gain` of the run's
        climb so far (best - seed), so the last digits of a converged constant do not count."""
        if not new_best or self._best is None or self._seed is None or not self._seed.valid:
            return new_best
        climb = self._best.fitness() - self._seed.fitness()
        return candidate.fitness() - self._best.fitness() > self.config.selection.min_gain * climb

    # ---------------------------------------------------------------- resume

    def state(self) -> dict[str, Any]:
        """Everything `admit` built, as candidate ids and counters (JSON-ready): a resumed run
        restores it with `restore` instead of admitting every stored candidate again."""
        return {
            "admitted": self.admitted,
            "valid": self.valid,
            "best": self._best.id if self._best else None,
            "walk": self._walk.id if self._walk else None,
            "bests": list(self._bests),
            "outcomes": [list(arm) for arm in self.selector.outcomes],
            "seed": self._seed.id if self._seed else None,
            "counts": [[c.admitted, c.invalid] for c in self._counts],
            "islands": self.islands.state(),
            "elites": self.elites.state() if self.elites is not None else None,
        }

    @staticmethod
    def referenced(state: dict[str, Any]) -> set[int]:
        """The ids of the candidates a `state()` names (what `restore` needs loaded)."""
        ids = {i for i in (state["best"], state.get("walk"), state["seed"]) if i is not None}
        ids.update(i for members in state["islands"]["members"] for i in members)
        if state["elites"] is not None:
            ids.update(cid for _, cid, _ in state["elites"]["elites"])
        return ids

    def restore(self, state: dict[str, Any], by_id: dict[int, Candidate]) -> None:
        """Set the archive to a `state()` taken earlier under the same config; `by_id` holds
        the candidates it names (`referenced`)."""
        self.admitted, self.valid = state["admitted"], state["valid"]
        self._best = by_id[state["best"]] if state["best"] is not None else None
        walk = state.get("walk", state["best"])  # older states: no drift recorded
        self._walk = by_id[walk] if walk is not None else None
        self._bests.clear()
        self._bests.extend(state.get("bests", []))
        outcomes = [list(arm) for arm in state.get("outcomes", [])]
        self.selector.outcomes = outcomes + [[0.0, 0.0] for _ in ARMS[len(outcomes) :]]  # older: fewer arms
        self._seed = by_id[state["seed"]] if state["seed"] is not None else None
        if self._seed is not None and self.elites is not None:
            self.elites.anchor(self._seed.text, (state["elites"] or {}).get("centroids"))
        self._counts = [_IslandCounts(a, i) for a, i in state["counts"]]
        self.islands.restore(state["islands"], by_id)
        if self.elites is not None:
            self.elites.restore(state["elites"], by_id)

    # --------------------------------------------------------------- reading

    def select(self, rng: random.Random) -> Selection:
        """A parent, its island and inspirations; a deterministic function of the archive and `rng`."""
        return self.selector.select(
            self.islands, self.elites, rng, fallback=self._seed, best=self._best, walk=self._walk
        )

    def best(self) -> Candidate | None:
        """The best valid candidate admitted so far (the earliest among equals)."""
        return self._best

    def kept(self) -> list[Candidate]:
        """Every candidate the archive holds (on an island or in an elite cell), once each."""
        held = [c for island in self.islands.islands for c in island.members]
        held += [elite.candidate for elite in self.elites.elites()] if self.elites is not None else []
        return list({c.id: c for c in held}.values())

    def holds(self, candidate: Candidate) -> bool:
        """Is `candidate` on an island or in an elite cell?"""
        if any(c is candidate for island in self.islands.islands for c in island.members):
            return True
        return self.elites is not None and any(e.candidate is candidate for e in self.elites.elites())

    def members(self, island: int) -> list[Candidate]:
        """An island's population, best first."""
        return list(self.islands[island].members)

    def stats(self) -> dict[str, Any]:
        islands = []
        for island, counts in zip(self.islands.islands, self._counts, strict=True):
            best = island.best
            islands.append(
                {
                    "island": island.index,
                    "size": len(island),
                    "best_id": best.id if best else None,
                    "best_score": best.score if best else None,
                    "admitted": counts.admitted,
                    "invalid": counts.invalid,
                }
            )
        best = self._best
        return {
            "admitted": self.admitted,
            "valid": self.valid,
            "invalid": self.admitted - self.valid,
            "best_id": best.id if best else None,
            "best_score": best.score if best else None,
            "islands": islands,
            "topology": self.config.islands.topology,
            "migrations": self.islands.migrations,
            "migrants": self.islands.migrated,
            "resets": self.islands.resets,
            "elites": self.elites.stats() if self.elites is not None else {"enabled": False},
        }

    def elite_map(self) -> dict[str, Any]:
        """Dimensions and filled cells of the MAP-Elites archive, for reports."""
        if self.elites is None:
            return {"kind": None, "dimensions": [], "cells": 0, "filled": [], "qd_offset": None}
        return self.elites.map()
