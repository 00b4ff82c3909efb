"""The key-and-door gridworld, the fixed tabular Q-learner and the true-task rollouts.

Everything here is trusted code run by the evaluator. A candidate reward function never
runs here: the evaluator asks the candidate (in a child process) for the reward of every
possible transition once, then trains and judges with the table of numbers it got back.
The world is deterministic and the reward is Markov in (state, action, next state), so
that table is all a learner ever sees of the reward.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

# A 9x9 interior inside a wall border. S: start cells, K: key, D: locked door, G: goal.
LAYOUT = (
    "###########",
    "#S....#...#",
    "#.###.#.#.#",
    "#...#.#.#G#",
    "###.#.#.###",
    "#K..#.D...#",
    "#####.#.#.#",
    "#S....#.#.#",
    "#.###.#.#.#",
    "#...S.#...#",
    "###########",
)
ACTIONS = ("up", "down", "left", "right")
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))

# The learner and its budget: fixed, identical for every candidate.
SEEDS = (0, 1, 2)
EPISODES = 100
MAX_STEPS = 200
ALPHA = 0.5
GAMMA = 0.97
EPSILON = 0.1
REWARD_LIMIT = 1e6  # |reward| above this is refused (it would swamp the Q-table)

Cell = tuple[int, int]


def _find(char: str) -> list[Cell]:
    return [(r, c) for r, row in enumerate(LAYOUT) for c, ch in enumerate(row) if ch == char]


HEIGHT, WIDTH = len(LAYOUT), len(LAYOUT[0])
STARTS: tuple[Cell, ...] = tuple(_find("S"))
KEY: Cell = _find("K")[0]
DOOR: Cell = _find("D")[0]
GOAL: Cell = _find("G")[0]
WALLS = frozenset(_find("#"))


@dataclass(frozen=True)
class Transition:
    """One step of the world: from `state` by `action` to `next_state`, and what happened.

    `event` is one of: move, bump (walked into a wall, stays put), locked (walked into the
    door without the key, stays put), key (stepped onto the key and took it), door (walked
    through the open door), goal (reached the goal; the episode ends).
    """

    state: tuple[int, int, bool]  # (row, col, has_key)
    action: int
    next_state: tuple[int, int, bool]
    event: str

    @property
    def done(self) -> bool:
        return self.event == "goal"


def step(state: tuple[int, int, bool], action: int) -> Transition:
    """The world's dynamics: deterministic, four moves, the door opens only with the key."""
    r, c, has_key = state
    dr, dc = MOVES[action]
    nr, nc = r + dr, c + dc
    if (nr, nc) in WALLS:
        return Transition(state, action, state, "bump")
    if (nr, nc) == DOOR and not has_key:
        return Transition(state, action, state, "locked")
    if (nr, nc) == KEY and not has_key:
        return Transition(state, action, (nr, nc, True), "key")
    event = "goal" if (nr, nc) == GOAL else "door" if (nr, nc) == DOOR else "move"
    return Transition(state, action, (nr, nc, has_key), event)


def all_states() -> list[tuple[int, int, bool]]:
    """Every non-terminal state the agent could be in (the goal ends an episode)."""
    cells = [(r, c) for r in range(HEIGHT) for c in range(WIDTH) if (r, c) not in WALLS and (r, c) != GOAL]
    return [(r, c, k) for (r, c) in cells for k in (False, True)]


def reachable_states() -> frozenset[tuple[int, int, bool]]:
    """States an episode can actually visit from the start cells."""
    seen = {(r, c, False) for r, c in STARTS}
    queue = deque(seen)
    while queue:
        s = queue.popleft()
        for a in range(len(ACTIONS)):
            t = step(s, a)
            if not t.done and t.next_state not in seen:
                seen.add(t.next_state)
                queue.append(t.next_state)
    return frozenset(seen)


def all_transitions() -> list[Transition]:
    """Every (state, action) pair's transition, in a fixed order: the reward table's rows."""
    return [step(s, a) for s in all_states() for a in range(len(ACTIONS))]


def maze_distance(a: Cell, b: Cell, has_key: bool) -> int | None:
    """Shortest number of moves from a to b through the maze (door passable iff has_key)."""
    if a == b:
        return 0
    seen = {a}
    queue = deque([(a, 0)])
    while queue:
        (r, c), d = queue.popleft()
        for dr, dc in MOVES:
            n = (r + dr, c + dc)
            if n in seen or n in WALLS or (n == DOOR and not has_key):
                continue
            if n == b:
                return d + 1
            seen.add(n)
            queue.append((n, d + 1))
    return None


def optimal_steps(start: Cell) -> int:
    """Fewest moves from `start` to the goal, picking up the key on the way."""
    to_key = maze_distance(start, KEY, False)
    to_goal = maze_distance(KEY, GOAL, True)
    assert to_key is not None and to_goal is not None
    return to_key + to_goal


# ---------------------------------------------------------------- learning and judging


class RewardTable:
    """The candidate's rewards indexed like `all_transitions()`, with fast step lookup."""

    def __init__(self, rewards: list[float]):
        self.transitions = all_transitions()
        if len(rewards) != len(self.transitions):
            raise ValueError(f"expected {len(self.transitions)} rewards, got {len(rewards)}")
        self.rewards = rewards
        self.states = all_states()
        self.index = {s: i for i, s in enumerate(self.states)}
        n_actions = len(ACTIONS)
        # next[i][a] = index of the next state, or -1 when the step ends the episode.
        self.next = [[-1] * n_actions for _ in self.states]
        self.reward = [[0.0] * n_actions for _ in self.states]
        for t, r in zip(self.transitions, rewards, strict=True):
            i = self.index[t.state]
            self.next[i][t.action] = -1 if t.done else self.index[t.next_state]
            self.reward[i][t.action] = r


