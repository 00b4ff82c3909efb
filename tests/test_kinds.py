"""Candidates that are not Python: offline text operators, Pareto-per-instance parent
selection, the evaluator pool's other entry points, and the minibatch gate end to end."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, cli, status
from scipy.stats import chisquare

from evoengine.archive import Archive
from evoengine.archive.selection import pareto_weights
from evoengine.blocks import check_frozen
from evoengine.config import Config
from evoengine.engine import build_proposer
from evoengine.errors import ProblemError
from evoengine.evaluation import EvaluatorPool, Limits
from evoengine.operators.offline import OfflineProposer
from evoengine.operators.text import WEIGHTS, TextProposer
from evoengine.problem import Problem, load_problem
from evoengine.records import Candidate, ProposalContext, ProposalFailed

pytest_plugins = ["scripted_server"]

VOCABULARY = [
    "# a comment line, never inserted",
    "",
    "Rule one: be brief.",
    "Rule two: name the label.",
    "Rule three: one label only.",
]
MARKED = """\
Header that must not change.
# EVOLVE-BLOCK-START
alpha line
beta line
gamma line
# EVOLVE-BLOCK-END
Footer that must not change.
"""


@pytest.fixture
def text_problem(tmp_path: Path) -> Problem:
    (tmp_path / "seed.txt").write_text(MARKED)
    (tmp_path / "words.txt").write_text("\n".join(VOCABULARY) + "\n")
    problem = Problem(
        name="words", description="d", initial="seed.txt", language="text", kind="prompt", vocabulary="words.txt"
    )
    problem.root = tmp_path
    return problem


def propose(
    proposer: TextProposer, problem: Problem, parent: Candidate, seed: int, inspirations: list[Candidate] | None = None
):
    ctx = ProposalContext(
        problem=problem, parent=parent, inspirations=inspirations or [], failures=[], rng=random.Random(seed), island=0
    )
    return asyncio.run(proposer.propose(ctx))


def block_lines(text: str) -> list[str]:
    rows = text.splitlines()
    return rows[rows.index("# EVOLVE-BLOCK-START") + 1 : rows.index("# EVOLVE-BLOCK-END")]


# ---------------------------------------------------------------- text operators


def test_text_operators_change_only_lines_inside_the_evolve_blocks(text_problem):
    parent = Candidate(1, MARKED, valid=True, score=0.0)
    other = Candidate(2, MARKED.replace("alpha line", "delta line").replace("gamma", "epsilon"), valid=True, score=0.0)
    seen = Counter()
    for seed in range(200):
        p = propose(TextProposer(), text_problem, parent, seed, [other])
        check_frozen(MARKED, p.text, "#")  # raises if a frozen byte changed
        assert p.text != MARKED and p.model == "offline"
        seen[p.operator] += 1
    assert set(seen) == {f"offline:{name}" for name in WEIGHTS if name != "number"}  # no numbers here


def test_numbers_in_any_text_are_nudged_ints_stay_ints_and_negatives_get_brackets(text_problem):
    c_like = (
        "# EVOLVE-BLOCK-START\n    score -= 1.0 * gap;  // weight\n    x1 = a-3 + 0x1f + 2.5f;\n# EVOLVE-BLOCK-END\n"
    )
    parent = Candidate(1, c_like, valid=True, score=0.0)
    float_line = re.compile(r"    score -= (\d+\.\d*(e-?\d+)?|\d+e-?\d+|\(-[\d.e-]+\)) \* gap;  // weight")
    int_line = re.compile(r"    x1 = a-(\d+|\(-\d+\)) \+ 0x1f \+ 2\.5f;")
    changed = Counter()
    for seed in range(100):
        p = propose(TextProposer(weights={"number": 1.0}), text_problem, parent, seed)
        first, second = block_lines(p.text)
        assert float_line.fullmatch(first) and int_line.fullmatch(second), p.text
        changed.update(i for i, line in enumerate((first, second)) if line != block_lines(c_like)[i])
        assert p.operator == "offline:number" and "nudged" in p.change
    assert changed[0] > 20 and changed[1] > 20


def test_vocabulary_lines_are_inserted_and_comment_lines_never(text_problem):
    parent = Candidate(1, MARKED, valid=True, score=0.0)
    proposer = TextProposer(weights={"vocabulary": 1.0})
    inserted = set()
    for seed in range(60):
        p = propose(proposer, text_problem, parent, seed)
        new = set(block_lines(p.text)) - set(block_lines(MARKED))
        assert new and new <= {"Rule one: be brief.", "Rule two: name the label.", "Rule three: one label only."}
        assert p.operator == "offline:vocabulary" and p.parents == (1,)
        inserted |= new
    assert len(inserted) == 3


def test_a_text_without_markers_is_wholly_editable(text_problem):
    plain = "first line\nsecond line\n"
    parent = Candidate(1, plain, valid=True, score=0.0)
    p = propose(TextProposer(weights={"delete": 1.0}), text_problem, parent, 0)
    assert p.text in ("first line\n", "second line\n")
    p = propose(TextProposer(weights={"swap": 1.0}), text_problem, parent, 0)
    assert p.text == "second line\nfirst line\n"
    p = propose(TextProposer(weights={"duplicate": 1.0}), text_problem, parent, 3)
    assert sorted(p.text.splitlines()) in (["first line"] * 2 + ["second line"], ["first line"] + ["second line"] * 2)


def test_crossover_mixes_lines_of_both_parents_and_names_both(text_problem):
    mine = MARKED.replace("alpha line", "alpha MINE").replace("gamma line", "gamma MINE")
    theirs = MARKED.replace("alpha line", "alpha THEIRS").replace("gamma line", "gamma THEIRS")
    parent, other = Candidate(1, mine, valid=True, score=0.0), Candidate(2, theirs, valid=True, score=0.0)
    children = set()
    for seed in range(40):
        p = propose(TextProposer(weights={"crossover": 1.0}), text_problem, parent, seed, [other])
        assert p.parents == (1, 2) and p.operator == "offline:crossover"
        assert p.text not in (mine, theirs)
        children.add(tuple(block_lines(p.text)))
    assert children == {("alpha MINE", "beta line", "gamma THEIRS"), ("alpha THEIRS", "beta line", "gamma MINE")}


def test_borrow_inserts_a_line_only_the_inspiration_has(text_problem):
    parent = Candidate(1, MARKED, valid=True, score=0.0)
    other = Candidate(5, MARKED.replace("beta line", "beta line\nborrowed line"), valid=True, score=0.0)
    p = propose(TextProposer(weights={"borrow": 1.0}), text_problem, parent, 0, [other])
    assert sorted(block_lines(p.text)) == sorted(block_lines(MARKED) + ["borrowed line"])
    assert p.parents == (1, 5) and "#5" in p.change


def test_text_proposals_are_a_function_of_the_rng_seed(text_problem):
    parent = Candidate(1, MARKED, valid=True, score=0.0)
    a = [propose(TextProposer(), text_problem, parent, s).text for s in range(20)]
    b = [propose(TextProposer(), text_problem, parent, s).text for s in range(20)]
    assert a == b and len(set(a)) > 5


def test_nothing_to_edit_is_a_failed_proposal_with_the_reason(text_problem):
    parent = Candidate(1, "# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-END\n", valid=True, score=0.0)
    with pytest.raises(ProposalFailed, match="no edit"):
        propose(TextProposer(weights={"delete": 1.0, "swap": 1.0}), text_problem, parent, 0)


def test_text_problems_get_text_operators_and_python_problems_ast_operators():
    config = Config()
    assert isinstance(build_proposer(config, load_problem("prompt_triage")), TextProposer)
    assert isinstance(build_proposer(config, load_problem("circle_packing")), OfflineProposer)


def test_a_missing_vocabulary_file_is_a_problem_error(tmp_path):
    (tmp_path / "seed.txt").write_text("x\n")
    (tmp_path / "problem.py").write_text(
        "from evoengine.problem import Problem\n"
        "problem = Problem(name='v', description='d', initial='seed.txt', language='text', "
        "vocabulary='nope.txt')\n"
        "def evaluate(path):\n    return {'score': 1.0}\n"
    )
    with pytest.raises(ProblemError, match="nope.txt"):
        load_problem(tmp_path)


# ---------------------------------------------------------------- Pareto selection


def pareto_archive(members: list[tuple[float, dict[str, float]]]) -> tuple[Archive, list[int]]:
    config = Config(
        **{
            "seed": 3,
            "islands": {"count": 1, "population": 100, "migration_interval": 10_000},
            "selection": {
                "strategy": "pareto",
                "exploit": 1.0,
                "explore": 0.0,
                "elites": 0.0,
                "refine": False,
                "restart": False,
            },
            "elites": {"enabled": False},
        }
    )
    archive = Archive(config, Problem(name="toy", description="toy", initial="seed.py"))
    for i, (score, instances) in enumerate(members, 1):
        archive.admit(
            Candidate(i, f"x = {i}\n", parents=(0,), operator="diff", score=score, valid=True, instances=instances)
        )
    return archive, list(range(1, len(members) + 1))


def parent_counts(archive: Archive, ids: list[int], n: int = 20_000) -> np.ndarray:
    rng = random.Random(11)
    counts = Counter(archive.select(rng).parent.id for _ in range(n))
    return np.array([counts[i] for i in ids], dtype=float)


def test_pareto_keeps_a_low_scorer_that_is_best_on_one_instance_and_weighs_by_instances_won():
    cases = [f"c{k}" for k in range(10)]
    strong = {c: 1.0 for c in cases[:9]} | {"c9": 0.0}  # best on 9 of 10
    niche = {c: 0.0 for c in cases[:9]} | {"c9": 1.0}  # mean 0.1, but the only one solving c9
    dominated = {c: 0.5 for c in cases}  # best nowhere
    copy = dict(strong)  # the same wins as `strong`, ranked below it
    archive, ids = pareto_archive([(0.9, strong), (0.9, copy), (0.5, dominated), (0.1, niche)])
    observed = parent_counts(archive, ids)
    assert observed[1] == 0 and observed[2] == 0  # the duplicate front member and the dominated one
    assert observed[3] > 0
    assert chisquare(observed[[0, 3]], np.array([0.9, 0.1]) * observed.sum()).pvalue > 1e-3


def test_pareto_front_weights_follow_instances_won():
    weights = pareto_weights(
        [{"a": 3, "b": 1, "c": 0}, {"a": 1, "b": 2, "c": 0}, {"a": 3, "b": 2, "c": 0}, {"a": 0, "c": 5}]
    )
    # member 2 wins a and b (ties with 0 on a, with 1 on b) so dominates both; member 3 wins c
    assert weights.tolist() == [0.0, 0.0, 2.0, 1.0]


def test_pareto_without_instances_falls_back_to_the_islands_best():
    archive, ids = pareto_archive([(0.2, {}), (0.9, {}), (0.5, {})])
    observed = parent_counts(archive, ids, n=500)
    assert observed.tolist() == [0.0, 500.0, 0.0]


# ---------------------------------------------------------------- the pool's entry points


@pytest.fixture(scope="module")
def two_entry_problem() -> Iterator[Path]:
    """A problem with `evaluate` and `minibatch`, in folders the sandbox user can read."""
    root = Path(tempfile.mkdtemp(prefix="evoengine-kinds-"))
    root.chmod(0o755)
    (root / "seed.txt").write_text("hello\n")
    (root / "problem.py").write_text(
        "from pathlib import Path\n"
        "from evoengine.problem import Problem\n"
        "problem = Problem(name='two', description='d', initial='seed.txt', language='text', timeout_s=10)\n"
        "def evaluate(path):\n    return {'score': float(len(Path(path).read_text())), 'feedback': 'full'}\n"
        "def minibatch(path):\n    return {'score': 1.0, 'feedback': 'cheap'}\n"
    )
    for path in root.iterdir():
        path.chmod(0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_pool_calls_the_entry_point_it_is_asked_for(two_entry_problem):
    async def go():
        pool = EvaluatorPool(two_entry_problem / "problem.py", 1, Limits(timeout_s=10))
        await pool.start()
        try:
            return [await pool.evaluate("abc", entry=e) for e in ("evaluate", "minibatch", "nonesuch")]
        finally:
            await pool.close()

    full, cheap, missing = asyncio.run(go())
    assert (full.score, full.feedback) == (3.0, "full")
    assert (cheap.score, cheap.feedback) == (1.0, "cheap")
    assert not missing.valid and "no function nonesuch" in missing.feedback


# ---------------------------------------------------------------- the minibatch gate, end to end


def evaluated(run_dir: Path) -> list[tuple[bool, str, str]]:
    conn = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT valid, feedback, metrics FROM candidates WHERE status='evaluated' ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


def test_minibatch_gate_admits_gated_children_with_the_reason_and_stays_in_budget(tmp_path):
    outcomes = {}
    for strict in (True, False):
        run_dir = tmp_path / f"run-{strict}"
        args = ("--set", f"evaluation.gate_strict={str(strict).lower()}")
        cli("run", "prompt_triage", "--budget", "40", "--run-dir", str(run_dir), "-q", *args, check=True, cwd=REPO)
        rows = evaluated(run_dir)
        assert len(rows) == 40 and status(run_dir)["admitted"] == 40
        gated = [r for r in rows if r[1].startswith("gate: scored")]
        said = "not above its parent's" if strict else "not at least its parent's"
        assert all(not valid for valid, _, _ in gated)
        assert all(said in fb and "not evaluated in full" in fb for _, fb, _ in gated)
        assert all('"gate_score"' in m and '"parent_gate_score"' in m for _, _, m in gated)
        passed = [r for r in rows[1:] if not r[1].startswith("gate:")]
        assert passed and all('"gate_score"' in m for _, _, m in passed)
        outcomes[strict] = len(gated)
    assert outcomes[True] > outcomes[False]  # ties pass by default: fewer children are stopped


def test_gate_off_evaluates_every_child_in_full(tmp_path):
    run_dir = tmp_path / "run"
    cli(
        "run",
        "prompt_triage",
        "--budget",
        "15",
        "--run-dir",
        str(run_dir),
        "-q",
        "--set",
        "evaluation.gate=false",
        check=True,
        cwd=REPO,
    )
    rows = evaluated(run_dir)
    assert len(rows) == 15 and not any(fb.startswith("gate:") for _, fb, _ in rows)


def best_so_far(run_dir: Path) -> list[float]:
    """The best valid score after each admitted candidate (-inf before the first valid one)."""
    conn = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT valid, score FROM candidates WHERE seq IS NOT NULL ORDER BY seq").fetchall()
    finally:
        conn.close()
    best, curve = float("-inf"), []
    for valid, score in rows:
        best = max(best, score) if valid and score is not None else best
        curve.append(best)
    return curve


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "prompt_triage",
        pytest.param("reward_mountaincar", marks=pytest.mark.timeout(1500)),  # ~2 s per evaluation, 200 of them
        "harness_oracle",
        "bin_packing_c",
    ],
)
def test_offline_search_keeps_improving_past_its_first_tenth(name, tmp_path):
    if name == "reward_mountaincar":
        pytest.importorskip("gymnasium", reason="pip install -e '.[problems]'")
    if name == "bin_packing_c" and not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no C compiler")
    run_dir = tmp_path / "run"
    # Seed 0 of bin_packing_c reaches its plateau (-4.295, where the earlier default also ended)
    # within the first 20 candidates under the default search, so it cannot show a search
    # that keeps going; seed 1 can (benchmarks/kinds.md).
    seed = "1" if name == "bin_packing_c" else "0"
    cli(
        "run",
        name,
        "--budget",
        "200",
        "--run-dir",
        str(run_dir),
        "--set",
        f"seed={seed}",
        "-q",
        check=True,
        cwd=REPO,
        timeout=1400,
    )
    curve = best_so_far(run_dir)
    assert len(curve) == 200 and curve[199] > curve[19] > float("-inf")


# ---------------------------------------------------------------- reflective mutation (templates)

REFLECTIVE = REPO / "evoengine" / "harness" / "templates" / "reflective"
RULES = {
    "refund": "When the ticket asks for money back, label it refund.",
    "cancellation": "When the customer wants to cancel or close their account, label it cancellation.",
    "shipping": "When the customer wants an item replaced or exchanged, label it shipping.",
    "account": "If the account was hacked or used by someone else, label it account.",
    "feedback": "When the customer thanks us or praises the service, unless something fails, label it feedback.",
}
ANCHOR = "Answer with one label, the first of these that fits the ticket:"
EXAMPLES = [
    ("Thank you, the support team was great!", "feedback"),
    ("The box arrived crushed, please send a replacement.", "shipping"),
    ("Please cancel my yearly membership.", "cancellation"),
    ("I'd like my money back for the headphones I sent back.", "refund"),
]


def reflective_model(request: dict) -> str:
    """Reads the failing tickets in the parent's feedback and puts a rule for the label most
    often expected there, and not yet ruled on, at the top of the decision list."""
    prompt = request["messages"][-1]["content"]
    if "Current prompt" not in prompt:  # the pre-flight check
        return "ok"
    feedback, parent = prompt[prompt.index("Current prompt") :].split("```")[:2]  # the parent's feedback, its text
    expected = Counter(re.findall(r"expected (\w+)", feedback))
    wanted = [label for label, _ in expected.most_common() if label in RULES and RULES[label] not in parent]
    rng = random.Random(prompt)
    if "change only the section `examples`" in prompt or not wanted:
        text, label = rng.choice(EXAMPLES)
        return (
            "Reflection: an example of a confusable ticket will help.\n<<<<<<< SEARCH\nLabel: shipping\n=======\n"
            f"Label: shipping\nTicket: {text}\nLabel: {label}\n>>>>>>> REPLACE\n"
        )
    label = rng.choice(wanted[:2])
    return (
        f"Reflection: tickets expected as {label} go wrong; no instruction covers them first.\n"
        f"Plan: a rule for them at the top.\n<<<<<<< SEARCH\n{ANCHOR}\n=======\n{ANCHOR}\n{RULES[label]}\n>>>>>>> REPLACE\n"
    )


@pytest.mark.slow
def test_reflective_templates_show_the_failing_cases_and_ask_for_a_diagnosis_first(tmp_path, scripted_server):
    scripted_server.script("good", reflective_model)
    config = tmp_path / "reflective.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "extends": "default",
                "models": [scripted_server.model("good", timeout_s=10.0).dump()],
                "operators": {"diff": 1.0, "full": 0.0, "crossover": 0.0},
                "templates": str(REFLECTIVE),
                "evaluation": {"gate": False},
            }
        )
    )
    run_dir = tmp_path / "run"
    cli(
        "run",
        "prompt_triage",
        "-c",
        str(config),
        "--budget",
        "16",
        "--run-dir",
        str(run_dir),
        "-q",
        check=True,
        cwd=REPO,
    )
    prompts = [c.body["messages"][-1]["content"] for c in scripted_server.calls("good")]
    prompts = [p for p in prompts if "Current prompt" in p]
    # every prompt asks for a diagnosis and shows the parent's failing cases ("..., expected <label>")
    assert prompts and all('under the heading "Reflection"' in p and ", expected " in p for p in prompts)
    assert any("expected refund" in p for p in prompts)  # the seed's own confusion, shown at first
    s = status(run_dir)
    assert s["best_score"] > s["seed_score"] + 0.1
