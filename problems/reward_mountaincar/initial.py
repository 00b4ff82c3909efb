"""Reward function for MountainCar (Gymnasium's MountainCar-v0).

The evaluator calls `reward_table(transitions)` once: it asks `reward(...)` for every
transition on a fine grid of the state space and returns the numbers (and the named
terms, for the feedback). A fixed tabular Q-learner then trains on them, and its greedy
policy is judged on the true task only: reach the flag within 200 steps.
"""

from __future__ import annotations

import math

GOAL_POSITION = 0.5
MAX_SPEED = 0.07
GRAVITY = 0.0025


def height(position):
    """Height of the track at `position`, scaled to 0 (valley floor) .. 1 (hill tops)."""
    return (math.sin(3 * position) + 1) / 2


def speed(velocity):
    """|velocity| as a share of the top speed, 0 .. 1."""
    return abs(velocity) / MAX_SPEED


def energy(state):
    """Mechanical energy of (position, velocity); 1 = just enough to coast up to the flag."""
    position, velocity = state
    potential = GRAVITY / 3 * (math.sin(3 * position) + 1)
    return (potential + 0.5 * velocity**2) / (GRAVITY / 3 * (math.sin(3 * GOAL_POSITION) + 1))


# EVOLVE-BLOCK-START
def reward(obs, action, next_obs, info):
    """Reward for one step: obs and next_obs are (position, velocity); action is 0 (push
    left), 1 (no push) or 2 (push right); info["goal"] says whether next_obs reached the flag.

    Return the reward, or (reward, {name: term}) to have each term reported in the feedback.
    """
    position, velocity = next_obs
    terms = {
        "goal": 1.0 * info["goal"],  # the true task: the flag is reached
        "step": 0.0,  # a cost (or pay) per step
        "height": 0.0 * height(position),  # being high on either hill
        "speed": 0.0 * speed(velocity),  # moving fast
        "energy": 0.0 * (1.0 * energy(next_obs) - energy(obs)),  # energy gained this step
    }
    return sum(terms.values()), terms
# EVOLVE-BLOCK-END


def reward_table(transitions):
    """Frozen: the reward (and its named terms) of every [obs, action, next_obs, goal]."""
    rewards, terms = [], {}
    for index, (obs, action, next_obs, goal) in enumerate(transitions):
        value = reward(tuple(obs), action, tuple(next_obs), {"goal": goal})
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
            value, parts = value
            for name, term in list(parts.items())[:8]:
                terms.setdefault(str(name), [0.0] * len(transitions))[index] = float(term)
        value = float(value)
        rewards.append(value if math.isfinite(value) else str(value))
    return {"rewards": rewards, "terms": terms}
