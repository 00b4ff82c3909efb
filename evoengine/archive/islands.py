"""Island populations, migration along a topology, and FunSearch-style resets.

An `Island` keeps its valid members sorted best-first (by fitness, ties by the older id)
in a Python list, with aligned numpy arrays of scores and child counts, so that parent
selection reads arrays instead of looping over members. A full island evicts its worst
member, never its best.

`IslandModel` owns the islands and the schedules, which count admissions, never seconds:
every `migration_interval` admissions each island sends its top `migration_size` members
to its neighbours (ring: both sides; full: every other island; random: one island drawn
per sender; isolated: none); every `reset_interval` admissions the weakest
`reset_fraction` of islands are emptied and each is refounded with the best member of a
randomly drawn surviving island (as in FunSearch). Migrants and founders are the same
`Candidate` records (same ids, same lineage), listed in one more population.

Randomness inside a schedule (random topology, ties between equally weak islands, which
survivor founds a reset island) comes from `schedule_rng(seed, admissions, purpose)`, so
the model is a deterministic function of the admitted sequence: replaying a run's
candidates rebuilds it exactly.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

import numpy as np

from ..config import Islands as IslandsConfig
from ..records import Candidate


def schedule_rng(seed: int, admissions: int, purpose: str) -> random.Random:
    """A generator fixed by the run's seed and the admission count (str seeds go through SHA-512)."""
    return random.Random(f"{seed}:{admissions}:{purpose}")


def _key(candidate: Candidate) -> tuple[float, int]:
    return (-candidate.fitness(), candidate.id)


@dataclass
class Island:
    """One capped population, sorted best-first; `scores`/`children` align with `members`."""

    index: int
    cap: int
    members: list[Candidate] = field(default_factory=list)
    keys: list[tuple[float, int]] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.empty(0))
    children: np.ndarray = field(default_factory=lambda: np.empty(0))

    def __len__(self) -> int:
        return len(self.members)

    @property
    def best(self) -> Candidate | None:
        return self.members[0] if self.members else None

    def index_of(self, cid: int, fitness: float) -> int | None:
        """Where member `cid` (of this fitness) sits, found by bisection; None if absent."""
        i = bisect.bisect_left(self.keys, (-fitness, cid))
        return i if i < len(self.keys) and self.keys[i][1] == cid else None

    def insert(self, candidate: Candidate, children: int = 0) -> Candidate | None:
        """Add a member; returns the member evicted to respect the cap (possibly `candidate`)."""
        key = _key(candidate)
        i = bisect.bisect_left(self.keys, key)
        self.members.insert(i, candidate)
        self.keys.insert(i, key)
        self.scores = np.insert(self.scores, i, candidate.fitness())
        self.children = np.insert(self.children, i, float(children))
        if len(self.members) <= self.cap:
            return None
        self.keys.pop()  # the worst is last; with cap >= 1 it is never the best
        self.scores = self.scores[:-1]
        self.children = self.children[:-1]
        return self.members.pop()

    def clear(self) -> list[Candidate]:
        gone = self.members
        self.members, self.keys = [], []
        self.scores, self.children = np.empty(0), np.empty(0)
        return gone


@dataclass(frozen=True)
class Migration:
    source: int
    target: int
    ids: list[int]


@dataclass(frozen=True)
class Reset:
    island: int
    founder_island: int
    founder_id: int
    evicted: int


