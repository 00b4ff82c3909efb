"""The bundled problems of the other kinds: a prompt, a reward function, an agent harness,
and a program in C.

Each must score its seed at the documented baseline, score a better candidate clearly
higher, and give a candidate no way to win by gaming the measurement. Harness candidates
are scored through the real evaluation pool (the sandboxed worker), as in a run.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evoengine.evaluation import EvaluatorPool, Limits
from evoengine.problem import EvalResult, load_problem

REPO = Path(__file__).resolve().parent.parent
PROBLEMS = REPO / "problems"


def with_block(seed: Path, block: str, comment: str = "#") -> str:
    """The seed's text with the content of its (only) EVOLVE-BLOCK replaced by `block`."""
    text = seed.read_text()
    start = text.index(f"{comment} EVOLVE-BLOCK-START\n") + len(f"{comment} EVOLVE-BLOCK-START\n")
    end = text.index(f"{comment} EVOLVE-BLOCK-END")
    return text[:start] + textwrap.dedent(block).strip("\n") + "\n" + text[end:]


def evaluate(name: str, text: str | None, tmp_path: Path, entry: str = "evaluate") -> EvalResult:
    """Score a candidate text in this process (fine for problems whose evaluator holds no secret)."""
    loaded = load_problem(PROBLEMS / name)
    path = tmp_path / f"candidate{loaded.problem.suffix}"
    path.write_text(loaded.problem.seed_text() if text is None else text)
    return EvalResult.coerce(getattr(loaded.module, entry)(str(path)))


def sandboxed(name: str, texts: list[str], env: dict[str, str] | None = None) -> list[EvalResult]:
    """Score candidate texts through the evaluation pool, as a run does."""
    loaded = load_problem(PROBLEMS / name)
    limits = Limits(timeout_s=loaded.problem.timeout_s, memory_mb=loaded.problem.memory_mb)

    async def go() -> list[EvalResult]:
        async with EvaluatorPool(loaded.path, 1, limits) as pool:
            return [await pool.evaluate(text) for text in texts]

    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        return asyncio.run(go())
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize(
    "name,kind,language",
    [
        ("prompt_triage", "prompt", "text"),
        ("reward_mountaincar", "reward", "python"),
        ("harness_oracle", "harness", "python"),
        ("bin_packing_c", "program", "c"),
    ],
)
def test_each_kind_problem_loads_with_its_kind_and_a_readme(name, kind, language):
    loaded = load_problem(PROBLEMS / name)
    assert (loaded.problem.kind, loaded.problem.language) == (kind, language)
    assert loaded.problem.initial_path.is_file()
    assert f"evoengine run problems/{name}" in (PROBLEMS / name / "README.md").read_text()


# ---------------------------------------------------------------- prompt: ticket triage

PROMPT_SEED = PROBLEMS / "prompt_triage" / "initial.txt"


