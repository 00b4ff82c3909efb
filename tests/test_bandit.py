"""Bandits over models: they find the better arm, are reproducible, and rebuild from replay."""

from __future__ import annotations

import random

import pytest

from evoengine.config import Bandit
from evoengine.llm.bandit import make_bandit

KINDS = ["ucb1", "thompson"]


def play(kind: str, chances: dict[str, float], rounds: int, seed: int = 0, **options):
    """Run a bandit against Bernoulli arms; returns it and the log of (arm, reward, cost)."""
    bandit = make_bandit(Bandit(kind=kind, **options), list(chances))
    rng, world = random.Random(seed), random.Random(seed + 1)
    history = []
    for _ in range(rounds):
        arm = bandit.select(rng)
        reward = 1.0 if world.random() < chances[arm] else 0.0
        bandit.observe(arm, reward, 0.001)
        history.append((arm, reward, 0.001))
    return bandit, history


@pytest.mark.parametrize("kind", KINDS)
def test_the_better_arm_gets_most_calls(kind):
    bandit, history = play(kind, {"weak": 0.15, "strong": 0.6}, 200, exploration=0.5)
    picks = [arm for arm, _, _ in history]
    assert picks.count("strong") > 0.7 * len(picks)
    assert bandit.stats()["strong"]["probability"] > 0.5


def test_uniform_spreads_calls_evenly_whatever_the_rewards():
    _, history = play("uniform", {"a": 0.9, "b": 0.0, "c": 0.1}, 600)
    counts = [sum(1 for arm, _, _ in history if arm == x) for x in "abc"]
    assert all(150 < n < 250 for n in counts)


@pytest.mark.parametrize("kind", ["ucb1", "thompson", "uniform"])
def test_state_rebuilt_by_replaying_observations_equals_the_live_state(kind):
    live, history = play(kind, {"a": 0.3, "b": 0.5, "offline": 0.2}, 120, cost_aware=True)
    rebuilt = make_bandit(Bandit(kind=kind, cost_aware=True), ["a", "b", "offline"])
    for arm, reward, cost in history:
        rebuilt.observe(arm, reward, cost)
    assert rebuilt.state() == live.state()
    assert rebuilt.stats() == live.stats()
    rng1, rng2 = random.Random(7), random.Random(7)
    assert [live.select(rng1) for _ in range(20)] == [rebuilt.select(rng2) for _ in range(20)]


@pytest.mark.parametrize("kind", ["ucb1", "thompson", "uniform"])
def test_the_same_seed_gives_the_same_choices_and_the_global_random_is_untouched(kind):
    random.seed(123)
    before = random.getstate()
    _, first = play(kind, {"a": 0.4, "b": 0.5}, 80, seed=3)
    _, second = play(kind, {"a": 0.4, "b": 0.5}, 80, seed=3)
    bandit, _ = play(kind, {"a": 0.4, "b": 0.5}, 5, seed=3)
    bandit.stats()
    assert first == second
    assert random.getstate() == before


def _cheap_vs_dear(kind: str, cost_aware: bool, prices: dict[str, float]) -> list[str]:
    bandit = make_bandit(Bandit(kind=kind, cost_aware=cost_aware, exploration=0.3), ["cheap", "dear"])
    rng, world = random.Random(0), random.Random(1)
    picks = []
    for _ in range(300):
        arm = bandit.select(rng)
        picks.append(arm)
        bandit.observe(arm, 1.0 if world.random() < 0.5 else 0.0, prices[arm])
    return picks


@pytest.mark.parametrize("kind", KINDS)
def test_cost_aware_prefers_the_cheaper_of_two_equally_good_models(kind):
    picks = _cheap_vs_dear(kind, True, {"cheap": 0.001, "dear": 0.05})
    assert picks.count("cheap") > 0.85 * len(picks)


@pytest.mark.parametrize("kind", KINDS)
def test_without_cost_awareness_prices_do_not_change_any_choice(kind):
    assert _cheap_vs_dear(kind, False, {"cheap": 0.001, "dear": 0.05}) == _cheap_vs_dear(
        kind, False, {"cheap": 0.05, "dear": 0.001}
    )


def test_stats_report_calls_mean_reward_cost_and_probabilities():
    bandit = make_bandit(Bandit(kind="thompson"), ["a", "b"])
    for reward in (1.0, 0.5, 0.0, 1.0):
        bandit.observe("a", reward, 0.25)
    stats = bandit.stats()
    assert stats["a"]["calls"] == 4 and stats["a"]["mean_reward"] == pytest.approx(0.625)
    assert stats["a"]["cost"] == pytest.approx(1.0)
    assert stats["b"] == {"calls": 0, "mean_reward": 0.0, "cost": 0.0, "probability": stats["b"]["probability"]}
    assert sum(s["probability"] for s in stats.values()) == pytest.approx(1.0)


def test_ucb_tries_every_arm_before_repeating_one():
    bandit = make_bandit(Bandit(kind="ucb1"), ["a", "b", "c"])
    rng = random.Random(0)
    seen = []
    for _ in range(3):
        arm = bandit.select(rng)
        seen.append(arm)
        bandit.observe(arm, 1.0, 0.0)
    assert sorted(seen) == ["a", "b", "c"]
    untried = make_bandit(Bandit(kind="ucb1"), ["a", "b"])
    untried.observe("a", 1.0)
    assert untried.stats()["b"]["probability"] == 1.0


def test_out_of_range_rewards_are_clipped_and_unknown_arms_ignored():
    bandit = make_bandit(Bandit(kind="ucb1"), ["a"])
    bandit.observe("a", 5.0, 0.1)
    bandit.observe("a", -3.0, 0.1)
    bandit.observe("a", float("nan"), 0.1)
    bandit.observe("removed-model", 1.0, 1.0)
    assert bandit.stats()["a"]["mean_reward"] == pytest.approx(1 / 3)
    assert set(bandit.state()["arms"]) == {"a"}
