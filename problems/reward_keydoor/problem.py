"""Reward design for a key-and-door gridworld, scored only on the true task (as in Eureka).

The candidate writes `reward(state, action, next_state, info)`. Its child process is asked
once for the reward of every possible transition (the world is small and deterministic);
training, the greedy rollouts and the score all happen here, in trusted code, with those
numbers. The candidate cannot touch the learner, its budget, its seeds or the judge.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from evoengine.evaluation import CandidateError, call_candidate
from evoengine.problem import EvalResult, Feature, Problem

sys.path.insert(0, str(Path(__file__).resolve().parent))
import keydoor  # noqa: E402  (the trusted world beside this file)

CALL_TIMEOUT_S = 20.0
FEEDBACK_ROLLOUTS = 6

DESCRIPTION = f"""\
Design a reward function for a gridworld. A fixed tabular Q-learner trains with your
reward; the score measures only whether the learned greedy policy solves the real task.

The world ({keydoor.HEIGHT}x{keydoor.WIDTH} with its wall border; row 0 is the top, (row, col) cells):

{chr(10).join("    " + row for row in keydoor.LAYOUT)}

'#' wall, 'S' start cells, 'K' key, 'D' door, 'G' goal. Actions: up, down, left, right.
Walking into a wall leaves the agent in place (event "bump"); walking into the door
without the key also leaves it in place ("locked"). Stepping onto the key takes it
("key"); with the key the door is passable ("door" each time the agent enters it).
Reaching G ends the episode ("goal"). Otherwise the event is "move". Dynamics are
deterministic; the state is (position, has_key).

Write `reward(state, action, next_state, info) -> float`:
  state, next_state: {{"pos": (row, col), "has_key": bool}}
  action: "up" | "down" | "left" | "right"
  info: {{"event": ..., "done": bool, "key": (row, col), "door": (row, col),
         "goal": (row, col), "layout": tuple of row strings}}
The helper `maze_distance(a, b, has_key)` (outside the editable block) gives shortest
move counts through the maze, or None when b cannot be reached. The reward must be a
function of its arguments only: it is tabulated once per transition, so counters or
other state kept between calls have no effect.

The learner (fixed, out of your reach): Q-learning, Q initialised to 0, greedy ties
broken towards the first action (up, down, left, right), epsilon = {keydoor.EPSILON},
learning rate {keydoor.ALPHA}, discount {keydoor.GAMMA}, {keydoor.EPISODES} episodes of at
most {keydoor.MAX_STEPS} steps, each starting at a random S cell, seeds {list(keydoor.SEEDS)}.

Score: for each seed and each start cell, the greedy policy is rolled out for at most
{keydoor.MAX_STEPS} steps; a rollout that reaches the goal scores 1 - steps/1000, any other
scores 0. The score is the mean over all {len(keydoor.SEEDS) * len(keydoor.STARTS)} rollouts.
Feedback gives reward statistics per event and what the failing rollouts did.
Beware rewards the learner can farm: anything that pays for standing still or for
re-entering the same cell is what the agent will learn to do.
"""

problem = Problem(
    name="reward_keydoor",
    description=DESCRIPTION,
    initial="initial.py",
    language="python",
    kind="reward",
    features=(
        # Share of plain moves with a non-zero reward: 0 = sparse, 1 = densely shaped.
        Feature("shaping_density", 0.0, 1.0, 10),
        # log10 of the largest |reward| (clipped): how loud the reward is.
        Feature("reward_scale", -2.0, 3.0, 10),
    ),
    timeout_s=60.0,
    memory_mb=1024,
)


def evaluate(candidate_path: str) -> EvalResult:
    """Tabulate the candidate's reward in a child process, then train and judge here."""
    transitions = keydoor.all_transitions()
    payload = [[list(t.state), t.action, list(t.next_state), t.event] for t in transitions]
    try:
        value = call_candidate(candidate_path, "reward_table", payload, list(keydoor.LAYOUT), timeout_s=CALL_TIMEOUT_S)
    except CandidateError as exc:
        return EvalResult.invalid(f"reward() failed while tabulating the transitions: {exc}")
    try:
        rewards = parse_rewards(value, transitions)
    except ValueError as exc:
        return EvalResult.invalid(str(exc))
    return score_rewards(rewards)


def parse_rewards(value: Any, transitions: list[keydoor.Transition]) -> list[float]:
    """Check the returned table: one finite, bounded number per transition."""
    if not isinstance(value, list) or len(value) != len(transitions):
        got = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
        raise ValueError(f"reward_table() must return {len(transitions)} numbers, got {got}")
    rewards = []
    for t, v in zip(transitions, value, strict=True):
        r = float(v) if isinstance(v, (int, float)) else math.nan
        if not math.isfinite(r) or abs(r) > keydoor.REWARD_LIMIT:
            raise ValueError(
                f"reward({_state(t.state)}, {keydoor.ACTIONS[t.action]!r}, ...) with event "
                f"{t.event!r} returned {v!r}: rewards must be finite numbers within "
                f"±{keydoor.REWARD_LIMIT:g}"
            )
        rewards.append(r)
    return rewards