class IslandModel:
    """The islands of a run and their admission-count schedules."""

    def __init__(self, config: IslandsConfig, seed: int = 0):
        self.config = config
        self.seed = seed
        self.islands = [Island(i, config.population) for i in range(config.count)]
        self.migrated = 0  # arrivals of migrants on another island
        self.migrations = 0  # migration rounds
        self.resets = 0  # islands reset
        # For living members only: child counts, and the fitness and number of islands
        # holding each id (the fitness finds a member by bisection).
        self._children: dict[int, int] = {}
        self._living: dict[int, tuple[float, int]] = {}

    def __len__(self) -> int:
        return len(self.islands)

    def __getitem__(self, island: int) -> Island:
        return self.islands[island]

    @property
    def alive(self) -> int:
        """Distinct candidates held by at least one island."""
        return len(self._living)

    # ------------------------------------------------------------ membership

    def place(self, candidate: Candidate, island: int) -> bool:
        """Put a valid candidate on an island; False if it was there already or fell off at once."""
        home = self.islands[island]
        living = self._living.get(candidate.id)
        if living is not None and home.index_of(candidate.id, living[0]) is not None:
            return False
        evicted = home.insert(candidate, self._children.get(candidate.id, 0))
        self._living[candidate.id] = (candidate.fitness(), (living[1] if living else 0) + 1)
        if evicted is not None:
            self._left(evicted)
        return evicted is not candidate

    def place_everywhere(self, candidate: Candidate) -> None:
        for island in range(len(self.islands)):
            self.place(candidate, island)

    def _left(self, candidate: Candidate) -> None:
        fitness, homes = self._living[candidate.id]
        if homes > 1:
            self._living[candidate.id] = (fitness, homes - 1)
        else:
            del self._living[candidate.id]
            self._children.pop(candidate.id, None)

    def rescore(self, candidate: Candidate, before: float) -> None:
        """Move a living member whose score changed from `before` to its new place on every
        island that lists it."""
        living = self._living.get(candidate.id)
        if living is None:
            return
        for island in self.islands:
            i = island.index_of(candidate.id, before)
            if i is None:
                continue
            children = island.children[i]
            del island.members[i], island.keys[i]
            island.scores, island.children = np.delete(island.scores, i), np.delete(island.children, i)
            island.insert(candidate, int(children))
        self._living[candidate.id] = (candidate.fitness(), living[1])

    def note_child(self, parent_id: int) -> None:
        """Count a child of a living member, on every island that lists it."""
        living = self._living.get(parent_id)
        if living is None:
            return
        self._children[parent_id] = self._children.get(parent_id, 0) + 1
        for island in self.islands:
            i = island.index_of(parent_id, living[0])
            if i is not None:
                island.children[i] += 1.0

    # ------------------------------------------------------------ resume

    def state(self) -> dict:
        """The model as ids and counters (JSON-ready): `restore` with the same candidates gives
        it back exactly, without replaying the admissions that made it."""
        return {
            "members": [[c.id for c in island.members] for island in self.islands],
            "children": sorted([cid, n] for cid, n in self._children.items()),
            "counters": [self.migrated, self.migrations, self.resets],
        }

    def restore(self, state: dict, by_id: dict[int, Candidate]) -> None:
        """Set the model to a `state()` taken earlier; `by_id` holds every member's candidate."""
        self._children = {int(cid): int(n) for cid, n in state["children"]}
        self._living = {}
        for island, ids in zip(self.islands, state["members"], strict=True):
            island.clear()
            island.members = sorted((by_id[cid] for cid in ids), key=_key)  # rescored since: resorted
            island.keys = [_key(c) for c in island.members]
            island.scores = np.array([c.fitness() for c in island.members], dtype=np.float64)
            island.children = np.array([float(self._children.get(c.id, 0)) for c in island.members])
            for c in island.members:
                homes = self._living.get(c.id, (0.0, 0))[1]
                self._living[c.id] = (c.fitness(), homes + 1)
        self.migrated, self.migrations, self.resets = state["counters"]

    # ------------------------------------------------------------- schedules

    def tick(self, admissions: int) -> tuple[list[Reset], list[Migration]]:
        """Run whatever the schedules say is due after `admissions` admissions."""
        cfg = self.config
        resets: list[Reset] = []
        migrations: list[Migration] = []
        if cfg.reset_interval and admissions % cfg.reset_interval == 0:
            resets = self.reset_weakest(schedule_rng(self.seed, admissions, "reset"))
        if admissions % cfg.migration_interval == 0:
            migrations = self.migrate(schedule_rng(self.seed, admissions, "migrate"))
        return resets, migrations

    def neighbours(self, island: int, rng: random.Random) -> list[int]:
        k = len(self.islands)
        topology = self.config.topology
        if k == 1 or topology == "isolated":
            return []
        if topology == "ring":
            return sorted({(island + 1) % k, (island - 1) % k})
        if topology == "full":
            return [j for j in range(k) if j != island]
        other = rng.randrange(k - 1)  # random: one other island per sender and round
        return [other if other < island else other + 1]

    def migrate(self, rng: random.Random) -> list[Migration]:
        """Copy each island's top members to its neighbours (snapshot first: no relaying)."""
        size = self.config.migration_size
        if size == 0:
            return []
        outgoing = [list(island.members[:size]) for island in self.islands]
        targets = [self.neighbours(i, rng) for i in range(len(self.islands))]
        moves = []
        for source, migrants in enumerate(outgoing):
            for target in targets[source]:
                ids = [c.id for c in migrants if self.place(c, target)]
                if ids:
                    moves.append(Migration(source, target, ids))
                    self.migrated += len(ids)
        self.migrations += 1
        return moves

    def reset_weakest(self, rng: random.Random) -> list[Reset]:
        """Empty the weakest islands; refound each from the best of a random survivor."""
        k = len(self.islands)
        n_reset = int(k * self.config.reset_fraction)
        if n_reset == 0:
            return []
        tie = [rng.random() for _ in range(k)]  # equally weak islands are chosen at random
        strength = [(island.scores[0] if len(island) else -np.inf, tie[i]) for i, island in enumerate(self.islands)]
        order = sorted(range(k), key=lambda i: strength[i])
        weak, survivors = order[:n_reset], [i for i in order[n_reset:] if len(self.islands[i])]
        resets = []
        for island in sorted(weak):
            evicted = self.islands[island].clear()
            for c in evicted:
                self._left(c)
            if not survivors:
                continue
            donor = survivors[rng.randrange(len(survivors))]
            founder = self.islands[donor].members[0]
            self.place(founder, island)
            resets.append(Reset(island, donor, founder.id, len(evicted)))
            self.resets += 1
        return resets
