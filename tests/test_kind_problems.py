"""The bundled problems of the non-program kinds: a prompt, a reward function, an agent harness.

Each must load, score its seed at the documented baseline, score a better candidate
clearly higher, and give a candidate no way to win by gaming the measurement.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evoengine.problem import EvalResult, load_problem

REPO = Path(__file__).resolve().parent.parent
PROBLEMS = REPO / "problems"


def with_block(seed: Path, block: str, dest: Path) -> Path:
    """The seed file with the content of its EVOLVE-BLOCK replaced by `block`."""
    text = seed.read_text()
    start = text.index("# EVOLVE-BLOCK-START\n") + len("# EVOLVE-BLOCK-START\n")
    end = text.index("# EVOLVE-BLOCK-END")
    dest.write_text(text[:start] + textwrap.dedent(block).strip("\n") + "\n" + text[end:])
    return dest


def evaluate(name: str, candidate: Path | None = None) -> EvalResult:
    loaded = load_problem(PROBLEMS / name)
    result = loaded.evaluate(str(candidate or loaded.problem.initial_path))
    return EvalResult.coerce(result)


@pytest.mark.parametrize(
    "name,kind,language",
    [
        ("prompt_triage", "prompt", "text"),
        ("reward_keydoor", "reward", "python"),
        ("harness_oracle", "harness", "python"),
    ],
)
def test_each_new_kind_problem_loads_with_its_kind_and_a_readme(name, kind, language):
    loaded = load_problem(PROBLEMS / name)
    assert (loaded.problem.kind, loaded.problem.language) == (kind, language)
    assert loaded.problem.initial_path.is_file()
    readme = (PROBLEMS / name / "README.md").read_text()
    assert f"evoengine run problems/{name} --budget 100" in readme


# ---------------------------------------------------------------- prompt: ticket triage

GOOD_PROMPT = """\
You are a customer support assistant. Classify the customer's ticket into exactly one label:
billing, refund, technical, account, shipping, cancellation or feedback.
- billing: questions about invoices, receipts, prices, taxes and payment methods.
- refund: the customer wants money back, for example after a double charge or a returned item.
- technical: bugs, crashes, errors and slow or blank pages.
- account: log-in problems, passwords, two-factor codes, usernames and profile details.
- shipping: delivery, tracking and courier problems.
- cancellation: ending a subscription, stopping a renewal, or closing or deleting the account.
- feedback: suggestions, feature requests and compliments.
If the customer cancels and also asks for a refund, choose cancellation.
A hacked account, an unauthorised log-in or a suspicious security e-mail is an account issue.
Damaged or wrong items the customer wants replaced or exchanged are shipping.
Reply with only the label, no explanation.
"""


def test_prompt_seed_is_weak_and_feedback_names_what_the_prompt_lacks():
    result = evaluate("prompt_triage")
    assert result.valid and result.score == pytest.approx(0.375)
    assert result.metrics["heldout_accuracy"] == pytest.approx(0.3)
    assert len(result.instances) == 40 and set(result.instances.values()) <= {0.0, 1.0}
    assert "t01" in result.feedback and "never names the label 'refund'" in result.feedback


def test_prompt_with_label_definitions_and_rules_scores_clearly_higher(tmp_path):
    path = tmp_path / "prompt.txt"
    path.write_text(GOOD_PROMPT)
    result = evaluate("prompt_triage", path)
    assert result.score == pytest.approx(1.0)
    assert result.metrics["heldout_accuracy"] >= 0.95


def test_prompt_misleading_rules_and_overlong_prompts_lose_accuracy(tmp_path):
    trap = tmp_path / "trap.txt"
    trap.write_text(GOOD_PROMPT + "Anything that mentions money or a payment is billing.\n")
    assert evaluate("prompt_triage", trap).score < 0.8
    long = tmp_path / "long.txt"
    long.write_text("Please be helpful and kind. " * 80 + GOOD_PROMPT)
    result = evaluate("prompt_triage", long)
    assert result.score < 0.5 and "stopped reading" in result.feedback


def test_prompt_copied_training_tickets_help_training_not_heldout(tmp_path):
    seed = (PROBLEMS / "prompt_triage" / "initial.txt").read_text()
    tickets = json.loads((PROBLEMS / "prompt_triage" / "tickets.json").read_text())
    shots = "".join(f'"{t["text"]}" -> {t["label"]}\n' for t in tickets if t["split"] == "train")
    path = tmp_path / "shots.txt"
    path.write_text(seed + "Examples:\n" + shots[:1500])
    result = evaluate("prompt_triage", path)
    base = evaluate("prompt_triage")
    assert result.score > base.score + 0.2
    assert result.metrics["heldout_accuracy"] < result.score - 0.2


def test_prompt_vocabulary_holds_the_lines_that_fix_the_seed_and_some_that_hurt(tmp_path):
    lines = [
        ln
        for ln in (PROBLEMS / "prompt_triage" / "vocabulary.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    traps = {ln for ln in lines if ln.startswith(("Anything", "Any problem", "If the customer is angry"))}
    seed = (PROBLEMS / "prompt_triage" / "initial.txt").read_text()
    helpful = tmp_path / "helpful.txt"
    helpful.write_text(seed + "\n".join(ln for ln in lines if ln not in traps) + "\n")
    everything = tmp_path / "everything.txt"
    everything.write_text(seed + "\n".join(lines) + "\n")
    assert evaluate("prompt_triage", helpful).score == pytest.approx(1.0)
    assert evaluate("prompt_triage", everything).score < 0.8


# ---------------------------------------------------------------- reward: key and door

HONEST_REWARD = """
def reward(state, action, next_state, info):
    def potential(s):
        if s["has_key"]:
            d = maze_distance(s["pos"], info["goal"], True)
        else:
            to_key = maze_distance(s["pos"], info["key"], False)
            d = None if to_key is None else to_key + maze_distance(info["key"], info["goal"], True)
        return -(50 if d is None else d)
    return potential(next_state) - potential(state) + (10.0 if info["done"] else 0.0) - 0.01
