"""Reward design (Eureka-style) on Gymnasium's MountainCar: scored on the true task only.

The candidate writes `reward(obs, action, next_obs, info)`. The evaluator asks the
candidate's process, once, for the reward of every transition on a fine grid of the state
space (`reward_table`, via `call_candidate`), then trains a fixed tabular Q-learner on those
numbers with five seeds and judges each greedy policy on the true task from ten starts.
The learner, its budget, its seeds and the judging never run in the candidate's process.
"""

from __future__ import annotations

import math
import statistics
import sys
from functools import cache
from pathlib import Path

import numpy as np

from evoengine.evaluation import CandidateError, call_candidate
from evoengine.problem import EvalResult, Feature, Problem

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mountaincar as mc  # noqa: E402  (the environment, learner and judge beside this file)

MISSING_GYMNASIUM = (
    "this problem needs Gymnasium's MountainCar: pip install 'gymnasium==1.4.0' "
    "(or pip install -e '.[problems]' in an evoengine checkout)"
)
FEEDBACK_ROLLOUTS = 6

DESCRIPTION = f"""\
Design the reward function for Gymnasium's MountainCar-v0 that a fixed learner trains with.
A car starts at rest in a valley between two hills, at a position drawn from [-0.6, -0.4].
Its engine is too weak to drive straight up the right hill; it must rock back and forth to
build momentum and reach the flag at position 0.5 within {mc.MAX_STEPS} steps.

Dynamics (deterministic): velocity += (action - 1) * 0.001 - 0.0025 * cos(3 * position),
clipped to [-0.07, 0.07]; position += velocity, clipped to [-1.2, 0.6] (at -1.2 the
velocity drops to 0). Actions: 0 push left, 1 no push, 2 push right.

The learner (fixed): tabular Q-learning on an {mc.Q_BINS[0]}x{mc.Q_BINS[1]} grid of (position,
velocity), Q initialised to 0, learning rate {mc.ALPHA}, discount {mc.GAMMA}, epsilon
{mc.EPSILON}, {mc.EPISODES} episodes of at most {mc.MAX_STEPS} steps, seeds {", ".join(map(str, mc.SEEDS))}. Your reward
is looked up on a grid {mc.FINE} times finer in each dimension (each cell's reward is your
function at the cell's centre). The episode ends at the flag.

Score: mean over the {len(mc.SEEDS)} seeds x {len(mc.STARTS)} starts of (1 - 0.5 * steps/{mc.MAX_STEPS}) when
the greedy policy reaches the flag, else 0. Only the true task counts, never your reward.
The helpers height(position), speed(velocity) and energy(state) are defined above the
block. Feedback reports each named term's mean along training and what the failing
rollouts did.
"""

problem = Problem(
    name="reward_mountaincar",
    description=DESCRIPTION,
    initial="initial.py",
    language="python",
    kind="reward",
    features=(
        Feature("shaping_density", 0.0, 1.0, 10),  # share of non-goal transitions with a non-zero reward
        Feature("reward_scale", -3.0, 3.0, 12),  # log10 of the largest |reward|
    ),
    timeout_s=180.0,
    memory_mb=1024,
)


@cache
def _transitions() -> list[list]:
    return mc.transitions()


def evaluate(candidate_path: str) -> EvalResult:
    """Tabulate the candidate's reward, train the fixed learner on it, judge on the true task."""
    if mc.MountainCarEnv is None:
        return EvalResult.invalid(MISSING_GYMNASIUM)
    transitions = _transitions()
    try:
        table = call_candidate(candidate_path, "reward_table", transitions, timeout_s=60)
    except CandidateError as exc:
        return EvalResult.invalid(f"reward_table() failed: {exc}")
    rewards, error = _checked(table, transitions)
    if rewards is None:
        return EvalResult.invalid(error)
    rollouts, visits, trained = [], np.zeros((*mc.GRID, 3), dtype=np.int64), 0
    for seed in mc.SEEDS:
        q, seen = mc.train(rewards, seed)
        rollouts += mc.judge(q, seed)
        visits += seen["visits"]
        trained += seen["training_successes"]
    return _result(rollouts, rewards, table.get("terms") or {}, visits, trained)


