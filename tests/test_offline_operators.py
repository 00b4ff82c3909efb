"""The built-in offline operators: they improve programs, respect frozen text, and are reproducible."""

from __future__ import annotations

import ast
import asyncio
import copy
import importlib
import inspect
import math
import random
import re

import pytest

from evoengine.blocks import check_frozen, evolve_blocks
from evoengine.errors import EvoError
from evoengine.operators.offline import OfflineProposer
from evoengine.problem import Problem, load_problem
from evoengine.records import Candidate, Proposal, ProposalContext, ProposalFailed

RING = '''\
"""Place eight equal circles in the unit square, as large as possible."""
import math

# EVOLVE-BLOCK-START
def centres():
    """Eight centres on a ring."""
    n = 8
    radius = 0.2  # far from the walls
    centre_x = 0.45
    centre_y = 0.55
    phase = 0.3
    return [
        (centre_x + radius * math.cos(phase + 2 * math.pi * k / n),
         centre_y + radius * math.sin(phase + 2 * math.pi * k / n))
        for k in range(n)
    ]
# EVOLVE-BLOCK-END
'''


def ring_score(text: str) -> float | None:
    """The radius eight equal circles at these centres can have (trusted test code, in process)."""
    namespace: dict = {}
    try:
        exec(compile(text, "<candidate>", "exec"), namespace)
        points = namespace["centres"]()
        if len(points) != 8:
            return None
        to_walls = min(min(c, 1 - c) for p in points for c in p)
        apart = min(math.dist(a, b) for i, a in enumerate(points) for b in points[i + 1 :])
    except Exception:
        return None
    return min(to_walls, apart / 2) if to_walls > 0 else None


MIXED = '''\
"""Frozen header: this docstring and the import must never change."""
import math

LIMIT = 3  # frozen constant


def helper(x):
    total = 0.0
    # EVOLVE-BLOCK-START
    scale = 1.5  # a comment in the block
    for i in range(4):
        if x > 0.25 and i < 3:
            total += scale * x ** 2 - i
        else:
            total -= 0.5 * i + 0.01 ** i
    total = total / 2.0
    # EVOLVE-BLOCK-END
    return total + LIMIT  # frozen


# EVOLVE-BLOCK-START
def weights():
    """Keep me."""
    a = 0.1
    b = -2
    c = a * b + 3.5
    return [a, b, c]
# EVOLVE-BLOCK-END

print(helper(1.0), weights())
'''


def problem(language: str = "python") -> Problem:
    return Problem(name="toy", description="a toy problem", initial="initial.py", language=language)


def propose(
    proposer: OfflineProposer,
    parent: Candidate,
    seed: int | random.Random,
    inspirations: list[Candidate] | None = None,
    language: str = "python",
) -> Proposal:
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    ctx = ProposalContext(problem(language), parent, inspirations or [], [], rng, island=0)
    return asyncio.run(proposer.propose(ctx))


def hill_climb(seed_text: str, score, steps: int, seed: int) -> tuple[float, float, list[str]]:
    """Keep a child whenever it scores better than the current best; second parent: a recent best."""
    rng = random.Random(seed)
    proposer = OfflineProposer()
    best = Candidate(id=0, text=seed_text, score=score(seed_text), valid=True)
    recent = [best]
    kept = []
    for step in range(1, steps + 1):
        try:
            child = propose(proposer, best, rng, [rng.choice(recent)])
        except ProposalFailed:
            continue
        value = score(child.text)
        if value is not None and value > best.score:
            best = Candidate(id=step, text=child.text, score=value, valid=True)
            recent = (recent + [best])[-4:]
            kept.append(child.operator)
    return score(seed_text), best.score, kept


def blocks_and_frozen(text: str) -> tuple[list[str], list[str]]:
    blocks = evolve_blocks(text)
    cuts = [0] + [x for b in blocks for x in (b.start, b.end)] + [len(text)]
    frozen = [text[cuts[i] : cuts[i + 1]] for i in range(0, len(cuts), 2)]
    return [text[b.start : b.end] for b in blocks], frozen