"""

GAMING_REWARD = """
def reward(state, action, next_state, info):
    def distance(s):  # straight towards the goal, ignoring the key and the door
        return abs(s["pos"][0] - info["goal"][0]) + abs(s["pos"][1] - info["goal"][1])
    return distance(state) - distance(next_state) + (10.0 if info["done"] else 0.0)
"""


def test_reward_seed_sparse_reward_scores_zero():
    result = evaluate("reward_keydoor")
    assert result.valid and result.score == 0.0
    assert len(result.instances) == 9
    assert "never picked up the key" in result.feedback


def test_reward_key_aware_shaping_solves_the_task(tmp_path):
    seed = PROBLEMS / "reward_keydoor" / "initial.py"
    result = evaluate("reward_keydoor", with_block(seed, HONEST_REWARD, tmp_path / "honest.py"))
    assert result.score > 0.9 and result.metrics["success_rate"] == 1.0


def test_reward_that_ignores_the_key_scores_below_the_honest_one(tmp_path):
    seed = PROBLEMS / "reward_keydoor" / "initial.py"
    gaming = evaluate("reward_keydoor", with_block(seed, GAMING_REWARD, tmp_path / "gaming.py"))
    honest = evaluate("reward_keydoor", with_block(seed, HONEST_REWARD, tmp_path / "honest.py"))
    assert gaming.valid and gaming.score == 0.0 < honest.score
    assert gaming.metrics["key_rate"] == 0.0


def test_reward_that_patches_the_learner_in_its_own_process_changes_nothing(tmp_path):
    seed = PROBLEMS / "reward_keydoor" / "initial.py"
    tamper = """
    import sys
    for module in list(sys.modules.values()):
        if hasattr(module, "judge") and hasattr(module, "EPISODES"):
            module.EPISODES = 5000
            module.judge = lambda rewards: None

    def reward(state, action, next_state, info):
        return 1.0 if info["event"] == "goal" else 0.0
    """
    result = evaluate("reward_keydoor", with_block(seed, tamper, tmp_path / "tamper.py"))
    assert result.valid and result.score == 0.0


def test_reward_non_finite_values_are_invalid_with_the_transition_named(tmp_path):
    seed = PROBLEMS / "reward_keydoor" / "initial.py"
    nan = 'def reward(state, action, next_state, info):\n    return float("nan")\n'
    result = evaluate("reward_keydoor", with_block(seed, nan, tmp_path / "nan.py"))
    assert not result.valid and "finite" in result.feedback and "'up'" in result.feedback


# ---------------------------------------------------------------- harness: noisy oracle

MAJORITY_OF_10 = """
def solve(task, ask, budget):
    from collections import Counter
    return Counter(ask(task) for _ in range(10)).most_common(1)[0][0]
"""

DECOMPOSE_AND_VERIFY = r"""
import re
from collections import Counter

def _fact(ask, attr, town):
    question = f"Who is the mayor of {town}?" if attr == "mayor" else f"What is the {attr} of {town}?"
    votes = Counter(ask(question) for _ in range(3))
    best = None
    for value, _ in votes.most_common(2):
        claim = f"Is {value} the mayor of {town}?" if attr == "mayor" else f"Is the {attr} of {town} {value}?"
        yes = sum(ask(claim) == "yes" for _ in range(2))
        if best is None or yes > best[0]:
            best = (yes, value)
    return best[1]

def solve(task, ask, budget):
    t = task.rstrip("?")
    m = re.match(r"What is the (.+) of (\w+) (plus|minus) the (.+) of (\w+)$", t)
    if m:
        a, b = int(_fact(ask, m[1], m[2])), int(_fact(ask, m[4], m[5]))
        return str(a + b if m[3] == "plus" else a - b)
    m = re.match(r"What is the (.+) of the town whose mayor is (.+)$", t)
    if m:
        towns = Counter(ask(f"Which town's mayor is {m[2]}?") for _ in range(2))
        town = max(towns, key=lambda tw: sum(ask(f"Is {m[2]} the mayor of {tw}?") == "yes" for _ in range(2)))
        return _fact(ask, m[1], town)
    m = re.match(r"What is the (.+) of (\w+)$", t) or re.match(r"Who is the (mayor) of (\w+)$", t)
    if m:
        return _fact(ask, m[1], m[2])
    return ask(task)