def vocabulary() -> list[str]:
    lines = (PROBLEMS / "prompt_triage" / "vocabulary.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def prompt(instructions: list[str], examples: list[str] = ()) -> str:
    return (
        "# EVOLVE-BLOCK-START instructions\n"
        + "".join(f"{line}\n" for line in instructions)
        + "# EVOLVE-BLOCK-END\n# EVOLVE-BLOCK-START examples\n"
        + "".join(f"{line}\n" for line in examples)
        + "# EVOLVE-BLOCK-END\n"
    )


HEADER = [
    "You sort the support tickets of an online shop for the team that will handle them.",
    "Answer with one label: billing, refund, technical, account, shipping, cancellation or feedback.",
]
# Every line below is a vocabulary line: conditions, actions and one exception, paired and ordered.
RULES = [
    ("If the account was hacked or used by someone else,", "label it account."),
    ("When the customer wants to cancel or close their account,", "label it cancellation."),
    ("When the ticket asks for money back,", "label it refund."),
    ("When the customer wants an item replaced or exchanged,", "label it shipping."),
    ("When the customer suggests a feature,", "label it feedback."),
    ("When the customer thanks us or praises the service,", "label it feedback."),
    ("When a delivery is late, lost or stuck,", "label it shipping."),
    ("When the ticket mentions a payment, a price or an invoice,", "label it billing."),
    ("If the ticket is about logging in or passwords,", "label it account."),
    ("If something in the app or on the website fails,", "label it technical."),
]
PRAISE_UNLESS_FAILS = "unless something in the app or on the website fails,"


def composed(rules=RULES, exception_after: int | None = 5) -> list[str]:
    lines = list(HEADER)
    for i, (condition, action) in enumerate(rules):
        lines += [condition, PRAISE_UNLESS_FAILS, action] if i == exception_after else [condition, action]
    return lines


def test_prompt_seed_is_weak_and_feedback_shows_replies_and_expected_labels(tmp_path):
    result = evaluate("prompt_triage", None, tmp_path)
    assert result.valid and result.score == pytest.approx(0.625)
    assert result.metrics["test_accuracy"] < 0.5
    assert len(result.instances) == 56 and set(result.instances.values()) <= {0.0, 1.0}
    assert "t01" in result.feedback and "replied 'billing', expected refund" in result.feedback
    assert not any(f"h{i:02d}" in result.feedback for i in range(1, 29))  # test tickets never shown


def test_prompt_composed_from_vocabulary_fragments_in_the_right_order_scores_full_marks(tmp_path):
    assert {line for pair in RULES for line in pair} | {PRAISE_UNLESS_FAILS} <= set(vocabulary())
    result = evaluate("prompt_triage", prompt(composed()), tmp_path)
    assert result.score == 1.0 and result.metrics["test_accuracy"] >= 0.95


def test_prompt_no_vocabulary_line_does_anything_on_its_own(tmp_path):
    seed = PROMPT_SEED.read_text()
    base = evaluate("prompt_triage", None, tmp_path).score
    top = "# EVOLVE-BLOCK-START instructions\n"
    for line in vocabulary():
        assert evaluate("prompt_triage", seed.replace(top, top + line + "\n"), tmp_path).score == base, line
        assert (
            evaluate("prompt_triage", seed.replace("Label: shipping\n", f"Label: shipping\n{line}\n"), tmp_path).score
            == base
        ), line
    last = "- feedback: feature requests.\n"
    everything = seed.replace(last, last + "\n".join(vocabulary()) + "\n")
    assert evaluate("prompt_triage", everything, tmp_path).score == base


def test_prompt_order_and_exceptions_decide_which_instruction_wins(tmp_path):
    full = evaluate("prompt_triage", prompt(composed()), tmp_path).score
    billing_first = [*RULES[:2], RULES[7], *RULES[2:7], *RULES[8:]]  # billing above refund
    worse = evaluate("prompt_triage", prompt(composed(billing_first, exception_after=6)), tmp_path)
    assert worse.score < full and "replied 'billing', expected refund" in worse.feedback
    repaired = composed(billing_first, exception_after=6)
    repaired.insert(repaired.index("label it billing."), "unless they want their money back,")
    better = evaluate("prompt_triage", prompt(repaired), tmp_path)
    assert worse.score < better.score < full and "expected refund" not in better.feedback
    no_exception = evaluate("prompt_triage", prompt(composed(exception_after=None)), tmp_path)
    assert no_exception.score < full and "replied 'feedback', expected technical" in no_exception.feedback


def test_prompt_worked_examples_teach_their_topics_only_as_ticket_label_pairs(tmp_path):
    ticket = "Ticket: I'd like my money back for the headphones I sent back."
    seed_rules = HEADER[:1]  # names no label but through the examples
    right = evaluate("prompt_triage", prompt(seed_rules, [ticket, "Label: refund"]), tmp_path)
    wrong = evaluate("prompt_triage", prompt(seed_rules, [ticket, "Label: billing"]), tmp_path)
    apart = evaluate("prompt_triage", prompt(seed_rules, [ticket, "Be brief.", "Label: refund"]), tmp_path)
    assert right.score > 0 and right.metrics["examples"] == 1.0
    assert wrong.score == 0.0 and apart.score == 0.0


def test_prompt_minibatch_is_a_fixed_subset_scored_the_same_way(tmp_path):
    seed = evaluate("prompt_triage", None, tmp_path, entry="minibatch")
    best = evaluate("prompt_triage", prompt(composed()), tmp_path, entry="minibatch")
    assert 0 < seed.score < best.score == 1.0 and len(seed.instances) == 17


# ---------------------------------------------------------------- reward: MountainCar

needs_gymnasium = pytest.mark.skipif(
    importlib.util.find_spec("gymnasium") is None, reason="pip install -e '.[problems]'"
)
CAR_SEED = PROBLEMS / "reward_mountaincar" / "initial.py"

ENERGY_SHAPING = """
def reward(obs, action, next_obs, info):
    terms = {"goal": 1.0 * info["goal"], "energy": 1.0 * (0.99 * energy(next_obs) - energy(obs))}
    return sum(terms.values()), terms
"""
SPEED_TRAP = """
def reward(obs, action, next_obs, info):  # pays for speed: the car rocks forever, never ending the episode
    return 1.0 * info["goal"] + 1.0 * speed(next_obs[1])
"""


@needs_gymnasium
def test_reward_seed_sparse_reward_scores_zero_and_says_what_the_car_did(tmp_path):
    result = evaluate("reward_mountaincar", None, tmp_path)
    assert result.valid and result.score == 0.0 and len(result.instances) == 40
    assert "reached the flag in 0/40 rollouts" in result.feedback and "furthest right" in result.feedback
    assert {"term_goal", "term_energy"} <= set(result.metrics)


@needs_gymnasium
def test_reward_potential_based_energy_shaping_solves_the_task(tmp_path):
    result = evaluate("reward_mountaincar", with_block(CAR_SEED, ENERGY_SHAPING), tmp_path)
    assert result.metrics["success_rate"] >= 0.9 and result.score > 0.6
    assert "energy" in result.feedback


@needs_gymnasium
def test_reward_that_pays_for_speed_scores_zero(tmp_path):
    result = evaluate("reward_mountaincar", with_block(CAR_SEED, SPEED_TRAP), tmp_path)
    assert result.valid and result.score == 0.0


@needs_gymnasium
def test_reward_that_patches_the_learner_in_its_own_process_changes_nothing(tmp_path):
    tamper = """
    import sys
    for module in list(sys.modules.values()):
        if hasattr(module, "EPISODES") and hasattr(module, "judge"):
            module.EPISODES = 5000
            module.judge = lambda q, seed: []

    def reward(obs, action, next_obs, info):
        return 1.0 * info["goal"]
    """
    result = evaluate("reward_mountaincar", with_block(CAR_SEED, tamper), tmp_path)
    assert result.valid and result.score == 0.0


@needs_gymnasium
def test_reward_non_finite_values_are_invalid_with_the_transition_named(tmp_path):
    nan = 'def reward(obs, action, next_obs, info):\n    return float("nan")\n'
    result = evaluate("reward_mountaincar", with_block(CAR_SEED, nan), tmp_path)
    assert not result.valid and "finite" in result.feedback and "reward([" in result.feedback


def test_reward_without_gymnasium_is_invalid_and_names_the_package(tmp_path):
    script = (
        "import sys; sys.modules['gymnasium'] = None\n"
        "from evoengine.problem import load_problem\n"
        f"r = load_problem({str(PROBLEMS / 'reward_mountaincar')!r}).evaluate({str(CAR_SEED)!r})\n"
        "print(r.valid, r.feedback)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.stdout.startswith("False") and "pip install 'gymnasium==1.4.0'" in out.stdout, out.stderr


# ---------------------------------------------------------------- harness: noisy oracle, sealed child

HARNESS_SEED = PROBLEMS / "harness_oracle" / "initial.py"


def harness(*edits: tuple[str, str]) -> str:
    text = HARNESS_SEED.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return text


VOTE = ("len(replies) < 1", "len(replies) < 3")
VERIFY = ("    return ranked[0]\n    confirmed", "    confirmed")
SPLIT = ("len(parts.groups()) > 5", "len(parts.groups()) > 4")
CANARY = "sk-canary-0d1f2e"

# Tries every way to the task data and the model key from inside the candidate's process.
HOSTILE = r"""
import gc, os, sys

def _look():
    found, seen = {}, []
    sys.path.insert(0, PROBLEM_DIR)  # the attack that used to work: import the task data from disk
    try:
        import towns

        found.update({t.question: t.answer for t in towns.TASKS})
    except Exception:
        pass
    for root in ["/", "/work", "/proc", "/root", "/tmp", "/home", "/usr"]:
        try:
            seen += [os.path.join(root, n) for n in os.listdir(root)]
        except OSError:
            pass
    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None) or ""
        for path in (where, os.path.join(os.path.dirname(where), "towns.py")):
            try:
                seen.append(open(path).read()[:20])
            except (OSError, ValueError):
                pass
        for task in getattr(module, "TASKS", None) or ():
            found[getattr(task, "question", "")] = str(getattr(task, "answer", ""))
    for obj in gc.get_objects():
        try:
            if isinstance(getattr(obj, "question", None), str) and hasattr(obj, "answer"):
                found[obj.question] = str(obj.answer)
        except Exception:
            pass
    for pid in ("self", "1", str(os.getppid())):
        for what in ("environ", "mem", "cmdline"):
            try:
                seen.append(open(f"/proc/{pid}/{what}", "rb").read(64))
            except OSError:
                pass
    secrets = [v for v in os.environ.values()] + [s for s in map(str, seen) if "sk-" in s]
    return found, secrets

LEAKED, SECRETS = _look()

def solve(task, ask, budget):
    if task in LEAKED:
        return LEAKED[task]
    if SECRETS:
        return "secret " + " ".join(SECRETS)
    return ask(task)
"""


def test_harness_seed_scores_its_baseline_and_is_deterministic():
    first, second = sandboxed("harness_oracle", [HARNESS_SEED.read_text()] * 2)
    assert first.valid and first.score == pytest.approx(0.748)
    assert first.metrics["mean_calls"] == 1.0 and 0.6 <= first.metrics["heldout_score"] <= 0.8
    assert len(first.instances) == 60
    assert (first.score, first.instances, first.metrics) == (second.score, second.instances, second.metrics)
    assert "What is" in first.feedback


def test_harness_voting_decomposing_and_verifying_each_change_the_control_flow_and_help():
    seed, vote, split, verify = sandboxed(
        "harness_oracle", [harness(), harness(VOTE), harness(VOTE, SPLIT), harness(VOTE, SPLIT, VERIFY)]
    )
    assert seed.score < vote.score < split.score < verify.score
    assert verify.metrics["heldout_score"] > 0.9 and verify.metrics["accuracy_sum"] > vote.metrics["accuracy_sum"]
    assert (
        verify.features["decomposed_share"]
        > split.features["decomposed_share"]
        > 0.0
        == vote.features["decomposed_share"]
    )


def test_harness_calls_beyond_the_budget_are_free_and_empty():
    greedy = with_block(
        HARNESS_SEED, "def solve(task, ask, budget):\n    return [ask(task) for _ in range(budget + 10)][-1]\n"
    )
    (result,) = sandboxed("harness_oracle", [greedy])
    assert result.metrics["mean_calls"] == 16.0 and result.metrics["accuracy"] == 0.0
    assert "budget was spent" in result.feedback


def test_harness_cannot_reach_the_task_data_or_the_model_key():
    env = {"OPENAI_API_KEY": CANARY, "HF_AUTH": CANARY}
    hostile_text = with_block(HARNESS_SEED, f"PROBLEM_DIR = {str(HARNESS_SEED.parent)!r}\n" + HOSTILE)
    honest, hostile = sandboxed("harness_oracle", [HARNESS_SEED.read_text(), hostile_text], env)
    assert hostile.valid, hostile.feedback
    assert hostile.score == honest.score and hostile.metrics == honest.metrics
    assert CANARY not in hostile.feedback and "secret" not in hostile.feedback


def test_harness_that_exits_midway_is_invalid():
    quitter = "import os\n\ndef solve(task, ask, budget):\n    os._exit(3)\n"
    (result,) = sandboxed("harness_oracle", [with_block(HARNESS_SEED, quitter)])
    assert not result.valid and "ended before the suite did" in result.feedback


def test_harness_that_does_not_import_is_invalid_with_the_line():
    (result,) = sandboxed("harness_oracle", [with_block(HARNESS_SEED, "def solve(task, ask, budget):\n    return (\n")])
    assert not result.valid and "SyntaxError" in result.feedback and "line" in result.feedback


# ---------------------------------------------------------------- C: online bin packing

C_SEED = PROBLEMS / "bin_packing_c" / "initial.c"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="no C compiler")


@needs_gcc
def test_c_seed_is_first_fit_and_best_fit_scores_higher(tmp_path):
    seed = evaluate("bin_packing_c", None, tmp_path)
    best_fit = evaluate("bin_packing_c", with_block(C_SEED, "    score -= gap;\n", "//"), tmp_path)
    assert seed.valid and seed.score == pytest.approx(-4.700, abs=1e-3) and seed.features["first_fit_agreement"] == 1.0
    assert best_fit.score == pytest.approx(-4.295, abs=1e-3) and best_fit.features["best_fit_agreement"] == 1.0


@needs_gcc
def test_c_compile_error_is_invalid_with_the_compilers_message(tmp_path):
    result = evaluate("bin_packing_c", with_block(C_SEED, "    score -= 1.0 * index x;\n", "//"), tmp_path)
    assert not result.valid and "compile error" in result.feedback and "error: expected" in result.feedback
    assert "candidate.c:" in result.feedback and str(tmp_path) not in result.feedback


@needs_gcc
def test_c_program_that_crashes_or_answers_out_of_turn_is_invalid(tmp_path):
    crash = evaluate(
        "bin_packing_c", with_block(C_SEED, "    if (open_bins > 3) *(volatile int *)0 = 1;\n", "//"), tmp_path
    )
    assert not crash.valid and "signal 11" in crash.feedback
    chatty = evaluate("bin_packing_c", with_block(C_SEED, '    printf("7\\n");\n', "//"), tmp_path)
    assert not chatty.valid and "does not fit in bin 7" in chatty.feedback
