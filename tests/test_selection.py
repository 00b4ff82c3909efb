"""Parent selection: each strategy's empirical frequencies match its definition; mix, inspirations,
and determinism of the whole archive."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import statistics
from collections import Counter

import numpy as np
import pytest
from conftest import cli
from scipy.stats import chisquare

from evoengine.archive import Archive
from evoengine.config import Config, load_config
from evoengine.problem import Feature, Problem
from evoengine.records import Candidate

PROBLEM = Problem(name="toy", description="toy", initial="seed.py")
SAMPLES = 20_000


def config(selection: dict, islands: dict | None = None, elites: dict | None = None) -> Config:
    return Config(
        **{
            "seed": 7,
            "islands": {"count": 1, "population": 100, "migration_interval": 10_000, **(islands or {})},
            "selection": {
                "exploit": 1.0,
                "explore": 0.0,
                "elites": 0.0,
                "refine": False,
                "restart": False,
                **selection,
            },
            "elites": elites or {"enabled": False},
        }
    )


def population(archive: Archive, scores: list[float], island: int = 0, start: int = 1) -> list[Candidate]:
    made = []
    for i, s in enumerate(scores):
        c = Candidate(
            start + i,
            f"x = {start + i}\n",
            parents=(0,),
            island=island,
            operator="diff",
            score=s,
            valid=True,
            features={"f": (i + 0.5) / len(scores)},
        )
        archive.admit(c)
        made.append(c)
    return made


def seeded(cfg: Config, seed_score: float = -100.0, problem: Problem = PROBLEM) -> Archive:
    archive = Archive(cfg, problem)
    archive.admit(Candidate(0, "seed\n", operator="seed", score=seed_score, valid=True, features={"f": 0.0}))
    return archive


def frequencies(archive: Archive, ids: list[int], seed: int = 1) -> np.ndarray:
    rng = random.Random(seed)
    counts = Counter(archive.select(rng).parent.id for _ in range(SAMPLES))
    assert set(counts) <= set(ids)
    return np.array([counts[i] for i in ids], dtype=float)


def matches(observed: np.ndarray, expected: np.ndarray) -> bool:
    expected = expected / expected.sum() * observed.sum()
    keep = expected > 0
    assert observed[~keep].sum() == 0
    return chisquare(observed[keep], expected[keep]).pvalue > 1e-3


def test_power_law_picks_rank_r_with_probability_proportional_to_r_to_the_minus_alpha():
    archive = seeded(config({"strategy": "power_law", "alpha": 1.3}))
    made = population(archive, [float(s) for s in range(10)])
    ranked = [c.id for c in sorted(made, key=lambda c: -c.score)] + [0]
    observed = frequencies(archive, ranked)
    expected = np.array([r**-1.3 for r in range(1, 12)])
    assert matches(observed, expected)
    assert not matches(observed, np.ones(11))


def test_weighted_follows_the_sigmoid_of_score_over_mad_damped_by_children():
    archive = seeded(config({"strategy": "weighted", "sharpness": 1.0}), seed_score=4.5)
    made = population(archive, [float(s) for s in range(10)])
    children = {made[9].id: 3, made[5].id: 1}  # invalid children still count as children
    next_id = 100
    for parent, n in children.items():
        for _ in range(n):
            archive.admit(Candidate(next_id, "bad", parents=(parent,), operator="diff", valid=False))
            next_id += 1
    children[0] = len(made)  # the seed is every made candidate's parent
    members = archive.members(0)
    scores = [c.score for c in members]
    median = statistics.median(scores)
    mad = statistics.median(abs(s - median) for s in scores)
    expected = np.array([1 / (1 + math.exp(-(c.score - median) / mad)) / (1 + children.get(c.id, 0)) for c in members])
    observed = frequencies(archive, [c.id for c in members])
    assert matches(observed, expected)
    without_children = np.array([1 / (1 + math.exp(-(c.score - median) / mad)) for c in members])
    assert not matches(observed, without_children)


def test_tournament_winner_is_the_best_of_k_uniform_draws():
    archive = seeded(config({"strategy": "tournament", "tournament": 3}))
    made = population(archive, [float(s) for s in range(7)])
    ranked = [c.id for c in sorted(made, key=lambda c: -c.score)] + [0]
    n = len(ranked)
    # P(winner has rank r) = P(best of 3 >= r) - P(best of 3 >= r+1), ranks 0-based from the best
    expected = np.array([((n - r) / n) ** 3 - ((n - r - 1) / n) ** 3 for r in range(n)])
    observed = frequencies(archive, ranked)
    assert matches(observed, expected)
    assert not matches(observed, np.array([r**-1.0 for r in range(1, n + 1)]))


def test_hill_climb_always_takes_the_islands_best():
    archive = seeded(config({"strategy": "hill_climb"}))
    made = population(archive, [3.0, 9.0, 1.0])
    rng = random.Random(0)
    assert {archive.select(rng).parent.id for _ in range(200)} == {made[1].id}


def test_uniform_draws_evenly_over_filled_elite_cells():
    problem = Problem(name="toy", description="toy", initial="seed.py", features=(Feature("f", 0, 1, 5),))
    archive = seeded(config({"strategy": "uniform"}, elites={"builtin": []}), problem=problem)
    # ten candidates over five cells: each cell keeps its better one; the seed's cell 0 is taken over
    made = population(archive, [float(s) for s in range(10)])
    elites = [e.candidate.id for e in archive.elites.elites()]
    assert sorted(elites) == sorted(c.id for c in made[1::2])
    observed = frequencies(archive, elites)
    assert matches(observed, np.ones(len(elites)))


def test_shares_of_exploit_explore_and_elites_are_normalised_and_respected():
    problem = Problem(name="toy", description="toy", initial="seed.py", features=(Feature("f", 0, 1, 5),))
    cfg = config({"strategy": "hill_climb", "exploit": 5.0, "explore": 3.0, "elites": 2.0}, elites={"builtin": []})
    archive = seeded(cfg, problem=problem)
    population(archive, [float(s) for s in range(10)])
    rng = random.Random(3)
    sources = Counter(archive.select(rng).source for _ in range(SAMPLES))
    observed = np.array([sources["exploit:hill_climb"], sources["explore"], sources["elite"]])
    assert observed.sum() == SAMPLES
    assert matches(observed, np.array([5.0, 3.0, 2.0]))


def test_explore_is_uniform_over_the_island():
    archive = seeded(config({"exploit": 0.0, "explore": 1.0}))
    made = population(archive, [float(s) for s in range(8)])
    ids = [c.id for c in made] + [0]
    assert matches(frequencies(archive, ids), np.ones(len(ids)))


def test_islands_are_chosen_uniformly_and_children_stay_on_the_chosen_island():
    archive = seeded(config({"strategy": "hill_climb"}, islands={"count": 3}))
    for island in range(3):
        population(archive, [10.0 + island], island=island, start=1 + island)
    rng = random.Random(5)
    picks = [archive.select(rng) for _ in range(6000)]
    counts = Counter(s.island for s in picks)
    assert matches(np.array([counts[i] for i in range(3)], dtype=float), np.ones(3))
    assert all(s.parent.id == s.island + 1 for s in picks)  # hill climb on the chosen island


def test_inspirations_are_the_islands_best_besides_the_parent_then_other_islands():
    cfg = config(
        {"exploit": 0.0, "explore": 1.0, "top_inspirations": 2, "diverse_inspirations": 2}, islands={"count": 3}
    )
    archive = seeded(cfg)
    for island in range(3):
        population(archive, [float(s + 10 * island) for s in range(5)], island=island, start=1 + 10 * island)
    rng = random.Random(0)
    for _ in range(200):
        sel = archive.select(rng)
        ids = [c.id for c in sel.inspirations]
        assert sel.parent.id not in ids and len(ids) == len(set(ids)) == 4
        own = [c.id for c in archive.members(sel.island) if c.id != sel.parent.id][:2]
        assert ids[:2] == own
        assert all(c.id not in own and c.id != 0 for c in sel.inspirations[2:])
        assert {c.island for c in sel.inspirations[2:]} <= set(range(3)) - {sel.island}


def test_selecting_from_an_empty_archive_says_what_to_do_and_an_invalid_seed_is_still_offered():
    archive = Archive(config({}), PROBLEM)
    with pytest.raises(LookupError, match="admit the seed"):
        archive.select(random.Random(0))
    broken = Candidate(0, "seed", operator="seed", valid=False, feedback="SyntaxError")
    archive.admit(broken)
    sel = archive.select(random.Random(0))
    assert sel.parent is broken and sel.source == "seed"


def _replay(cfg: Config) -> tuple[dict, list]:
    problem = Problem(name="toy", description="toy", initial="seed.py", features=(Feature("f", 0, 1, 4),))
    archive = Archive(cfg, problem)
    archive.admit(Candidate(0, "seed = 0\n", operator="seed", score=0.0, valid=True, features={"f": 0.5}))
    data = random.Random(11)
    for cid in range(1, 1500):
        sel = archive.select(data)
        valid = data.random() < 0.85
        archive.admit(
            Candidate(
                cid,
                f"x = {cid}\n" * (1 + cid % 5),
                parents=(sel.parent.id,),
                island=sel.island,
                operator="diff",
                score=data.gauss(0, 1) if valid else None,
                valid=valid,
                features={"f": data.random()},
            )
        )
    rng = random.Random(99)
    picks = []
    for _ in range(300):
        sel = archive.select(rng)
        picks.append((sel.island, sel.parent.id, [c.id for c in sel.inspirations], sel.source))
    return archive.stats(), picks


def test_admitting_the_same_sequence_twice_gives_identical_stats_and_selections():
    cfg = Config(
        **{
            "seed": 3,
            "islands": {
                "count": 4,
                "population": 30,
                "topology": "random",
                "migration_interval": 37,
                "reset_interval": 200,
            },
            "selection": {"strategy": "weighted", "exploit": 0.6, "explore": 0.2, "elites": 0.2},
            "elites": {"builtin": ["length"], "bins": 5},
        }
    )
    first, second = _replay(cfg), _replay(cfg)
    assert first == second
    assert first[0]["resets"] > 0 and first[0]["migrations"] > 0


# ---------------------------------------------------------------- baselines and ablations


def mixed(*overrides: str) -> Archive:
    """An archive under the default preset (mix of shares, islands, MAP-Elites) plus `overrides`,
    with 40 candidates spread over the islands; the best (id 17) lives on island 1. `refine` is
    off unless asked for, so the mix's own shares show."""
    cfg = load_config(None, ["islands.count=4", "selection.refine=false", "selection.restart=false", *overrides])
    problem = Problem(name="toy", description="toy", initial="seed.py", features=(Feature("f", 0, 1, 5),))
    archive = Archive(cfg, problem)
    archive.admit(Candidate(0, "seed\n", operator="seed", score=0.0, valid=True, features={"f": 0.0}))
    for cid in range(1, 41):
        score = 100.0 if cid == 17 else float(cid % 13)
        archive.admit(
            Candidate(
                cid,
                f"x = {cid}\n",
                parents=(0,),
                island=cid % 4,
                operator="diff",
                score=score,
                valid=True,
                features={"f": (cid % 10) / 10},
            )
        )
    return archive