def _greedy(q_row: list[float]) -> int:
    """Index of the largest value, the first one on ties (as numpy's argmax)."""
    best, best_a = q_row[0], 0
    for a in range(1, len(q_row)):
        if q_row[a] > best:
            best, best_a = q_row[a], a
    return best_a


def train(table: RewardTable, seed: int) -> list[list[float]]:
    """Tabular Q-learning, epsilon-greedy, zero-initialised, fixed budget; returns Q."""
    rng = random.Random(seed)
    n_actions = len(ACTIONS)
    q = [[0.0] * n_actions for _ in table.states]
    starts = [table.index[(r, c, False)] for r, c in STARTS]
    nxt, rew = table.next, table.reward
    for _ in range(EPISODES):
        s = rng.choice(starts)
        for _ in range(MAX_STEPS):
            a = rng.randrange(n_actions) if rng.random() < EPSILON else _greedy(q[s])
            s2, r = nxt[s][a], rew[s][a]
            target = r if s2 < 0 else r + GAMMA * max(q[s2])
            q[s][a] += ALPHA * (target - q[s][a])
            if s2 < 0:
                break
            s = s2
    return q


@dataclass(frozen=True)
class Rollout:
    """The greedy policy's episode from one start cell, judged on the true task."""

    seed: int
    start: Cell
    success: bool
    steps: int
    got_key: bool
    path: tuple[Cell, ...]

    @property
    def score(self) -> float:
        return (1.0 - self.steps / 1000.0) if self.success else 0.0

    def describe(self) -> str:
        where = f"seed {self.seed}, start {self.start}"
        if self.success:
            return f"{where}: reached the goal in {self.steps} steps (shortest {optimal_steps(self.start)})"
        end = self.path[-1]
        loop = _loop_cells(self.path)
        stuck = f", cycling over {loop}" if loop else f", ended at {end}"
        if not self.got_key:
            return f"{where}: never picked up the key{stuck}"
        return f"{where}: took the key but never reached the goal{stuck}"


def _loop_cells(path: tuple[Cell, ...]) -> list[Cell]:
    """The cells the tail of a failed path keeps revisiting (empty if it did not loop)."""
    tail = path[-12:]
    cells = sorted(set(tail))
    return cells if len(cells) <= 4 else []


def greedy_rollout(q: list[list[float]], seed: int, start: Cell) -> Rollout:
    """Follow the greedy policy of Q from `start` with the true dynamics, MAX_STEPS at most."""
    index = {s: i for i, s in enumerate(all_states())}
    state = (start[0], start[1], False)
    path = [start]
    got_key = False
    for n in range(1, MAX_STEPS + 1):
        t = step(state, _greedy(q[index[state]]))
        got_key = got_key or t.event == "key"
        path.append(t.next_state[:2])
        if t.done:
            return Rollout(seed, start, True, n, True, tuple(path))
        state = t.next_state
    return Rollout(seed, start, False, MAX_STEPS, got_key, tuple(path))


@dataclass
class Judgement:
    """The learner's results for one reward table: a Q-table per seed and every rollout."""

    table: RewardTable
    q_tables: list[list[list[float]]]
    rollouts: list[Rollout]

    @property
    def score(self) -> float:
        return sum(r.score for r in self.rollouts) / len(self.rollouts)


def judge(rewards: list[float]) -> Judgement:
    """Train once per seed with these rewards and roll out greedily from every start."""
    table = RewardTable(rewards)
    q_tables, rollouts = [], []
    for seed in SEEDS:
        q = train(table, seed)
        q_tables.append(q)
        rollouts.extend(greedy_rollout(q, seed, start) for start in STARTS)
    return Judgement(table, q_tables, rollouts)


def shortest_path(start: Cell) -> list[Transition]:
    """The transitions of one shortest successful episode from `start` (BFS over states)."""
    first = (start[0], start[1], False)
    parent: dict[tuple[int, int, bool], Transition | None] = {first: None}
    queue = deque([first])
    while queue:
        s = queue.popleft()
        for a in range(len(ACTIONS)):
            t = step(s, a)
            if t.done:
                path = [t]
                while parent[path[-1].state] is not None:
                    path.append(parent[path[-1].state])
                return path[::-1]
            if t.next_state not in parent:
                parent[t.next_state] = t
                queue.append(t.next_state)
    raise ValueError(f"the goal cannot be reached from {start}")


def greedy_transitions(q: list[list[float]], start: Cell) -> list[Transition]:
    """The transitions the greedy policy of Q takes from `start` (MAX_STEPS at most)."""
    index = {s: i for i, s in enumerate(all_states())}
    state, out = (start[0], start[1], False), []
    for _ in range(MAX_STEPS):
        t = step(state, _greedy(q[index[state]]))
        out.append(t)
        if t.done:
            break
        state = t.next_state
    return out


def discounted_return(table: RewardTable, path: list[Transition]) -> float:
    """What the learner is maximising, summed along a path of transitions."""
    total = 0.0
    for n, t in enumerate(path):
        total += GAMMA**n * table.reward[table.index[t.state]][t.action]
    return total
