"""Parent and inspiration sampling.

Two baselines bypass everything below: `iid` takes the seed as every parent, `greedy` the
run's best (the earliest among equals), each with no inspirations and ignoring the shares
and islands (the child lives on the parent's island). They are how a run measures what
evolution adds over independent sampling and sequential refinement at the same budget.

Otherwise the run learns which kind of parent pays, among three (ARMS): its best (with
`refine`, as the greedy baseline), the seed (with `restart`, off by default, as the iid
baseline), or the mix below. Each admitted child counts as a child of a recent best (one of
the last four), of the seed, or of anyone else, and as setting a new best or not (a new best
gaining under `min_gain` of the run's climb from the seed does not count: a converged
constant's last digits are no reason to keep refining); a child of the mix that fills or
betters a MAP-Elites cell without such a new best counts `cell_credit` of one (a quarter: a
mix whose children keep improving the cells is building stepping stones while the best is
stuck, one whose children change nothing is not; the best's children earn none: while it
climbs they fill the cells around it, which says nothing for the mix); the counts fade
(weight e^-age/refine_memory, age in admissions). Each parent is of the kind whose draw from
Beta(a + new bests, b + the rest) is highest (Thompson sampling); the prior a, b is the pooled rate
of all kinds, worth PRIOR children, so a kind tried rarely is drawn about that rate. A best
or the seed comes with no inspirations (every child of it is a plain edit, as in the
baselines). With `drift`, the best that `refine` takes is the latest candidate to score as
well as the run's best while being no longer than the one it follows (the archive keeps it):
on a plateau of equal scores the run walks, as a (1+1) algorithm accepting equal moves, and
the walk never grows the program (longer ties are mostly dead code, which makes each later
edit less likely to change anything). The baselines ignore `drift`. So a run refines its
best while that pays, starts again from the seed when the best is stuck on a local optimum
that the seed's own edits beat, and hands parents to the mix when others' children set the
new bests (and shares them when nobody's do). In the mix,
each parent comes from one of three shares of `config.selection`, normalised: `exploit` (the
configured strategy on the chosen island), `explore` (uniform on the island) and `elites`
(the elite of a uniformly drawn filled MAP-Elites cell; the default mix is all elites, so a
stalled run walks the archive's cells, the stepping stones a deceptive landscape needs). The
island is drawn uniformly. Strategies over an island's members, which are sorted best-first:

- power_law: p(rank r) ∝ r^-alpha (r = 1 is the best);
- weighted (ShinkaEvolve): p ∝ sigmoid(λ·(score − median)/MAD) / (1 + children);
- tournament: the best of `tournament` members drawn uniformly with replacement;
- uniform: a uniformly drawn filled MAP-Elites cell (on the island when there are none);
- hill_climb: the island's best;
- pareto (GEPA): per-instance Pareto front. For each instance in `Candidate.instances` the
  members with the island's best score on it win it; a member whose won instances are a
  subset of another's (equal sets: the better-ranked one stays) is dominated and dropped;
  the rest are drawn with p ∝ number of instances won. A member best on a single instance
  stays in the front whatever its mean score. With no instances on the island: its best.

Sampling draws from cumulative weights with one `rng.random()`, so a selection is a
deterministic function of the archive and the generator, and costs O(population) numpy
work at most (power-law tables are cached per population size). Inspirations: the island's `top_inspirations` best
besides the parent, then `diverse_inspirations` alternately from random elite cells and
from the best of other islands, never repeating a candidate.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..config import Selection as SelectionConfig
from ..records import Candidate
from .elites import EliteArchive
from .islands import IslandModel

# The kinds of parent whose children `refine` and `restart` count: a recent best, anyone else
# (the mix), the seed.
BEST, MIX, SEED = 0, 1, 2
ARMS = ("best", "mix", "seed")
PRIOR = 2.0  # children's worth of the pooled rate in each arm's prior


@dataclass(frozen=True)
class Selection:
    """A parent, the island its child will live on, and candidates to show beside it.

    `source` says which share picked the parent: "exploit:<strategy>", "explore", "elite",
    a baseline ("iid", "greedy"), or "seed" when no valid candidate exists yet and the
    (invalid) seed is all there is.
    """

    island: int
    parent: Candidate
    inspirations: list[Candidate] = field(default_factory=list)
    source: str = "exploit"


# ------------------------------------------------------------------ definitions


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x), without overflow for large |x| (scipy's expit, minus its import)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def weighted_probabilities(scores: np.ndarray, children: np.ndarray, sharpness: float) -> np.ndarray:
    """p ∝ sigmoid(sharpness·(score − median)/MAD) / (1 + children); MAD 0 splits at the median."""
    median = np.median(scores)
    mad = np.median(np.abs(scores - median))
    scale = mad if mad > 0 else np.finfo(np.float64).tiny
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        w = _sigmoid(sharpness * (scores - median) / scale) / (1.0 + children)
    total = w.sum()
    return w / total if total > 0 else np.full(len(scores), 1.0 / len(scores))


def pareto_weights(instances: list[dict[str, float]]) -> np.ndarray:
    """Instances won by each member of the per-instance Pareto front, 0 for everyone else.

    `instances` are the members' per-instance scores, best-ranked member first. A member wins
    an instance when no member scores higher on it (ties: all win); a member whose won set is
    contained in another's (for equal sets, one ranked higher) is dominated and gets 0.
    """
    keys = sorted({k for scores in instances for k in scores})
    if not keys:
        return np.zeros(len(instances))
    column = {k: j for j, k in enumerate(keys)}
    table = np.full((len(instances), len(keys)), -np.inf)
    for i, scores in enumerate(instances):
        for k, v in scores.items():
            table[i, column[k]] = v
    best = table.max(axis=0)
    wins = (table >= best) & np.isfinite(table)
    counts = wins.sum(axis=1)
    w = wins.astype(np.int64)
    # outside[i, j]: instances member i wins and member j does not.
    outside = w @ (1 - w).T
    contained = outside == 0
    strictly = contained & (outside.T > 0)
    ranked_above = np.tri(len(instances), k=-1, dtype=bool)  # [i, j] is True when j < i
    dominated = ((strictly | (contained & ranked_above)) & (counts > 0)[None, :]).any(axis=1)
    return np.where(dominated | (counts == 0), 0, counts).astype(np.float64)


# --------------------------------------------------------------------- drawing


def draw(cdf: np.ndarray, rng: random.Random) -> int:
    """An index drawn from a cumulative (unnormalised) distribution with one rng call."""
    i = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return min(i, len(cdf) - 1)


@lru_cache(maxsize=64)
def _power_law_cdf(n: int, alpha: float) -> np.ndarray:
    return np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -alpha)


def tournament_index(n: int, size: int, rng: random.Random) -> int:
    return min(rng.randrange(n) for _ in range(size))


# -------------------------------------------------------------------- selector


class ParentSelector:
    """Picks an island, a parent and inspirations according to `config.selection`."""

    def __init__(self, config: SelectionConfig):
        self.config = config
        shares = np.array([config.exploit, config.explore, config.elites], dtype=np.float64)
        self._shares = np.cumsum(shares if shares.sum() > 0 else np.array([1.0, 0.0, 0.0]))
        # [new bests, children], discounted, of the children of each kind of parent (ARMS)
        self.outcomes = [[0.0, 0.0] for _ in ARMS]
        self._keep = math.exp(-1.0 / config.refine_memory)  # each admission's fading of the counts

    def learn(self, arm: int, outcome: float) -> None:
        """One child's outcome: the kind of its parent (an index into ARMS), and 1 when it set a new
        best (`cell_credit` when a child of the mix only filled or bettered a MAP-Elites cell, 0 otherwise)."""
        for counts in self.outcomes:
            counts[0] *= self._keep
            counts[1] *= self._keep
        self.outcomes[arm][0] += outcome
        self.outcomes[arm][1] += 1.0

    def _arm(self, rng: random.Random, best: Candidate | None, seed: Candidate | None) -> int:
        """Thompson sampling between the kinds of parent the config allows, on their discounted odds."""
        allowed = [MIX]
        if self.config.refine and best is not None:
            allowed.append(BEST)
        if self.config.restart and seed is not None and seed is not best:
            allowed.append(SEED)
        if len(allowed) == 1:
            return MIX
        # Each arm's prior is the pooled rate over all arms, worth PRIOR children: an arm tried
        # rarely (its counts faded) is drawn about the run's rate, not about 1/2, so an arm whose
        # children never set a new best keeps a small share instead of a third of the parents.
        rate = (1 + sum(h for h, _ in self.outcomes)) / (2 + sum(n for _, n in self.outcomes))
        a, b = PRIOR * rate, PRIOR * (1 - rate)
        draws = {arm: rng.betavariate(a + hits, b + n - hits) for arm, (hits, n) in enumerate(self.outcomes)}
        return max(allowed, key=draws.__getitem__)

    def select(
        self,
        islands: IslandModel,
        elites: EliteArchive | None,
        rng: random.Random,
        fallback: Candidate | None = None,
        best: Candidate | None = None,
        walk: Candidate | None = None,
    ) -> Selection:
        """`fallback` is the seed (the first admitted candidate), `best` the run's best valid one
        (the earliest among equals), `walk` refine's parent (with `drift`, the latest among them)."""
        k = len(islands)
        cfg = self.config
        baseline = cfg.strategy
        if baseline in ("iid", "greedy") and fallback is not None:
            parent = fallback if baseline == "iid" or best is None else best
            return Selection(parent.island % k, parent, [], baseline)
        arm = self._arm(rng, best, fallback)
        if arm == BEST:
            best = walk or best
            return Selection(best.island % k, best, [], "refine")  # the greedy baseline's step, when it pays
        if arm == SEED:
            return Selection(fallback.island % k, fallback, [], "restart")  # independent sampling's, when it pays
        first = rng.randrange(k)
        island = next((j % k for j in range(first, first + k) if len(islands[j % k])), None)
        if island is None:
            if fallback is None:
                raise LookupError("the archive is empty: admit the seed candidate before selecting")
            return Selection(first, fallback, [], "seed")
        members = islands[island]
        share = draw(self._shares, rng)
        if share == 0:
            parent, source = self._exploit(islands, island, elites, rng)
        elif share == 2 and elites is not None and len(elites):
            parent, source = elites.sample(rng).candidate, "elite"
        else:
            parent, source = members.members[rng.randrange(len(members))], "explore"
        inspirations = self._inspirations(islands, island, elites, parent, rng)
        return Selection(island, parent, inspirations, source)

    def _exploit(
        self, islands: IslandModel, island: int, elites: EliteArchive | None, rng: random.Random
    ) -> tuple[Candidate, str]:
        cfg = self.config
        pop = islands[island]
        n = len(pop)
        strategy = cfg.strategy
        if strategy == "power_law":
            i = draw(_power_law_cdf(n, cfg.alpha), rng)
        elif strategy == "weighted":
            i = draw(np.cumsum(weighted_probabilities(pop.scores, pop.children, cfg.sharpness)), rng)
        elif strategy == "tournament":
            i = tournament_index(n, cfg.tournament, rng)
        elif strategy == "hill_climb":
            i = 0
        elif strategy == "pareto":
            weights = pareto_weights([c.instances for c in pop.members])
            i = draw(np.cumsum(weights), rng) if weights.sum() > 0 else 0
        elif elites is not None and len(elites):  # uniform over filled cells
            return elites.sample(rng).candidate, "exploit:uniform"
        else:
            i = rng.randrange(n)
        return pop.members[i], f"exploit:{strategy}"

    def _inspirations(
        self, islands: IslandModel, island: int, elites: EliteArchive | None, parent: Candidate, rng: random.Random
    ) -> list[Candidate]:
        cfg = self.config
        taken = {parent.id}
        out = []
        for c in islands[island].members[: cfg.top_inspirations + 1]:
            if len(out) < cfg.top_inspirations and c.id not in taken:
                out.append(c)
                taken.add(c.id)
        want = cfg.diverse_inspirations
        others = [j for j in range(len(islands)) if j != island and len(islands[j])]
        have_elites = elites is not None and len(elites) > 0
        diverse: list[Candidate] = []
        for attempt in range(4 * want):
            if len(diverse) == want or not (have_elites or others):
                break
            if have_elites and (attempt % 2 == 0 or not others):
                pick: Candidate | None = elites.sample(rng).candidate  # type: ignore[union-attr]
            else:
                pool = islands[others[rng.randrange(len(others))]].members[: len(taken) + 1]
                pick = next((c for c in pool if c.id not in taken), None)
            if pick is not None and pick.id not in taken:
                diverse.append(pick)
                taken.add(pick.id)
        return out + diverse
