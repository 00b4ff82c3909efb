"""The bundled problems: seeds score as documented, bad candidates are invalid with a reason,
and a candidate cannot raise its own score (radii are recomputed, packings are replayed)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest

from evoengine.problem import BEHAVIOUR, EvalResult, load_problem

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"

GRID_PLUS_ONE = [[(i + 0.5) / 5, (j + 0.5) / 5] for i in range(5) for j in range(5)] + [[0.4, 0.4]]


def load(name: str):
    return load_problem(PROBLEMS / name)


def candidate(tmp_path: Path, body: str, name: str = "candidate.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def evaluate(name: str, path: str) -> EvalResult:
    return EvalResult.coerce(load(name).evaluate(path))


# ------------------------------------------------------------------ every problem


@pytest.mark.parametrize(
    "name",
    [
        "circle_packing",
        "bin_packing",
        "deceptive_ridge",
        "symbolic_regression",
        "cap_set",
        "sorting_network",
        "noisy_knapsack",
    ],
)
def test_bundled_problem_loads_by_name_with_features_and_an_evolve_block(name):
    loaded = load_problem(name)
    problem = loaded.problem
    assert problem.name == name
    assert len(problem.features) == 2
    seed = problem.seed_text()
    assert seed.count("# EVOLVE-BLOCK-START") == 1 and seed.count("# EVOLVE-BLOCK-END") == 1
    assert (problem.root / "README.md").is_file()


@pytest.mark.parametrize(
    ("name", "best_known"),
    [
        ("circle_packing", ["2.635", "2.636"]),
        ("bin_packing", ["0.68", "3.11"]),
        ("cap_set", ["45", "112"]),
        ("sorting_network", ["12 comparators", "0.988"]),
    ],
)
def test_best_known_values_stay_out_of_prompts_and_evaluators(name, best_known):
    loaded = load(name)
    source = loaded.path.read_text()
    for value in best_known:
        assert value not in loaded.problem.description
        assert value not in source


# ------------------------------------------------------------------ circle packing


def test_circle_packing_seed_is_valid_and_scores_about_one():
    problem = load("circle_packing").problem
    result = evaluate("circle_packing", str(problem.initial_path))
    assert result.valid, result.feedback
    assert 0.9 < result.score < 1.05
    for feature in problem.features:
        assert feature.low <= result.features[feature.name] <= feature.high
    assert "Largest empty spot" in result.feedback


def test_circle_outside_the_square_is_invalid_and_named(tmp_path):
    centres = [list(c) for c in GRID_PLUS_ONE]
    centres[3] = [1.02, 0.4]
    path = candidate(tmp_path, f"def construct_packing():\n    return {centres!r}\n")
    result = evaluate("circle_packing", path)
    assert not result.valid
    assert "circle 3 centre (1.02, 0.4) lies outside the unit square" in result.feedback


@pytest.mark.parametrize(
    ("returned", "reason"),
    [
        (GRID_PLUS_ONE[:25], "shape (25, 2)"),
        ([[float("nan"), 0.5]] + GRID_PLUS_ONE[1:], "not finite"),
        ("not centres", "26 centres"),
    ],
)
def test_circle_packing_with_wrong_shape_or_values_is_invalid(returned, reason):
    result = load("circle_packing").module.score_packing(returned)
    assert not result.valid
    assert reason in result.feedback


def test_reported_fake_radii_do_not_raise_the_circle_score(tmp_path):
    path = candidate(
        tmp_path,
        f"""
        def construct_packing():
            centres = {GRID_PLUS_ONE!r}
            return centres, [0.5] * 26  # claims sum 13
        """,
    )
    result = evaluate("circle_packing", path)
    assert result.valid, result.feedback
    assert result.score == pytest.approx(2.5 + (math.sqrt(2) - 1) / 10, abs=1e-6)
    assert "not scored" in result.feedback and "overlap" in result.feedback


def test_circle_candidate_that_crashes_is_invalid_with_its_error(tmp_path):
    path = candidate(tmp_path, "def construct_packing():\n    raise RuntimeError('no idea')\n")
    result = evaluate("circle_packing", path)
    assert not result.valid
    assert "construct_packing() failed" in result.feedback and "no idea" in result.feedback


def test_lp_radii_of_grid_plus_one_give_two_point_five_four():
    # A 5x5 grid of radius-0.1 circles gives 2.5; a 26th centre at a grid interstice fits a
    # circle of radius (sqrt(2) - 1) / 10 between its four neighbours.
    module = load("circle_packing").module
    radii = module.lp_radii(np.array(GRID_PLUS_ONE))
    assert radii.sum() == pytest.approx(2.5 + (math.sqrt(2) - 1) / 10, abs=1e-6)
    assert radii.sum() == pytest.approx(2.5414, abs=1e-4)


@pytest.mark.parametrize("seed", range(5))
def test_lp_radii_are_feasible_and_beat_the_half_distance_radii(seed):
    module = load("circle_packing").module
    centres = np.random.default_rng(seed).uniform(0, 1, size=(26, 2))
    radii = module.lp_radii(centres)
    wall = module.wall_distances(centres)
    i, j = np.triu_indices(26, 1)
    dist = np.linalg.norm(centres[i] - centres[j], axis=1)
    assert (radii >= 0).all() and (radii <= wall + 1e-12).all()
    assert (radii[i] + radii[j] <= dist + 1e-12).all()
    half = np.minimum(
        wall, np.array([np.delete(np.linalg.norm(centres - c, axis=1), k).min() / 2 for k, c in enumerate(centres)])
    )
    assert radii.sum() >= half.sum() - 1e-9


# ------------------------------------------------------------------ bin packing

BEST_FIT = """
import numpy as np