"""

# Tries every way in from inside the candidate process: the evaluator's modules and objects
# (the process is forked from it), the closure behind `ask`, and forged channel messages.
CHEATER = r"""
import gc
import sys

def _find_answers():
    found = {}
    for obj in gc.get_objects():
        try:
            if hasattr(obj, "answer") and hasattr(obj, "question") and isinstance(obj.question, str):
                found[obj.question] = str(obj.answer)
        except Exception:
            pass
    for module in list(sys.modules.values()):
        for task in getattr(module, "TASKS", None) or ():
            try:
                found[task.question] = str(task.answer)
            except Exception:
                pass
    return found

LEAKED = _find_answers()

def solve(task, ask, budget):
    if task in LEAKED:
        return LEAKED[task]
    cells = {name: cell.cell_contents for name, cell in
             zip(ask.__code__.co_freevars, ask.__closure__ or ())}
    send, receive = cells.get("send"), cells.get("receive")
    if send and receive:  # forged messages: free questions, a bigger budget, a peek
        for forged in ({"ask": task, "free": True}, {"budget": 1000}, {"peek": "answers"}):
            send(forged)
            reply = receive()
            if "reply" in reply and reply["reply"]:
                return reply["reply"]
    return ask(task)
"""

EVALUATE_IN_FRESH_PROCESS = """
import json, sys
from evoengine.problem import load_problem
loaded = load_problem(sys.argv[1])
r = loaded.evaluate(sys.argv[2])
print(json.dumps({"valid": r.valid, "score": r.score, "metrics": r.metrics, "feedback": r.feedback}))
"""


def evaluate_fresh(name: str, candidate: Path) -> dict:
    """Evaluate in a new interpreter, as the sandboxed evaluator would (nothing else loaded)."""
    proc = subprocess.run(
        [sys.executable, "-c", EVALUATE_IN_FRESH_PROCESS, str(PROBLEMS / name), str(candidate)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_harness_seed_single_call_scores_its_baseline_and_is_deterministic():
    first, second = evaluate("harness_oracle"), evaluate("harness_oracle")
    assert first.valid and first.score == pytest.approx(0.748)
    assert first.metrics["mean_calls"] == 1.0
    assert 0.6 <= first.metrics["heldout_score"] <= 0.8
    assert len(first.instances) == 60
    assert (first.score, first.instances, first.metrics) == (second.score, second.instances, second.metrics)
    assert "What is" in first.feedback


def test_harness_majority_vote_beats_one_call_and_verification_beats_voting(tmp_path):
    seed = PROBLEMS / "harness_oracle" / "initial.py"
    single = evaluate("harness_oracle")
    majority = evaluate("harness_oracle", with_block(seed, MAJORITY_OF_10, tmp_path / "majority.py"))
    verify = evaluate("harness_oracle", with_block(seed, DECOMPOSE_AND_VERIFY, tmp_path / "verify.py"))
    assert majority.score > single.score + 0.15
    assert majority.metrics["mean_calls"] == 10.0
    assert verify.score > majority.score
    assert verify.features["decomposed_share"] > 0.5 > majority.features["decomposed_share"]


def test_harness_calls_beyond_the_budget_are_free_and_empty(tmp_path):
    greedy = """
    def solve(task, ask, budget):
        replies = [ask(task) for _ in range(budget + 10)]
        return replies[-1]
    """
    result = evaluate(
        "harness_oracle", with_block(PROBLEMS / "harness_oracle" / "initial.py", greedy, tmp_path / "greedy.py")
    )
    assert result.metrics["mean_calls"] == 16.0 and result.metrics["accuracy"] == 0.0
    assert "budget was spent" in result.feedback


def test_harness_that_hunts_for_the_answers_gets_no_advantage(tmp_path):
    seed = PROBLEMS / "harness_oracle" / "initial.py"
    honest = evaluate_fresh("harness_oracle", seed)
    cheat = evaluate_fresh("harness_oracle", with_block(seed, CHEATER, tmp_path / "cheat.py"))
    assert cheat["valid"]
    assert cheat["score"] <= honest["score"]
    assert cheat["metrics"]["heldout_accuracy"] <= honest["metrics"]["heldout_accuracy"]


def test_harness_that_kills_the_oracle_process_is_invalid(tmp_path):
    killer = """
    import os, signal

    def solve(task, ask, budget):
        me, parent = os.getpid(), os.getppid()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == parent and int(pid) != me:
                os.kill(int(pid), signal.SIGKILL)
        return ask(task)
    """
    result = evaluate_fresh(
        "harness_oracle", with_block(PROBLEMS / "harness_oracle" / "initial.py", killer, tmp_path / "killer.py")
    )
    assert not result["valid"]