def score_rewards(rewards: list[float]) -> EvalResult:
    """Train the fixed learner with this reward table and score the true task."""
    judgement = keydoor.judge(rewards)
    rollouts = judgement.rollouts
    successes = [r for r in rollouts if r.success]
    by_event = _event_stats(judgement.table)
    moves = [r for t, r in zip(judgement.table.transitions, rewards, strict=True) if t.event == "move"]
    metrics = {
        "success_rate": len(successes) / len(rollouts),
        "key_rate": sum(r.got_key for r in rollouts) / len(rollouts),
        "mean_steps_when_solved": statistics.mean(r.steps for r in successes) if successes else 0.0,
        **{f"reward_mean_{event}": stats[0] for event, stats in by_event.items()},
    }
    largest = max(abs(r) for r in rewards)
    features = {
        "shaping_density": sum(r != 0 for r in moves) / len(moves),
        "reward_scale": min(3.0, max(-2.0, math.log10(largest))) if largest > 0 else -2.0,
    }
    return EvalResult(
        score=judgement.score,
        metrics=metrics,
        features=features,
        feedback=_feedback(judgement, by_event),
        instances={f"seed{r.seed}@{r.start[0]},{r.start[1]}": r.score for r in rollouts},
    )


def _state(s: tuple[int, int, bool]) -> str:
    return f"{{'pos': ({s[0]}, {s[1]}), 'has_key': {s[2]}}}"


def _event_stats(table: keydoor.RewardTable) -> dict[str, tuple[float, float, float, int]]:
    """Mean, min, max and count of the reward per event type, over every transition."""
    groups: dict[str, list[float]] = defaultdict(list)
    for t, r in zip(table.transitions, table.rewards, strict=True):
        groups[t.event].append(r)
    order = ("move", "bump", "locked", "key", "door", "goal")
    return {e: (statistics.mean(groups[e]), min(groups[e]), max(groups[e]), len(groups[e])) for e in order if groups[e]}


def _loop_warnings(table: keydoor.RewardTable) -> list[str]:
    """Rewards the learner can farm: staying put, or stepping back and forth, that pays."""
    lines = []
    reachable = keydoor.reachable_states()
    stays = [
        (t, r)
        for t, r in zip(table.transitions, table.rewards, strict=True)
        if t.next_state == t.state and r > 0 and t.state in reachable
    ]
    if stays:
        t, r = max(stays, key=lambda tr: tr[1])
        lines.append(
            f"Warning: {len(stays)} moves into a wall or the locked door pay a positive reward "
            f"(up to {r:+.4g}, e.g. {keydoor.ACTIONS[t.action]} at {t.state[:2]}): the learner is "
            f"paid to stand still."
        )
    loops = []
    for t, r in zip(table.transitions, table.rewards, strict=True):
        if t.done or t.next_state == t.state or t.state not in reachable:
            continue
        back = table.index[t.next_state]
        for a, r2 in enumerate(table.reward[back]):
            if table.next[back][a] == table.index[t.state] and r + r2 > 1e-9 and t.state < t.next_state:
                loops.append((r + r2, t))
    if loops:
        gain, t = max(loops, key=lambda lt: lt[0])
        lines.append(
            f"Warning: {len(loops)} back-and-forth moves pay a positive total (up to {gain:+.4g} per "
            f"round trip, e.g. {t.state[:2]} <-> {t.next_state[:2]} with has_key={t.state[2]}): "
            f"the learner can farm them instead of finishing."
        )
    return lines


def _feedback(judgement: keydoor.Judgement, by_event: dict[str, tuple[float, float, float, int]]) -> str:
    rollouts = judgement.rollouts
    solved = sum(r.success for r in rollouts)
    lines = [f"{solved}/{len(rollouts)} greedy rollouts reached the goal; score {judgement.score:.4f}."]
    lines.append("Reward per event over all transitions (mean [min, max], count):")
    for event, (mean, lo, hi, n) in by_event.items():
        lines.append(f"  {event:<6} {mean:+.4g} [{lo:+.4g}, {hi:+.4g}] x{n}")
    lines += _loop_warnings(judgement.table)
    failures = [r for r in rollouts if not r.success]
    if failures:
        lines.append("Failing rollouts:")
        lines += [f"  {r.describe()}" for r in failures[:FEEDBACK_ROLLOUTS]]
        if len(failures) > FEEDBACK_ROLLOUTS:
            lines.append(f"  ... and {len(failures) - FEEDBACK_ROLLOUTS} more")
        first = failures[0]
        q = judgement.q_tables[keydoor.SEEDS.index(first.seed)]
        greedy = keydoor.greedy_transitions(q, first.start)
        best = keydoor.shortest_path(first.start)
        ret_greedy = keydoor.discounted_return(judgement.table, greedy)
        ret_best = keydoor.discounted_return(judgement.table, best)
        lines.append(
            f"From {first.start} (seed {first.seed}) your reward's discounted return is "
            f"{ret_best:+.4g} along a shortest solution ({len(best)} steps) and {ret_greedy:+.4g} "
            f"along what the agent learned to do."
            + (
                " The reward prefers the failure: change it so that solving pays more."
                if ret_greedy >= ret_best
                else " Solving pays more, but the learner did not find it within its budget: "
                "give it a denser signal that points through the key and the door."
            )
        )
    else:
        mean_steps = statistics.mean(r.steps for r in rollouts)
        lines.append(f"Every rollout solved the task in {mean_steps:.1f} steps on average; fewer steps score higher.")
    return "\n".join(lines)