def test_the_iid_baseline_takes_the_seed_as_every_parent_whatever_the_mix_and_the_islands():
    chosen = picks(mixed("selection.strategy=iid"), 500)
    assert {(s.parent.id, s.source, len(s.inspirations)) for s in chosen} == {(0, "iid", 0)}


def test_the_greedy_baseline_always_refines_the_runs_current_best():
    archive = mixed("selection.strategy=greedy")
    chosen = picks(archive, 500)
    assert {(s.parent.id, s.island, s.source, len(s.inspirations)) for s in chosen} == {(17, 1, "greedy", 0)}
    archive.admit(Candidate(41, "x = 41\n", parents=(17,), island=1, operator="diff", score=101.0, valid=True))
    assert archive.select(random.Random(0)).parent.id == 41


def test_with_drift_refinement_walks_a_plateau_taking_the_latest_equal_of_the_best():
    """A child that scores the same as the run's best is a different program (copies are not
    evaluated): with `drift`, refining steps onto it, as a (1+1) algorithm accepting equal moves,
    unless it is longer than the program it would replace. The greedy baseline stays on the
    first to reach the best score."""
    walking = mixed("selection.refine=true", "selection.drift=true")
    standing = mixed("selection.refine=true", "selection.drift=false")
    greedy = mixed("selection.strategy=greedy", "selection.drift=true")
    for archive in (walking, standing, greedy):
        for cid, score in ((41, 100.0), (42, 99.0), (43, 100.0)):
            archive.admit(
                Candidate(cid, f"x = {cid}\n", parents=(17,), island=1, operator="diff", score=score, valid=True)
            )
        assert archive.best().id == 17  # the run's best is still the first to reach it

    def refined(archive: Archive) -> set[int]:
        return {s.parent.id for s in picks(archive, 300) if s.source in ("greedy", "refine")}

    assert refined(walking) == {43} and refined(standing) == {17} and refined(greedy) == {17}
    walking.admit(Candidate(44, "x = 44  # and a comment\n", parents=(43,), island=1, score=100.0, valid=True))
    assert refined(walking) == {43}  # as good, but longer: the walk does not grow the program
    by_id = {c.id: c for island in walking.islands.islands for c in island.members}
    restored = Archive(walking.config, walking.problem)
    restored.restore(walking.state(), by_id)
    assert refined(restored) == {43}