# EVOLVE-BLOCK-START
def priority(item, bins):
    return -(bins - item)
# EVOLVE-BLOCK-END
"""


def _with_frozen_pack(priority_block: str) -> str:
    """A bin packing candidate: the seed's frozen `pack` with another EVOLVE-BLOCK."""
    seed = load("bin_packing").problem.seed_text()
    start, end = seed.index("# EVOLVE-BLOCK-START"), seed.index("# EVOLVE-BLOCK-END")
    return seed[:start] + textwrap.dedent(priority_block).strip() + "\n" + seed[end:]


def test_bin_packing_seed_is_first_fit_and_best_fit_beats_it(tmp_path):
    loaded = load("bin_packing")
    ref = loaded.module.REFERENCE
    first = evaluate("bin_packing", str(loaded.problem.initial_path))
    assert first.valid, first.feedback
    assert first.score == pytest.approx(-ref["first_fit_train_excess_pct"])
    assert first.features["first_fit_agreement"] == 1.0
    assert set(first.instances) == {"train_0", "train_1", "train_2", "train_3"}

    block = """
    # EVOLVE-BLOCK-START
    def priority(item: float, bins: np.ndarray) -> np.ndarray:
        return -(bins - item)
    """
    best = evaluate("bin_packing", candidate(tmp_path, _with_frozen_pack(block)))
    assert best.valid, best.feedback
    assert best.score == pytest.approx(-ref["best_fit_train_excess_pct"])
    assert best.metrics["heldout_excess_pct"] == pytest.approx(ref["best_fit_heldout_excess_pct"])
    assert best.features["best_fit_agreement"] == 1.0
    assert best.score > first.score


def test_bin_packing_reference_numbers_match_a_recomputation_and_best_fit_beats_first_fit():
    module = load("bin_packing").module
    recomputed = module.reference_excess()
    assert recomputed == pytest.approx(module.REFERENCE, rel=1e-9)
    for split in ("train", "heldout"):
        assert 0 < recomputed[f"best_fit_{split}_excess_pct"] < recomputed[f"first_fit_{split}_excess_pct"]


def test_bin_packing_assignment_over_capacity_is_rejected(tmp_path):
    # A candidate that rewrites the frozen loop to claim one bin per instance.
    path = candidate(
        tmp_path,
        """
        def priority(item, bins):
            return bins

        def pack(instances, capacity):
            return [[0] * len(items) for items in instances]
        """,
    )
    result = evaluate("bin_packing", path)
    assert not result.valid
    assert "training instance 0" in result.feedback and "exceed its capacity" in result.feedback


def test_bin_packing_rejects_a_new_bin_opened_while_an_old_one_had_room():
    module = load("bin_packing").module
    train, heldout = module.instances()
    opened_every_time = [list(range(len(items))) for items in train + heldout]
    result = module.score_assignments(opened_every_time, train, heldout)
    assert not result.valid
    assert "opened a new bin although bin 0 had room" in result.feedback


def test_bin_packing_priority_with_wrong_shape_is_invalid(tmp_path):
    block = """
    # EVOLVE-BLOCK-START
    def priority(item: float, bins: np.ndarray) -> np.ndarray:
        return np.zeros(3)
    """
    result = evaluate("bin_packing", candidate(tmp_path, _with_frozen_pack(block)))
    assert not result.valid
    assert "one score per bin" in result.feedback


# ------------------------------------------------------------------ deceptive ridge