def _checked(table: object, transitions: list[list]) -> tuple[np.ndarray | None, str]:
    rewards = table.get("rewards") if isinstance(table, dict) else None
    if not isinstance(rewards, list) or len(rewards) != len(transitions):
        return None, f"reward_table() must return {{'rewards': [{len(transitions)} numbers], ...}}"
    for value, (obs, action, next_obs, _) in zip(rewards, transitions, strict=True):
        number = value if isinstance(value, (int, float)) else float("nan")
        if not (math.isfinite(number) and abs(number) <= mc.REWARD_LIMIT):
            return None, (
                f"reward({obs}, {action}, {next_obs}) = {value!r}: rewards must be finite numbers "
                f"within ±{mc.REWARD_LIMIT:g}"
            )
    return np.asarray(rewards, dtype=float), ""


def _result(
    rollouts: list[mc.Rollout], rewards: np.ndarray, terms: dict, visits: np.ndarray, trained: int
) -> EvalResult:
    solved = [r for r in rollouts if r.success]
    goal = np.array([t[3] for t in _transitions()])
    plain = rewards[~goal]
    metrics = {
        "success_rate": len(solved) / len(rollouts),
        "mean_steps_when_solved": statistics.mean(r.steps for r in solved) if solved else float(mc.MAX_STEPS),
        "training_successes": trained / len(mc.SEEDS),
        "mean_highest_position": statistics.mean(r.highest for r in rollouts),
    }
    weights = visits.reshape(-1) / max(1, visits.sum())  # how often training took each transition
    term_means = {}
    for name, values in list(terms.items())[:8]:
        column = np.asarray(values, dtype=float) if isinstance(values, list) and len(values) == len(rewards) else None
        if column is not None and np.isfinite(column).all():
            term_means[str(name)] = float(column @ weights)
            metrics[f"term_{name}"] = term_means[str(name)]
    peak = float(np.abs(rewards).max())
    return EvalResult(
        score=statistics.mean(r.score for r in rollouts),
        metrics=metrics,
        features={
            "shaping_density": float(np.mean(plain != 0.0)) if plain.size else 0.0,
            "reward_scale": float(np.clip(math.log10(peak), -3, 3)) if peak > 0 else -3.0,
        },
        feedback=_feedback(rollouts, metrics, term_means, rewards, weights),
        instances={f"seed{r.seed}@{r.start:.2f}": r.score for r in rollouts},
    )


def _feedback(rollouts: list[mc.Rollout], metrics: dict, term_means: dict, rewards: np.ndarray, weights) -> str:
    """Eureka's reward reflection: what the agent achieved, and what each term paid along training."""
    solved = sum(r.success for r in rollouts)
    lines = [
        f"The greedy policy reached the flag in {solved}/{len(rollouts)} rollouts"
        + (f", in {metrics['mean_steps_when_solved']:.0f} steps on average." if solved else "."),
        f"During training the car reached the flag in {metrics['training_successes']:.1f} of "
        f"{mc.EPISODES} episodes per seed.",
        f"Mean reward per step along training: {float(rewards @ weights):.4g}.",
    ]
    if term_means:
        lines.append(
            "Mean of each term per step along training: " + ", ".join(f"{k} {v:.4g}" for k, v in term_means.items())
        )
    failing = [r for r in rollouts if not r.success]
    if failing:
        lines.append("Failing rollouts:")
        for r in failing[:FEEDBACK_ROLLOUTS]:
            lines.append(
                f"  seed {r.seed}, start {r.start:.2f}: did not reach the flag; furthest right {r.highest:.2f}"
            )
        if len(failing) > FEEDBACK_ROLLOUTS:
            lines.append(f"  ... and {len(failing) - FEEDBACK_ROLLOUTS} more")
    return "\n".join(lines)