def picks(archive: Archive, n: int) -> list:
    return [archive.select(random.Random(i)) for i in range(n)]


def test_the_default_mix_is_what_the_baselines_switch_off():
    chosen = picks(mixed(), 500)
    assert len({s.parent.id for s in chosen}) > 10 and all(s.inspirations for s in chosen)


def _grow(archive: Archive, n: int, *, best_improves: bool, other: int = 3, step: float = 1.0) -> None:
    """Admit `n` children: of the run's best, which set a new best (by `step`) when `best_improves`,
    and as many of `other` (an ordinary member, or the seed: id 0), which set one otherwise."""
    for k in range(n):
        top = archive.best()
        cid = 1000 + k
        of_best = k % 2 == 0
        improves = of_best == best_improves
        score = top.score + step if improves else 1.0
        archive.admit(
            Candidate(
                cid,
                f"x = {cid}\n",
                parents=(top.id if of_best else other,),
                island=top.island,
                operator="diff",
                score=score,
                valid=True,
            )
        )


def test_refine_learns_to_take_the_best_as_parent_when_its_children_keep_improving_on_it():
    archive = mixed("selection.refine=true")
    _grow(archive, 60, best_improves=True)
    sources = Counter(s.source for s in picks(archive, 1000))
    assert sources["refine"] > 850
    refined = [s for s in picks(archive, 200) if s.source == "refine"]
    assert {s.parent.id for s in refined} == {archive.best().id}
    assert not any(s.inspirations for s in refined)  # greedy refinement's step: a plain edit of the best