def masked(tree: ast.AST) -> str:
    """The structure of `tree` with every numeric literal (negated or not) blanked out."""

    class Mask(ast.NodeTransformer):
        def visit(self, node):
            inner = node.operand if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) else node
            if isinstance(inner, ast.Constant) and type(inner.value) in (int, float):
                return ast.Name("NUMBER", ast.Load())
            return super().visit(node)

    return ast.dump(Mask().visit(copy.deepcopy(tree)))


# ---------------------------------------------------------------- they improve programs


def test_hill_climbing_with_offline_operators_clearly_improves_a_ring_construction():
    runs = [hill_climb(RING, ring_score, steps=200, seed=seed) for seed in range(5)]
    start = runs[0][0]
    assert start == pytest.approx(0.0765, abs=1e-3)
    finals = sorted(final for _, final, _ in runs)
    assert finals[0] > start  # every run improves
    # the median by 30% (the best ring gives ~0.138, 1.8x). Measured over 20 seeds: median 1.58x
    # (1.66x before floats below 1 moved by absolute steps, which pays on the benchmark suite)
    assert finals[2] > 1.3 * start
    kept = [op for _, _, ops in runs for op in ops]
    assert kept.count("offline:constant") > len(kept) / 2


@pytest.mark.slow
def test_hill_climbing_improves_the_bundled_circle_packing_seed():
    try:
        loaded = load_problem("circle_packing")
    except EvoError as exc:
        pytest.skip(f"circle_packing problem not loadable here: {exc}")

    def score(text: str) -> float | None:
        namespace: dict = {}
        try:
            exec(compile(text, "<candidate>", "exec"), namespace)
            result = loaded.module.score_packing(namespace["construct_packing"]())
        except Exception:
            return None
        return result.score if result.valid else None

    start, final, _ = hill_climb(loaded.problem.seed_text(), score, steps=200, seed=0)
    if start is None or start > 1.5:
        pytest.skip(f"this test climbs from the weak ring seed (~0.99); the seed now scores {start}")
    assert final > start + 0.3  # measured: 0.99 -> 1.66 (seed 0); 1.04-1.66 over seeds 0-7


# ---------------------------------------------------------------- they respect the rules


def test_text_outside_evolve_blocks_never_changes():
    parent = Candidate(id=1, text=MIXED)
    other = Candidate(id=2, text=MIXED.replace("1.5", "2.5").replace("a = 0.1", "a = 0.7"))
    _, frozen = blocks_and_frozen(MIXED)
    operators = set()
    for seed in range(300):
        child = propose(OfflineProposer(), parent, seed, [other])
        operators.add(child.operator)
        check_frozen(MIXED, child.text)
        assert blocks_and_frozen(child.text)[1] == frozen
        compile(child.text, "<child>", "exec")
    assert {"offline:constant", "offline:operator", "offline:crossover"} <= operators
    assert operators & {"offline:duplicate", "offline:delete", "offline:swap"}


def test_constant_perturbation_changes_only_numbers_keeping_ints_ints_and_comments():
    parent = Candidate(id=1, text=MIXED)
    parent_tree = ast.parse(MIXED)
    ints_before = sorted(type(n.value).__name__ for n in ast.walk(parent_tree) if isinstance(n, ast.Constant))
    small = big = 0
    for seed in range(200):
        child = propose(OfflineProposer({"constant": 1.0}), parent, seed)
        assert child.operator == "offline:constant"
        assert re.fullmatch(r"constant \S+ -> \S+ at line \d+(; constant \S+ -> \S+ at line \d+)*", child.change)
        tree = ast.parse(child.text)
        assert masked(tree) == masked(parent_tree)
        assert sorted(type(n.value).__name__ for n in ast.walk(tree) if isinstance(n, ast.Constant)) == ints_before
        assert "# a comment in the block" in child.text and '"""Keep me."""' in child.text
        old, new = re.match(r"constant (\S+) -> (\S+)", child.change).groups()
        if "." in old:
            ratio = abs(float(new) - float(old)) / abs(float(old))
            small += ratio < 0.01
            big += ratio > 0.1
    assert small and big  # both fine tuning and large jumps happen


