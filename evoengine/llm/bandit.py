"""Which model to ask: bandits over the arms (model names, and "offline" when it is an arm).

The reward of a child is `improvement_reward(...)`, in [0, 1], fed back through
`observe(arm, reward, cost)`. Half of it is a plain "did the child beat its parent", so it
reads the same whatever the problem's score range: an arm that improves most of its
children has a mean reward above 0.5, one that never does has 0, and the bandit separates
them within a few dozen calls. `observe` is pure bookkeeping, so replaying it over the
closed proposals in closing order rebuilds the exact state after a resume; `select(rng)`
draws its randomness only from the `random.Random` it is given, so a run is reproducible
from its seed.

- `ucb1`: mean reward plus `exploration * sqrt(2 ln N / n)`; untried arms first.
- `thompson`: Beta(1 + Σr, 1 + Σ(1 − r)) per arm, the largest draw wins.
- `uniform`: every arm equally often (a baseline).

Several proposals are in flight at once, and their rewards arrive later. `select` counts
the arm it picks as pending until `observe` reports on it, and UCB's exploration bonus
counts pending calls as made: one exploratory pick of an arm is not repeated on every
slot that frees before its first result comes back. Pending counts are not state: every
proposal is closed by an `observe`, and a resumed run starts with none in flight.

With `cost_aware`, each arm's reward estimate (UCB's mean, Thompson's draw; never UCB's
exploration bonus) is multiplied by `cheapest / charge`, where an arm's charge is its
mean cost per call plus the mean over all calls (so a free arm counts as at most twice as
efficient as an average one, and equal prices change nothing). An arm that has not
improved anything yet is charged as the dearest arm: being cheap never makes an arm that
earns nothing look better.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from ..config import Bandit as BanditConfig
from ..records import Candidate

PROBABILITY_DRAWS = 2000
IMPROVED = 0.5  # the reward of any improvement, before its size is counted


def improvement_reward(child: Candidate, parent_score: float | None, best_score: float | None) -> float:
    """The reward of a child, in [0, 1]: 0 if it is invalid or no better than its parent;
    otherwise `IMPROVED` plus the rest in proportion to how much of its parent's gap to the
    run's best (`best_score`, before this child) it closed, so 1.0 for a child that matches
    or beats the best. A valid child of an invalid parent (`parent_score` None) earns 1.0.
    """
    if not child.valid or child.score is None or not math.isfinite(child.score):
        return 0.0
    if parent_score is None:
        return 1.0
    gain = child.score - parent_score
    if not gain > 0:
        return 0.0
    gap = (best_score if best_score is not None else parent_score) - parent_score
    closed = gain / gap if gap > 0 else 1.0
    return IMPROVED + (1.0 - IMPROVED) * min(1.0, closed)


@dataclass
class ArmRecord:
    """Everything observed about one arm."""

    calls: int = 0
    reward: float = 0.0  # sum of rewards
    cost: float = 0.0  # sum of costs in USD

    @property
    def mean_reward(self) -> float:
        return self.reward / self.calls if self.calls else 0.0

    @property
    def mean_cost(self) -> float:
        return self.cost / self.calls if self.calls else 0.0


class ModelBandit:
    """Base: bookkeeping, cost scaling and stats; subclasses choose."""

    kind = "base"

    def __init__(self, arms: list[str], *, exploration: float = 0.5, cost_aware: bool = False):
        if not arms:
            raise ValueError("a bandit needs at least one arm")
        self.arms = list(arms)
        self.exploration = exploration
        self.cost_aware = cost_aware
        self.records = {arm: ArmRecord() for arm in self.arms}
        self.pending = dict.fromkeys(self.arms, 0)  # picked, not yet observed

    def observe(self, arm: str, reward: float, cost: float = 0.0) -> None:
        """Count one closed proposal of `arm`; unknown arms (e.g. a model since removed) are ignored."""
        record = self.records.get(arm)
        if record is None:
            return
        self.pending[arm] = max(0, self.pending[arm] - 1)
        if not math.isfinite(reward):
            reward = 0.0
        record.calls += 1
        record.reward += min(max(reward, 0.0), 1.0)
        record.cost += max(cost, 0.0) if math.isfinite(cost) else 0.0

    def select(self, rng: random.Random) -> str:
        arm = self._choose(rng)
        self.pending[arm] += 1
        return arm

    def _choose(self, rng: random.Random) -> str:
        raise NotImplementedError

    def probabilities(self) -> dict[str, float]:
        """Chance that each arm is chosen next, given the current state."""
        raise NotImplementedError

    def cost_factors(self) -> dict[str, float]:
        """What each arm's reward estimate is multiplied by (all 1.0 without `cost_aware`)."""
        total_calls = sum(r.calls for r in self.records.values())
        average = sum(r.cost for r in self.records.values()) / total_calls if total_calls else 0.0
        if not self.cost_aware or average <= 0:
            return dict.fromkeys(self.arms, 1.0)
        charge = {arm: rec.mean_cost + average for arm, rec in self.records.items()}
        dearest = max(charge.values())
        charge = {arm: (c if self.records[arm].reward > 0 else dearest) for arm, c in charge.items()}
        cheapest = min(charge.values())
        return {arm: cheapest / c for arm, c in charge.items()}

    @staticmethod
    def _best(values: dict[str, float]) -> list[str]:
        """The arms with the largest value (ties within 1e-12)."""
        best = max(values.values())
        return [arm for arm, v in values.items() if v >= best - 1e-12]

    def _argmax(self, values: dict[str, float], rng: random.Random) -> str:
        ties = self._best(values)
        return ties[0] if len(ties) == 1 else rng.choice(ties)

    def state(self) -> dict[str, Any]:
        """The whole state, JSON-ready; equal after replaying the same observations."""
        return {
            "kind": self.kind,
            "exploration": self.exploration,
            "cost_aware": self.cost_aware,
            "arms": {arm: asdict(rec) for arm, rec in self.records.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Set the records to a `state()` taken earlier (arms it does not name start empty)."""
        for arm, record in state["arms"].items():
            if arm in self.records:
                self.records[arm] = ArmRecord(**record)

    def stats(self) -> dict[str, dict[str, float]]:
        """Per arm: calls, mean reward, total cost and the chance of being chosen next."""
        probs = self.probabilities()
        return {
            arm: {"calls": rec.calls, "mean_reward": rec.mean_reward, "cost": rec.cost, "probability": probs[arm]}
            for arm, rec in self.records.items()
        }


class UCB1(ModelBandit):
    kind = "ucb1"

    def indices(self) -> dict[str, float]:
        made = {arm: rec.calls + self.pending[arm] for arm, rec in self.records.items()}
        total = sum(made.values())
        factors = self.cost_factors()
        out = {}
        for arm, rec in self.records.items():
            if made[arm] == 0:
                out[arm] = math.inf
                continue
            bonus = self.exploration * math.sqrt(2 * math.log(total) / made[arm])
            out[arm] = rec.mean_reward * factors[arm] + bonus
        return out

    def _choose(self, rng: random.Random) -> str:
        return self._argmax(self.indices(), rng)

    def probabilities(self) -> dict[str, float]:
        ties = self._best(self.indices())  # UCB is deterministic but for ties, broken uniformly
        return {a: (1 / len(ties) if a in ties else 0.0) for a in self.arms}


class Thompson(ModelBandit):
    kind = "thompson"

    def _draws(self, rng: random.Random) -> dict[str, float]:
        factors = self.cost_factors()
        return {
            arm: rng.betavariate(1 + rec.reward, 1 + rec.calls - rec.reward) * factors[arm]
            for arm, rec in self.records.items()
        }

    def _choose(self, rng: random.Random) -> str:
        return self._argmax(self._draws(rng), rng)

    def probabilities(self) -> dict[str, float]:
        # Estimated by sampling with a private fixed-seed generator: deterministic, and the
        # run's own generator is not touched.
        rng = random.Random(0)
        wins = dict.fromkeys(self.arms, 0)
        for _ in range(PROBABILITY_DRAWS):
            draws = self._draws(rng)
            wins[max(draws, key=draws.__getitem__)] += 1
        return {a: wins[a] / PROBABILITY_DRAWS for a in self.arms}


class Uniform(ModelBandit):
    kind = "uniform"

    def _choose(self, rng: random.Random) -> str:
        return rng.choice(self.arms)

    def probabilities(self) -> dict[str, float]:
        return {a: 1 / len(self.arms) for a in self.arms}


KINDS: dict[str, type[ModelBandit]] = {"ucb1": UCB1, "thompson": Thompson, "uniform": Uniform}


def make_bandit(config: BanditConfig, arms: list[str]) -> ModelBandit:
    """The bandit `config.kind` over `arms`."""
    return KINDS[config.kind](arms, exploration=config.exploration, cost_aware=config.cost_aware)