def test_refine_hands_parents_back_to_the_mix_when_others_children_set_the_new_bests():
    archive = mixed("selection.refine=true")
    _grow(archive, 60, best_improves=False)
    assert Counter(s.source for s in picks(archive, 1000))["refine"] < 150
    off = mixed()
    _grow(off, 60, best_improves=True)
    assert Counter(s.source for s in picks(off, 1000))["refine"] == 0


def test_refine_forgets_so_a_stalled_best_loses_its_share():
    archive = mixed("selection.refine=true", "selection.refine_memory=50")  # the counts below are sized for it
    _grow(archive, 200, best_improves=True)  # counted forever, 100 of the best's 130 children would still win
    _grow(archive, 60, best_improves=False)
    assert Counter(s.source for s in picks(archive, 1000))["refine"] < 150


def test_a_best_that_gains_only_its_last_digits_stops_drawing_parents_to_itself():
    """A converged best whose children keep beating it by a hair (a constant's last digits)
    is not worth refining: those new bests gain under `selection.min_gain` of the climb."""
    creeping = mixed("selection.refine=true", "selection.refine_memory=50")  # the set-up's own climb forgotten
    _grow(creeping, 150, best_improves=True, step=1e-9)
    assert creeping.best().score > 100  # every child of the best was a new best...
    assert Counter(s.source for s in picks(creeping, 1000))["refine"] < 800  # ...and none counted
    counted = mixed("selection.refine=true", "selection.refine_memory=50", "selection.min_gain=0")
    _grow(counted, 150, best_improves=True, step=1e-9)
    assert Counter(s.source for s in picks(counted, 1000))["refine"] > 950


def test_with_cell_credit_a_stuck_run_keeps_its_parents_in_the_mix_while_its_children_better_the_cells():
    """Nothing sets a new best. The mix's children keep bettering a MAP-Elites cell (stepping
    stones); the best's change nothing. With `cell_credit` (on by default) that progress counts,
    so the mix keeps most parents; without it both kinds look equally idle. When nobody's
    children change anything, or only the best's fill cells (the cells around it), the credit
    changes nothing."""

    def stalled(cell_credit: float, betters: str) -> int:
        archive = mixed("selection.refine=true", f"selection.cell_credit={cell_credit}")
        for k in range(80):
            of_best = k % 2 == 0
            better = betters == ("best" if of_best else "mix")  # its cell's elite scores 12; the best is 100
            archive.admit(
                Candidate(
                    1000 + k,
                    f"x={1000 + k}\n",  # as long as the others: the same length cell
                    parents=(17 if of_best else 3,),
                    island=1,
                    operator="diff",
                    score=20.0 + k if better else 1.0,
                    valid=True,
                    features={"f": 0.5 if better else 0.0},
                )
            )
        assert archive.best().id == 17
        return Counter(s.source for s in picks(archive, 1000))["refine"]

    credited, plain = stalled(0.25, "mix"), stalled(0.0, "mix")
    assert credited < 200 and plain > 600
    assert abs(stalled(0.25, "nobody") - stalled(0.0, "nobody")) < 50
    assert abs(stalled(0.25, "best") - stalled(0.0, "best")) < 50