def test_a_constant_nudged_off_zero_can_still_grow_to_a_useful_size():
    # A threshold of 0.0 that one edit made 3.6e-05 is still worth moving to 0.5 or 1.2: a
    # float below 1 in size moves by absolute steps, not by a share of itself.
    parent = Candidate(id=1, text="# EVOLVE-BLOCK-START\nthreshold = 3.6e-05\n# EVOLVE-BLOCK-END\n")
    sizes = []
    for seed in range(200):
        child = propose(OfflineProposer({"constant": 1.0}), parent, seed)
        sizes.append(abs(float(re.search(r"threshold = (\S+)", child.text).group(1))))
    assert sum(size > 0.1 for size in sizes) >= 30
    assert sum(size < 1e-3 for size in sizes) >= 30  # fine tuning still happens


DEAD_TAIL = """\
# EVOLVE-BLOCK-START
def comparators(n):
    pairs = []
    for i in range(0, n - 1, 1):
        pairs.append((i, i + 1))
    return pairs
    for i in range(1, n - 2, 2):
        pairs.append((i, i + 2))
# EVOLVE-BLOCK-END
"""


def test_edits_land_where_the_program_runs_not_after_its_return():
    # Code after a return never runs: an edit there makes new text, not a new program, and
    # costs an evaluation that can only tie (a best carrying such a tail used to trap a run).
    parent = Candidate(id=1, text=DEAD_TAIL)
    tail = DEAD_TAIL.split("    return pairs\n")[1]
    revived = 0
    for seed in range(300):
        child = propose(OfflineProposer(), parent, seed)
        if child.change == "delete statement at line 6: 'return pairs'" or re.fullmatch(
            r"swap statements at lines \d and [67]", child.change
        ):  # the return moved or deleted, or the first dead statement swapped into the running code
            revived += 1
            continue
        assert child.text.count("return pairs") == 1, child.change
        assert child.text.split("    return pairs\n")[1] == tail, child.change
    assert revived  # the dead loop can still come back to life


def test_a_changed_line_is_named_in_the_change():
    child = propose(OfflineProposer({"constant": 1.0}), Candidate(id=1, text=RING), 3)
    for old, line in re.findall(r"constant (\S+) -> \S+ at line (\d+)", child.change):
        assert old in RING.splitlines()[int(line) - 1]


def test_statement_edits_keep_a_leading_docstring():
    parent = Candidate(id=1, text=MIXED)
    kinds = set()
    for seed in range(100):
        child = propose(OfflineProposer({"statement": 1.0}), parent, seed)
        kinds.add(child.operator)
        functions = {f.name: f for f in ast.walk(ast.parse(child.text)) if isinstance(f, ast.FunctionDef)}
        assert ast.get_docstring(functions["weights"]) == "Keep me."
    assert kinds == {"offline:duplicate", "offline:delete", "offline:swap"}


def test_operator_swaps_keep_the_meaning_of_the_rest_of_the_expression():
    text = "# EVOLVE-BLOCK-START\nx = 2\ny = 3\nvalue = 10 - x ** 2 * y\n# EVOLVE-BLOCK-END\n"
    for seed in range(40):
        child = propose(OfflineProposer({"operator": 1.0}), Candidate(id=1, text=text), seed)
        namespace: dict = {}
        exec(child.text, namespace)
        # whatever changed, re-evaluating the printed expression from its AST gives the same value
        expr = next(
            n.value for n in ast.walk(ast.parse(child.text)) if isinstance(n, ast.Assign) and n.targets[0].id == "value"
        )
        assert eval(ast.unparse(expr), {"x": 2, "y": 3}) == namespace["value"]
        assert child.change.startswith("operator '")


