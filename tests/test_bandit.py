"""Bandits over models: they find the better arm, are reproducible, and rebuild from replay;
rewards read the same whatever the score range; cost-awareness never favours a useless model."""

from __future__ import annotations

import random
import re
import statistics
from collections import deque

import pytest
import yaml
from conftest import cli

from evoengine.config import Bandit
from evoengine.llm.bandit import improvement_reward, make_bandit
from evoengine.records import Candidate

pytest_plugins = ["scripted_server"]

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


def _cheap_vs_dear(kind: str, cost_aware: bool, prices: dict[str, float], seed: int = 0) -> list[str]:
    bandit = make_bandit(Bandit(kind=kind, cost_aware=cost_aware), ["cheap", "dear"])
    rng, world = random.Random(seed), random.Random(seed + 1)
    picks = []
    for _ in range(300):
        arm = bandit.select(rng)
        picks.append(arm)
        bandit.observe(arm, 1.0 if world.random() < 0.5 else 0.0, prices[arm])
    return picks


@pytest.mark.parametrize("kind", KINDS)
def test_cost_aware_prefers_the_cheaper_of_two_equally_good_models(kind):
    shares = [
        _cheap_vs_dear(kind, True, {"cheap": 0.001, "dear": 0.05}, seed).count("cheap") / 300 for seed in range(10)
    ]
    assert statistics.mean(shares) > 0.85
    blind = [
        _cheap_vs_dear(kind, False, {"cheap": 0.001, "dear": 0.05}, seed).count("cheap") / 300 for seed in range(10)
    ]
    assert statistics.mean(blind) < 0.7  # the same arms without prices: no such preference


@pytest.mark.parametrize("kind", KINDS)
def test_without_cost_awareness_prices_do_not_change_any_choice(kind):
    assert _cheap_vs_dear(kind, False, {"cheap": 0.001, "dear": 0.05}) == _cheap_vs_dear(
        kind, False, {"cheap": 0.05, "dear": 0.001}
    )


# ---------------------------------------------------------------- a good model beside a useless one


def good_and_useless(kind: str, cost_aware: bool, seed: int, calls: int = 130, in_flight: int = 4) -> list[str]:
    """A search in miniature: parents drawn from the scores so far (half the time the latest),
    `good` improves its parent 80% of the time, `useless` never does and costs a tenth as
    much; the rewards are the engine's, and results come back `in_flight` proposals late."""
    bandit = make_bandit(Bandit(kind=kind, cost_aware=cost_aware), ["useless", "good"])
    rng, world = random.Random(seed), random.Random(seed + 1000)
    price = {"good": 0.01, "useless": 0.001}
    scores, best, waiting, picks = [0.0], 0.0, deque(), []
    while len(picks) < calls or waiting:
        while len(picks) < calls and len(waiting) < in_flight:
            arm = bandit.select(rng)
            picks.append(arm)
            waiting.append((arm, scores[-1] if world.random() < 0.5 else world.choice(scores)))
        arm, parent = waiting.popleft()
        step = abs(world.gauss(0, 1))
        score = parent + step if arm == "good" and world.random() < 0.8 else parent - step
        reward = improvement_reward(Candidate(len(scores), "", score=score, valid=True), parent, best)
        bandit.observe(arm, reward, price[arm])
        scores.append(score)
        best = max(best, score)
    return picks