def test_restart_learns_to_start_again_from_the_seed_when_its_children_beat_the_best():
    archive = mixed("selection.refine=true", "selection.restart=true")
    _grow(archive, 60, best_improves=False, other=0)  # a best stuck on a local optimum the seed's edits beat
    chosen = picks(archive, 1000)
    assert Counter(s.source for s in chosen)["restart"] > 700
    assert {(s.parent.id, len(s.inspirations)) for s in chosen if s.source == "restart"} == {(0, 0)}  # iid's step
    stuck = mixed("selection.refine=true")  # restart off: the same history leaves the seed to the mix
    _grow(stuck, 60, best_improves=False, other=0)
    assert Counter(s.source for s in picks(stuck, 1000))["restart"] == 0


def test_restart_stays_rare_while_refining_the_best_pays():
    archive = mixed("selection.refine=true", "selection.restart=true")
    _grow(archive, 60, best_improves=True, other=0)
    sources = Counter(s.source for s in picks(archive, 1000))
    assert sources["refine"] > 800 and sources["restart"] < 100


def test_a_kind_of_parent_whose_children_never_improve_keeps_a_small_share_in_a_long_run():
    """Counts fade, so a kind tried rarely has almost none; it must be drawn about the run's
    rate of new bests, not at even odds (which gave the seed a quarter of the parents here)."""
    from evoengine.archive.selection import BEST, MIX, SEED, ParentSelector

    selector = ParentSelector(load_config(None, ["selection.restart=true"]).selection)
    rng, rates = random.Random(1), {BEST: 0.05, MIX: 0.02, SEED: 0.0}
    best, seed = Candidate(1, "b", score=1.0, valid=True), Candidate(0, "s", score=0.0, valid=True)
    picks = Counter()
    for t in range(2000):
        arm = selector._arm(rng, best, seed)
        picks[arm] += t >= 500
        selector.learn(arm, rng.random() < rates[arm])
    assert picks[SEED] < 0.15 * 1500 and picks[BEST] > 0.5 * 1500


def test_refine_chooses_alike_in_an_archive_restored_from_its_state():
    archive = mixed("selection.refine=true", "selection.restart=true")
    _grow(archive, 40, best_improves=True)
    by_id = {c.id: c for island in archive.islands.islands for c in island.members}
    restored = Archive(archive.config, archive.problem)
    restored.restore(archive.state(), by_id)
    assert [(s.source, s.parent.id) for s in picks(restored, 300)] == [
        (s.source, s.parent.id) for s in picks(archive, 300)
    ]


def test_selection_elites_zero_takes_no_parent_from_the_elite_cells():
    default = Counter(s.source for s in picks(mixed(), 2000))
    off = Counter(s.source for s in picks(mixed("selection.elites=0"), 2000))
    assert default["elite"] > 100 and off["elite"] == 0


def test_islands_count_one_keeps_every_child_on_one_population():
    assert len({s.island for s in picks(mixed(), 200)}) == 4
    assert {s.island for s in picks(mixed("islands.count=1"), 200)} == {0}


# ---------------------------------------------------------------- the baselines in a real run


def _run_rows(run_dir) -> list[tuple[int, list[int], float | None, str]]:
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    rows = conn.execute("SELECT id, parents, score, operator FROM candidates WHERE status='evaluated' ORDER BY closed")
    return [(cid, json.loads(parents), score, op) for cid, parents, score, op in rows]


@pytest.mark.parametrize("strategy", ["iid", "greedy"])
def test_one_key_turns_a_run_into_a_baseline(strategy, quadratic, tmp_path):
    run_dir = tmp_path / strategy
    proc = cli(
        "run", str(quadratic), "--budget", "30", "--run-dir", str(run_dir), "-q",
        "--set", f"selection.strategy={strategy}", "--set", "concurrency.deterministic=true",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = _run_rows(run_dir)
    seed = rows[0][0]
    assert rows[0][3] == "seed" and len(rows) == 30
    best_id, best = seed, rows[0][2]
    for cid, parents, score, _ in rows[1:]:
        assert parents == [seed if strategy == "iid" else best_id]  # one parent: no crossover partner
        if score is not None and score > best:
            best_id, best = cid, score
    assert best > rows[0][2]  # both baselines still search
