"""Which model to ask: bandits over the arms (model names, and "offline" when it is an arm).

The reward of a child is its normalised improvement over its parent, in [0, 1], computed
by the engine and fed back through `observe(arm, reward, cost)`. `observe` is pure
bookkeeping, so replaying it over the stored candidates in order rebuilds the exact state
after a resume; `select(rng)` draws its randomness only from the `random.Random` it is
given, so a run is reproducible from its seed.

- `ucb1`: mean reward plus `exploration * sqrt(2 ln N / n)`; untried arms first.
- `thompson`: Beta(1 + Σr, 1 + Σ(1 − r)) per arm, the largest draw wins.
- `uniform`: every arm equally often (a baseline).

With `cost_aware`, each arm's value (index or draw) is scaled by c̄ / (c_a + c̄), where c_a
is the arm's mean cost per call and c̄ the mean over all calls: improvement per dollar,
with each call charged the average cost on top, so an arm that costs nothing counts as
at most twice as efficient as an average one, and equal prices change nothing.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from ..config import Bandit as BanditConfig

PROBABILITY_DRAWS = 2000


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

    def __init__(self, arms: list[str], *, exploration: float = 1.0, cost_aware: bool = False):
        if not arms:
            raise ValueError("a bandit needs at least one arm")
        self.arms = list(arms)
        self.exploration = exploration
        self.cost_aware = cost_aware
        self.records = {arm: ArmRecord() for arm in self.arms}

    # -- feedback

    def observe(self, arm: str, reward: float, cost: float = 0.0) -> None:
        """Count one evaluated child of `arm`; unknown arms (e.g. a model since removed) are ignored."""
        record = self.records.get(arm)
        if record is None:
            return
        if not math.isfinite(reward):
            reward = 0.0
        record.calls += 1
        record.reward += min(max(reward, 0.0), 1.0)
        record.cost += max(cost, 0.0) if math.isfinite(cost) else 0.0

    # -- choice

    def select(self, rng: random.Random) -> str:
        raise NotImplementedError

    def probabilities(self) -> dict[str, float]:
        """Chance that each arm is chosen next, given the current state."""
        raise NotImplementedError

    def _cost_scale(self, arm: str) -> float:
        if not self.cost_aware:
            return 1.0
        total_calls = sum(r.calls for r in self.records.values())
        average = sum(r.cost for r in self.records.values()) / total_calls if total_calls else 0.0
        if average <= 0:
            return 1.0
        return average / (self.records[arm].mean_cost + average)

    @staticmethod
    def _argmax(values: dict[str, float], rng: random.Random) -> str:
        best = max(values.values())
        ties = [arm for arm, v in values.items() if v >= best - 1e-12]
        return ties[0] if len(ties) == 1 else rng.choice(ties)

    # -- reporting

    def state(self) -> dict[str, Any]:
        """The whole state, JSON-ready; equal after replaying the same observations."""
        return {
            "kind": self.kind,
            "exploration": self.exploration,
            "cost_aware": self.cost_aware,
            "arms": {arm: asdict(rec) for arm, rec in self.records.items()},
        }

    def stats(self) -> dict[str, dict[str, float]]:
        """Per arm: calls, mean reward, total cost and the chance of being chosen next."""
        probs = self.probabilities()
        return {
            arm: {
                "calls": rec.calls,
                "mean_reward": rec.mean_reward,
                "cost": rec.cost,
                "probability": probs[arm],
            }
            for arm, rec in self.records.items()
        }


class UCB1(ModelBandit):
    kind = "ucb1"

    def indices(self) -> dict[str, float]:
        total = sum(r.calls for r in self.records.values())
        out = {}
        for arm, rec in self.records.items():
            if rec.calls == 0:
                out[arm] = math.inf
                continue
            bonus = self.exploration * math.sqrt(2 * math.log(total) / rec.calls)
            out[arm] = (rec.mean_reward + bonus) * self._cost_scale(arm)
        return out

    def select(self, rng: random.Random) -> str:
        return self._argmax(self.indices(), rng)

    def probabilities(self) -> dict[str, float]:
        # UCB is deterministic but for ties, which are broken uniformly.
        indices = self.indices()
        best = max(indices.values())
        ties = [a for a, v in indices.items() if v >= best - 1e-12]
        return {a: (1 / len(ties) if a in ties else 0.0) for a in self.arms}


class Thompson(ModelBandit):
    kind = "thompson"

    def _draws(self, rng: random.Random) -> dict[str, float]:
        return {
            arm: rng.betavariate(1 + rec.reward, 1 + rec.calls - rec.reward) * self._cost_scale(arm)
            for arm, rec in self.records.items()
        }

    def select(self, rng: random.Random) -> str:
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

    def select(self, rng: random.Random) -> str:
        return rng.choice(self.arms)

    def probabilities(self) -> dict[str, float]:
        return {a: 1 / len(self.arms) for a in self.arms}


KINDS: dict[str, type[ModelBandit]] = {"ucb1": UCB1, "thompson": Thompson, "uniform": Uniform}


def make_bandit(config: BanditConfig, arms: list[str]) -> ModelBandit:
    """The bandit `config.kind` over `arms`."""
    return KINDS[config.kind](arms, exploration=config.exploration, cost_aware=config.cost_aware)
