"""Reward function for the key-and-door gridworld.

The evaluator calls `reward_table(transitions, layout)` once. It asks `reward(...)` for
every possible transition of the (deterministic) world and returns the numbers; the
evaluator then trains its own fixed tabular Q-learner on them and judges the learned
greedy policy on the true task: reach the goal, having picked up the key to open the door.
"""

from __future__ import annotations

import math
from collections import deque

LAYOUT: tuple[str, ...] = ()  # the world's map, set by reward_table() before any reward call
_DISTANCES: dict = {}


def maze_distance(a, b, has_key):
    """Fewest moves from cell a to cell b (row, col) through the maze, or None if unreachable.

    Walls ('#') block; the door ('D') is passable only when has_key is true.
    """
    a, b = tuple(a), tuple(b)
    if (a, b, has_key) in _DISTANCES:
        return _DISTANCES[a, b, has_key]
    seen, queue, found = {a}, deque([(a, 0)]), None
    while queue:
        (r, c), d = queue.popleft()
        if (r, c) == b:
            found = d
            break
        for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            ch = LAYOUT[n[0]][n[1]]
            if n in seen or ch == "#" or (ch == "D" and not has_key):
                continue
            seen.add(n)
            queue.append((n, d + 1))
    _DISTANCES[a, b, has_key] = found
    return found


# EVOLVE-BLOCK-START
def reward(state, action, next_state, info):
    """Reward for one step of the agent.

    state, next_state: {"pos": (row, col), "has_key": bool}
    action: "up" | "down" | "left" | "right"
    info: {"event": "move" | "bump" | "locked" | "key" | "door" | "goal",
           "done": bool, "key": (row, col), "door": (row, col), "goal": (row, col),
           "layout": tuple of strings}

    Sparse: pay only for reaching the goal.
    """
    return 1.0 if info["event"] == "goal" else 0.0
# EVOLVE-BLOCK-END


def reward_table(transitions, layout):
    """Frozen: the reward of every transition [state, action, next_state, event], in order."""
    global LAYOUT
    LAYOUT = tuple(layout)
    _DISTANCES.clear()
    marks = {ch: (r, c) for r, row in enumerate(LAYOUT) for c, ch in enumerate(row) if ch in "KDG"}
    actions = ("up", "down", "left", "right")
    out = []
    for (r, c, k), a, (r2, c2, k2), event in transitions:
        info = {"event": event, "done": event == "goal", "key": marks["K"], "door": marks["D"],
                "goal": marks["G"], "layout": LAYOUT}
        value = float(reward({"pos": (r, c), "has_key": bool(k)}, actions[a],
                             {"pos": (r2, c2), "has_key": bool(k2)}, info))
        out.append(value if math.isfinite(value) else str(value))
    return out