def test_deceptive_seed_is_valid_on_the_slope_of_the_local_hill():
    loaded = load("deceptive_ridge")
    result = evaluate("deceptive_ridge", str(loaded.problem.initial_path))
    assert result.valid, result.feedback
    assert 0.3 < result.score < 1.0
    assert result.features == {"x": 0.25, "y": 0.3}


def test_deceptive_landscape_traps_greedy_ascent_below_the_global_peak():
    landscape = load("deceptive_ridge").module.landscape
    assert landscape(0.35, 0.35) == pytest.approx(1.0)
    assert landscape(0.65, 0.65) == pytest.approx(2.0)
    # Coordinate ascent from the seed with steps of every size up to 0.1 ends on the hill.
    x, y = 0.25, 0.3
    steps = [s * sign for s in (0.1, 0.05, 0.02, 0.01, 0.005) for sign in (1, -1)]
    improved = True
    while improved:
        improved = False
        for dx, dy in [(s, 0) for s in steps] + [(0, s) for s in steps]:
            if landscape(x + dx, y + dy) > landscape(x, y) + 1e-12:
                x, y, improved = x + dx, y + dy, True
    assert landscape(x, y) == pytest.approx(1.0, abs=1e-3)
    # The way to the peak climbs a ridge that stays below the hill until the very top.
    ridge = [landscape(0.65, y) for y in np.linspace(0.2, 0.6, 9)]
    assert all(a < b for a, b in zip(ridge, ridge[1:], strict=False)) and max(ridge) < 1.0
    assert landscape(0.5, 0.4) < 0.3  # the valley between hill and ridge


def test_deceptive_point_outside_the_square_is_invalid(tmp_path):
    path = candidate(tmp_path, "def design():\n    return [1.2, 0.3]\n")
    result = evaluate("deceptive_ridge", path)
    assert not result.valid
    assert "must lie in [0, 1]" in result.feedback


# ------------------------------------------------------------------ symbolic regression


def test_symbolic_regression_seed_is_the_plane_and_the_exact_formula_scores_twelve(tmp_path):
    loaded = load("symbolic_regression")
    assert "x**4" not in loaded.problem.description and "Nguyen" not in loaded.problem.description
    seed = evaluate("symbolic_regression", str(loaded.problem.initial_path))
    assert seed.valid, seed.feedback
    assert 0.4 < seed.score < 0.7
    exact = candidate(
        tmp_path,
        """
        def f(x, y):
            return x**4 - x**3 + 0.5 * y**2 - y

        def predict(points):
            return [f(x, y) for x, y in points]
        """,
    )
    assert evaluate("symbolic_regression", exact).score == pytest.approx(12.0, abs=1e-3)


def test_symbolic_regression_feedback_shows_training_points_only():
    module = load("symbolic_regression").module
    train, heldout = module.datasets()
    mean = float(module.target(heldout).mean())
    result = module.score_predictions(np.full(len(train) + len(heldout), mean))
    assert result.valid and result.score == pytest.approx(0.0, abs=1e-9)  # predicting the mean scores 0
    for x, y in heldout:
        assert f"{x:.4f}, {y:.4f}" not in result.feedback
    assert any(f"{x:.4f}, {y:.4f}" in result.feedback for x, y in train)


def test_symbolic_regression_non_finite_prediction_is_invalid(tmp_path):
    path = candidate(
        tmp_path,
        """
        def predict(points):
            return [1.0 / (x - x) if x > 0.5 else 0.0 for x, y in points]
        """,
    )
    result = evaluate("symbolic_regression", path)
    assert not result.valid
    assert "ZeroDivisionError" in result.feedback or "non-finite" in result.feedback


# ------------------------------------------------------------------ cap set


def test_cap_set_seed_keeps_the_two_to_the_n_cap_and_weights_on_its_terms_beat_it():
    loaded = load("cap_set")
    assert evaluate("cap_set", str(loaded.problem.initial_path)).score == 32
    module = loaded.module
    vectors = [tuple(v) for v in module.vectors().tolist()]
    weighted = [2 * v.count(1) + 2 * v.count(2) - 0.5 * v.count(1) * v.count(2) for v in vectors]
    result = module.score_priorities(weighted)
    assert result.valid and result.score == 36
    assert module.is_cap(module.vectors()[module.greedy_cap(np.argsort(-np.asarray(weighted), kind="stable"))])


