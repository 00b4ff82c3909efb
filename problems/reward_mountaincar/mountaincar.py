"""MountainCar (Gymnasium's MountainCar-v0), the fixed tabular Q-learner and the true-task judge.

Trusted code, run by the evaluator. The car starts at rest in the valley, its engine is
too weak to drive up the right hill, and the task is to reach the flag (position >= 0.5)
within 200 steps by rocking back and forth. The world's own reward (-1 per step) is
replaced by the candidate's; what is judged is only whether, and how fast, the car
reaches the flag under the greedy policy the learner ends with.

The candidate's reward is a function of one transition, and the dynamics are
deterministic, so it is asked once for the reward of every (state, action) on a fine grid
of cell centres (`transitions()`); the learner then looks rewards up by the grid cell its
continuous state falls in. The learner's own table is coarser than the reward grid.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

try:
    from gymnasium.envs.classic_control.mountain_car import MountainCarEnv
except ImportError:  # the evaluator says what to install
    MountainCarEnv = None

# The learner and its budget: fixed, identical for every candidate.
SEEDS = (0, 1, 2, 3)
EPISODES = 50
MAX_STEPS = 200  # MountainCar-v0's time limit
ALPHA = 0.25
GAMMA = 0.99
EPSILON = 0.05
Q_BINS = (18, 14)  # the learner's table: position x velocity
FINE = 4  # reward grid cells per learner cell, in each dimension
STARTS = tuple(-0.6 + 0.2 * (i + 0.5) / 10 for i in range(10))  # judged start positions, at rest
REWARD_LIMIT = 1e6

LOW = (-1.2, -0.07)
HIGH = (0.6, 0.07)
GRID = (Q_BINS[0] * FINE, Q_BINS[1] * FINE)


def make_env():
    if MountainCarEnv is None:
        raise ImportError("gymnasium")
    return MountainCarEnv()


def cell(position: float, velocity: float) -> tuple[int, int]:
    """The reward-grid cell a state falls in."""
    i = int((position - LOW[0]) / (HIGH[0] - LOW[0]) * GRID[0])
    j = int((velocity - LOW[1]) / (HIGH[1] - LOW[1]) * GRID[1])
    return min(max(i, 0), GRID[0] - 1), min(max(j, 0), GRID[1] - 1)


def centre(i: int, j: int) -> tuple[float, float]:
    return (
        LOW[0] + (i + 0.5) * (HIGH[0] - LOW[0]) / GRID[0],
        LOW[1] + (j + 0.5) * (HIGH[1] - LOW[1]) / GRID[1],
    )


def transitions() -> list[list]:
    """[[position, velocity], action, [next position, next velocity], reached goal] for every
    grid cell centre and action, in table order (cell-major, then action)."""
    env = make_env()
    env.reset(seed=0)
    out = []
    for i in range(GRID[0]):
        for j in range(GRID[1]):
            p, v = centre(i, j)
            for a in range(3):
                env.state = np.array([p, v])
                obs, _, terminated, _, _ = env.step(a)
                out.append([[p, v], a, [float(obs[0]), float(obs[1])], bool(terminated)])
    return out


@dataclass(frozen=True)
class Rollout:
    seed: int
    start: float
    success: bool
    steps: int
    highest: float  # the furthest right the car got

    @property
    def score(self) -> float:
        return 1.0 - 0.5 * self.steps / MAX_STEPS if self.success else 0.0


def _greedy(row: list[float]) -> int:
    """The action with the highest value, the first on ties (as numpy's argmax)."""
    best = 0
    for a in (1, 2):
        if row[a] > row[best]:
            best = a
    return best


def _coarse(fi: int, fj: int) -> int:
    return (fi // FINE) * Q_BINS[1] + fj // FINE


def train(rewards: np.ndarray, seed: int) -> tuple[list[list[float]], dict]:
    """Tabular Q-learning on the candidate's rewards; returns Q (one row of 3 per learner
    cell) and what training saw. Plain lists: faster than numpy for rows of three."""
    env = make_env()
    rng = random.Random(seed)
    q = [[0.0, 0.0, 0.0] for _ in range(Q_BINS[0] * Q_BINS[1])]
    table = rewards.tolist()
    visits = [0] * len(table)  # how often each (cell, action) was taken
    successes = 0
    env.reset(seed=seed)
    for _ in range(EPISODES):
        obs, _ = env.reset()
        fi, fj = cell(float(obs[0]), float(obs[1]))
        for _ in range(MAX_STEPS):
            row = q[_coarse(fi, fj)]
            a = rng.randrange(3) if rng.random() < EPSILON else _greedy(row)
            obs, _, terminated, _, _ = env.step(a)
            k = (fi * GRID[1] + fj) * 3 + a
            r = table[k]
            visits[k] += 1
            ni, nj = cell(float(obs[0]), float(obs[1]))
            target = r if terminated else r + GAMMA * max(q[_coarse(ni, nj)])
            row[a] += ALPHA * (target - row[a])
            fi, fj = ni, nj
            if terminated:
                successes += 1
                break
    return q, {"visits": np.asarray(visits, dtype=np.int64).reshape(*GRID, 3), "training_successes": successes}


def judge(q: list[list[float]], seed: int) -> list[Rollout]:
    """The greedy policy from each judged start, on the true task."""
    env = make_env()
    env.reset(seed=seed)
    out = []
    for start in STARTS:
        env.state = np.array([start, 0.0])
        p, v, highest = start, 0.0, start
        for step in range(1, MAX_STEPS + 1):
            obs, _, terminated, _, _ = env.step(_greedy(q[_coarse(*cell(p, v))]))
            p, v = float(obs[0]), float(obs[1])
            highest = max(highest, p)
            if terminated:
                out.append(Rollout(seed, start, True, step, highest))
                break
        else:
            out.append(Rollout(seed, start, False, MAX_STEPS, highest))
    return out