@pytest.mark.parametrize("module", ["colorsys", "heapq", "bisect"])
def test_real_modules_get_valid_children_or_a_proposal_failure(module):
    """Decorators, classes, f-strings, CRLF line ends: children compile and nothing else raises."""
    source = inspect.getsource(importlib.import_module(module))
    for text in (source, source.replace("\n", "\r\n")):
        other = Candidate(id=2, text=text.replace("1", "2", 3))
        for seed in range(12):
            try:
                child = propose(OfflineProposer(), Candidate(id=1, text=text), seed, [other])
            except ProposalFailed:
                continue
            compile(child.text, "<child>", "exec")
            assert child.text != text


# ---------------------------------------------------------------- crossover


def test_crossover_of_same_shaped_parents_mixes_their_constants():
    mine = RING
    theirs = RING.replace("0.2  #", "0.3  #").replace("0.45", "0.5").replace("0.55", "0.52").replace("0.3\n", "0.1\n")
    parent, other = Candidate(id=1, text=mine), Candidate(id=2, text=theirs)
    mixed = 0
    for seed in range(40):
        child = propose(OfflineProposer({"crossover": 1.0}), parent, seed, [other])
        assert child.operator == "offline:crossover"
        assert child.parents == (1, 2)
        assert child.text not in (mine, theirs)
        assert child.change.startswith("with #2")
        values = re.findall(r"(radius|centre_x|centre_y|phase) = (\S+)", child.text)
        from_mine = sum(
            v == m
            for (_, v), (_, m) in zip(
                values, re.findall(r"(radius|centre_x|centre_y|phase) = (\S+)", mine), strict=True
            )
        )
        from_theirs = sum(
            v == t
            for (_, v), (_, t) in zip(
                values, re.findall(r"(radius|centre_x|centre_y|phase) = (\S+)", theirs), strict=True
            )
        )
        mixed += from_mine > 0 and from_theirs > 0
    assert mixed >= 20


def test_crossover_of_different_programs_takes_definitions_from_both():
    mine = "# EVOLVE-BLOCK-START\ndef f():\n    return 1\n\n\ndef g():\n    return 2\n\n\ndef h():\n    return 3\n# EVOLVE-BLOCK-END\n"
    theirs = (
        "# EVOLVE-BLOCK-START\ndef f():\n    return [10]\n\n\ndef g():\n    x = 20\n    return x\n\n\n"
        "def h():\n    return {30: 0}\n# EVOLVE-BLOCK-END\n"
    )
    parent, other = Candidate(id=5, text=mine), Candidate(id=9, text=theirs)
    for seed in range(20):
        child = propose(OfflineProposer({"crossover": 1.0}), parent, seed, [other])
        namespace: dict = {}
        exec(child.text, namespace)
        got = [namespace[name]() for name in "fgh"]
        assert any(v in (1, 2, 3) for v in got) and any(v in ([10], 20, {30: 0}) for v in got)
        assert child.parents == (5, 9)


def test_crossover_of_statement_lists_of_different_lengths_cuts_at_one_point():
    mine = "# EVOLVE-BLOCK-START\nsteps = []\nsteps.append(1)\nsteps.append(2)\n# EVOLVE-BLOCK-END\n"
    theirs = (
        "# EVOLVE-BLOCK-START\nsteps = []\nsteps.append(10)\nsteps.append(20)\nsteps.append(30)\n# EVOLVE-BLOCK-END\n"
    )
    seen = set()
    for seed in range(30):
        child = propose(
            OfflineProposer({"crossover": 1.0}),
            Candidate(id=1, text=mine),
            seed,
            [Candidate(id=2, text=theirs)],
        )
        namespace: dict = {}
        exec(child.text, namespace)
        seen.add(tuple(namespace["steps"]))
    # my first k statements, then theirs from position k on (k = 1 would just copy theirs)
    assert seen == {(1, 20, 30), (1, 2, 30)}