def test_cap_set_construction_is_the_evaluators_and_lines_are_detected():
    module = load("cap_set").module
    line = np.array([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [2, 2, 2, 2, 2]])
    assert not module.is_cap(line)
    # Whatever order the priority gives, the result is a maximal cap: no vector can be added.
    rng = np.random.default_rng(0)
    vectors = module.vectors()
    kept = module.greedy_cap(rng.permutation(len(vectors)))
    assert module.is_cap(vectors[kept])
    assert all(not module.is_cap(vectors[[*kept, k]]) for k in range(len(vectors)) if k not in kept)


@pytest.mark.parametrize(
    ("returned", "reason"),
    [("[1.0, 2.0]", "one float per vector"), ("[float('nan')] * 243", "must be finite")],
)
def test_cap_set_priorities_of_the_wrong_count_or_not_finite_are_invalid(tmp_path, returned, reason):
    path = candidate(tmp_path, f"def priorities(n):\n    return {returned}\n")
    result = evaluate("cap_set", path)
    assert not result.valid
    assert reason in result.feedback


# ------------------------------------------------------------------ sorting network


def test_sorting_network_seed_sorts_some_inputs_and_an_optimal_network_scores_highest(tmp_path):
    loaded = load("sorting_network")
    seed = evaluate("sorting_network", str(loaded.problem.initial_path))
    assert seed.valid and seed.metrics["sorted_share"] == 22 / 64 and seed.metrics["comparators"] == 5
    module = loaded.module
    bubble = [[i, i + 1] for passes in range(5) for i in range(5 - passes)]
    optimal = [[0, 5], [1, 3], [2, 4], [1, 2], [3, 4], [0, 3], [2, 5], [0, 1], [2, 3], [4, 5], [1, 2], [3, 4]]
    assert module.score_network(bubble).score == pytest.approx(1 - 0.015)
    assert module.score_network(optimal).score == pytest.approx(1 - 0.012)
    one_short = module.score_network(optimal[:-1])
    assert one_short.metrics["sorted_share"] < 1 and one_short.score < module.score_network(bubble).score
    assert "It fails on input" in one_short.feedback


def test_sorting_network_with_a_wire_out_of_range_is_invalid_and_named(tmp_path):
    path = candidate(tmp_path, "def comparators(n):\n    return [(0, 1), (4, 6)]\n")
    result = evaluate("sorting_network", path)
    assert not result.valid
    assert "comparator 1 is (4, 6)" in result.feedback


# ------------------------------------------------------------------ noisy knapsack


def test_noisy_knapsack_scores_vary_between_evaluations_but_the_pool_mean_does_not():
    loaded = load("noisy_knapsack")
    seed = str(loaded.problem.initial_path)
    results = [evaluate("noisy_knapsack", seed) for _ in range(6)]
    assert all(r.valid for r in results)
    assert len({r.score for r in results}) > 1
    assert {r.artifacts["pool_mean"] for r in results} == {"0.603248"}
    assert "pool_mean" not in results[0].metrics and "0.6032" not in results[0].feedback


def test_noisy_knapsack_better_policy_has_a_higher_pool_mean(tmp_path):
    source = load("noisy_knapsack").problem.initial_path.read_text()
    path = candidate(tmp_path, source.replace("threshold = 0.0", "threshold = 1.2"))
    result = evaluate("noisy_knapsack", path)
    assert float(result.artifacts["pool_mean"]) == pytest.approx(0.875, abs=1e-3)  # the seed's is 0.603


def test_noisy_knapsack_taking_an_item_that_does_not_fit_is_invalid():
    module = load("noisy_knapsack").module
    everything = [[True] * module.ITEMS for _ in range(module.POOL_SIZE)]
    result = module.score_decisions(everything, np.random.default_rng(0))
    assert not result.valid
    assert "instance 0" in result.feedback and "must fit" in result.feedback


def test_noisy_knapsack_programs_that_decide_alike_share_a_behaviour(tmp_path):
    source = load("noisy_knapsack").problem.initial_path.read_text()
    floor = source.replace("    return weight", "    ratio = value // weight\n    return weight")
    texts = {  # under floor division every threshold in (0, 1] takes the same items
        "floor_low": floor.replace("threshold = 0.0", "threshold = 0.482"),
        "floor_high": floor.replace("threshold = 0.0", "threshold = 0.9"),
        "ratio": source.replace("threshold = 0.0", "threshold = 1.2"),
    }
    results = {k: evaluate("noisy_knapsack", candidate(tmp_path, t, f"{k}.py")) for k, t in texts.items()}
    behaviour = {k: r.artifacts[BEHAVIOUR] for k, r in results.items()}
    assert behaviour["floor_low"] == behaviour["floor_high"] != behaviour["ratio"]
    assert results["floor_low"].artifacts["pool_mean"] == results["floor_high"].artifacts["pool_mean"]