@pytest.mark.parametrize("cost_aware", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_a_model_that_improves_gets_over_80_percent_of_calls_after_the_first_40(kind, cost_aware):
    for seed in range(10):
        later = good_and_useless(kind, cost_aware, seed)[40:]
        assert later.count("good") >= 0.8 * len(later), f"seed {seed}"


def test_cost_awareness_gives_no_credit_to_a_cheap_model_that_never_improves():
    bandit = make_bandit(Bandit(kind="thompson", cost_aware=True), ["good", "useless"])
    for _ in range(20):
        bandit.observe("good", 0.7, 0.05)
        bandit.observe("useless", 0.0, 0.0001)
    factors = bandit.cost_factors()
    assert factors["useless"] <= factors["good"] == 1.0
    assert bandit.probabilities()["good"] > 0.95


def test_ucb_does_not_send_every_free_slot_to_the_arm_it_is_exploring():
    bandit = make_bandit(Bandit(kind="ucb1"), ["a", "b"])
    for _ in range(30):
        bandit.observe("a", 0.8, 0.0)
    bandit.observe("b", 0.0, 0.0)  # b has one call: its exploration bonus is the largest
    picks = [bandit.select(random.Random(i)) for i in range(4)]  # four slots, no results yet
    assert picks[0] == "b" and picks.count("b") < 4
    for arm in picks:
        bandit.observe(arm, 0.0, 0.0)
    assert bandit.pending == {"a": 0, "b": 0}


# ---------------------------------------------------------------- rewards


def child(score: float | None) -> Candidate:
    return Candidate(1, "x", score=score, valid=score is not None)


def test_rewards_are_zero_unless_the_child_beats_its_parent_and_at_least_half_when_it_does():
    assert improvement_reward(child(None), 1.0, 2.0) == 0.0
    assert improvement_reward(child(1.0), 1.0, 2.0) == 0.0
    assert improvement_reward(child(0.5), 1.0, 2.0) == 0.0
    assert improvement_reward(child(1.001), 1.0, 2.0) == pytest.approx(0.5005)
    assert improvement_reward(child(1.5), 1.0, 2.0) == pytest.approx(0.75)
    assert improvement_reward(child(2.0), 1.0, 2.0) == 1.0
    assert improvement_reward(child(9.0), 1.0, 2.0) == 1.0
    assert improvement_reward(child(1.1), 1.0, 1.0) == 1.0  # a parent that is the best: any gain is a new best
    assert improvement_reward(child(0.1), None, 2.0) == 1.0  # a valid child of an invalid parent
    assert improvement_reward(child(float("nan")), 1.0, 2.0) == 0.0


@pytest.mark.parametrize("scale, shift", [(1e-6, 0.0), (1e6, 0.0), (1.0, -1e4), (0.01, 123.0)])
def test_rewards_do_not_depend_on_the_problems_score_range(scale, shift):
    for c, p, b in [(1.2, 1.0, 2.0), (3.0, 1.0, 2.0), (0.9, 1.0, 2.0), (1.5, 1.0, 1.0)]:
        moved = improvement_reward(child(c * scale + shift), p * scale + shift, b * scale + shift)
        assert moved == pytest.approx(improvement_reward(child(c), p, b))


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


# ---------------------------------------------------------------- end to end: two models behind one endpoint

FENCE = re.compile(r"```[a-z]*\n(.*?)\n```", re.S)
CONSTANTS = re.compile(r"    a = (\S+)\n    b = (\S+)\n    c = (\S+)\n")
TARGET = (1.5, -2.0, 0.75)  # tests/problems/quadratic's


def quadratic_model(improves: bool):
    """A model for tests/problems/quadratic: the good one moves (a, b, c) part of the way to the
    target (it improves every child), the useless one moves them away (it never does); both
    answer in the format the prompt asks for."""
    luck = random.Random(improves)

    def reply(request: dict) -> str:
        prompt = request["messages"][-1]["content"]
        parent = FENCE.search(prompt).group(1)
        found = CONSTANTS.search(parent)
        step = luck.uniform(0.2, 0.8) if improves else -luck.uniform(0.2, 0.8)
        values = [
            float(v) + step * (t - float(v)) + (0 if improves else luck.uniform(0.01, 0.1))
            for v, t in zip(found.groups(), TARGET, strict=True)
        ]
        new = "".join(f"    {k} = {v!r}\n" for k, v in zip("abc", values, strict=True))
        if "<<<<<<< SEARCH" in prompt:
            return f"<<<<<<< SEARCH\n{found.group(0)}=======\n{new}>>>>>>> REPLACE\n"
        return f"```python\n{parent.replace(found.group(0), new)}\n```\n"

    return reply


@pytest.mark.slow
@pytest.mark.parametrize("cost_aware", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_a_run_sends_most_calls_to_the_model_that_improves_whatever_the_prices(
    kind, cost_aware, tmp_path, scripted_server, quadratic
):
    scripted_server.script("good", quadratic_model(True)).script("useless", quadratic_model(False))
    config = {
        "extends": "default",
        "models": [
            scripted_server.model("useless", price_in=0.1, timeout_s=10.0).dump(),
            scripted_server.model("good", price_in=1.0, timeout_s=10.0).dump(),
        ],
        "concurrency": {"proposals": 4, "evaluations": 2},
        "bandit": {"kind": kind, "cost_aware": cost_aware},
    }
    path = tmp_path / "two-models.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = cli("run", str(quadratic), "-c", str(path), "--budget", "131", "--run-dir", str(tmp_path / "run"), "-q")
    assert proc.returncode == 0, proc.stderr
    asked = [call.model for call in scripted_server.calls() if call.body.get("max_tokens", 0) > 1]
    later = asked[40:]
    assert len(asked) >= 130 and later.count("good") >= 0.8 * len(later)