def test_without_a_differing_inspiration_there_is_no_crossover():
    parent = Candidate(id=1, text=RING)
    with pytest.raises(ProposalFailed, match="offline operators found no valid edit"):
        propose(OfflineProposer({"crossover": 1.0}), parent, 0, [Candidate(id=2, text=RING)])


# ---------------------------------------------------------------- reproducibility and failures


def test_the_same_rng_seed_gives_the_same_children():
    parent = Candidate(id=1, text=MIXED)
    other = Candidate(id=2, text=MIXED.replace("1.5", "2.5"))

    def run() -> list[tuple[str, str, str]]:
        rng = random.Random(1234)
        out = []
        for _ in range(40):
            random.random()  # the global generator must not matter
            child = propose(OfflineProposer(), parent, rng, [other])
            out.append((child.text, child.operator, child.change))
        return out

    random.seed(1)
    first = run()
    random.seed(2)
    assert run() == first
    assert len({text for text, _, _ in first}) > 20


def test_non_python_candidates_fail_with_a_reason_naming_the_fix():
    parent = Candidate(id=1, text="// EVOLVE-BLOCK-START\nint x = 1;\n// EVOLVE-BLOCK-END\n")
    with pytest.raises(ProposalFailed, match="support Python candidates only; configure a model") as info:
        propose(OfflineProposer(), parent, 0, language="cpp")
    assert info.value.model == "offline"


def test_a_parent_that_is_not_valid_python_fails_with_the_syntax_error():
    parent = Candidate(id=1, text="# EVOLVE-BLOCK-START\nx = (1,\n# EVOLVE-BLOCK-END\n")
    with pytest.raises(ProposalFailed, match="not valid Python"):
        propose(OfflineProposer(), parent, 0)


def test_a_block_with_nothing_to_mutate_fails_with_a_reason():
    parent = Candidate(id=1, text='x = 1\n# EVOLVE-BLOCK-START\n"""Only a docstring."""\n# EVOLVE-BLOCK-END\n')
    with pytest.raises(ProposalFailed, match="nothing to change"):
        propose(OfflineProposer(), parent, 0)


def test_the_proposer_is_one_free_arm_that_counts_what_it_made():
    proposer = OfflineProposer()
    assert proposer.arms() == ["offline"]
    child = propose(proposer, Candidate(id=1, text=RING), 0)
    proposer.observe("offline", 0.5, 0.0)
    proposer.observe("offline", 1.0, 0.0)
    stats = proposer.stats()["offline"]
    assert stats["calls"] == 2 and stats["mean_reward"] == pytest.approx(0.75) and stats["cost"] == 0.0
    assert stats["proposed"] == {child.operator: 1}
    assert child.model == "offline" and child.parents == (1,)
    asyncio.run(proposer.aclose())


def test_unknown_operator_weights_are_refused():
    with pytest.raises(ValueError, match="offline operator weights"):
        OfflineProposer({"constants": 1.0})


# ---------------------------------------------------------------- in a run


@pytest.mark.parametrize("crossing", [False, True])
def test_a_run_crosses_parents_offline_only_when_asked(tmp_path, quadratic, crossing):
    # Off by default: measured, crossing constants with inspirations kept deceptive_ridge's search
    # on its hill (benchmarks/README.md). `operators.offline_crossover=true` turns it back on.
    import evoengine

    overrides = {"operators__offline_crossover": True} if crossing else {}
    run = evoengine.run(quadratic, run_dir=tmp_path / "run", budget=60, seed=3, **overrides)
    operators = {c.operator for c in run.candidates()}
    assert ("offline:crossover" in operators) is crossing, operators
    assert {"offline:constant"} <= operators
