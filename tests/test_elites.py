"""MAP-Elites: cells keep their best, built-in descriptors, CVT for many dimensions, stats and map."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evoengine.archive import Archive
from evoengine.archive.elites import EliteArchive, text_complexity
from evoengine.config import Config
from evoengine.problem import Feature, Problem
from evoengine.records import Candidate


def problem(*features: Feature) -> Problem:
    return Problem(name="toy", description="toy", initial="seed.py", features=features)


def elites_config(**elites) -> Config:
    return Config(**{"elites": {"builtin": [], **elites}})


def cand(cid: int, score: float, text: str = "x = 1\n", **features: float) -> Candidate:
    return Candidate(
        cid,
        text,
        parents=(0,) if cid else (),
        operator="diff" if cid else "seed",
        score=score,
        valid=True,
        features=features,
    )


def test_a_better_candidate_replaces_a_cells_elite_and_a_worse_or_equal_one_does_not():
    archive = EliteArchive(elites_config().elites, problem(Feature("f", 0.0, 1.0, 4)))
    assert archive.add(cand(1, 1.0, f=0.1)).status == "new"
    assert archive.add(cand(2, 0.5, f=0.15)) is None  # same cell, worse
    assert archive.add(cand(3, 1.0, f=0.2)) is None  # same cell, equal
    placed = archive.add(cand(4, 2.0, f=0.05))
    assert (placed.status, placed.replaced) == ("improved", 1)
    assert [e.candidate.id for e in archive.elites()] == [4]
    assert archive.add(cand(5, -3.0, f=0.9)).status == "new"  # another cell, however bad
    assert sorted(e.candidate.id for e in archive.elites()) == [4, 5]


def test_stats_report_coverage_and_qd_score_with_an_offset_for_negative_scores():
    archive = EliteArchive(elites_config().elites, problem(Feature("f", 0.0, 1.0, 4)))
    for cid, score, f in [(1, -2.0, 0.1), (2, -5.0, 0.4), (3, -1.0, 0.9), (4, -9.0, 0.95)]:
        archive.add(cand(cid, score, f=f))
    stats = archive.stats()
    assert stats["cells"] == 4 and stats["filled"] == 3 and stats["coverage"] == 0.75
    assert stats["qd_offset"] == -9.0  # the lowest valid score seen
    assert stats["qd_score"] == pytest.approx((-2 + 9) + (-5 + 9) + (-1 + 9))
    fixed = EliteArchive(elites_config(qd_offset=-10.0).elites, problem(Feature("f", 0.0, 1.0, 4)))
    fixed.add(cand(1, -2.0, f=0.1))
    assert fixed.stats()["qd_score"] == pytest.approx(8.0)


def test_length_descriptor_is_log_scaled_around_the_seed():
    archive = EliteArchive(elites_config(builtin=["length"], bins=8).elites, problem())
    seed_text = "a" * 400
    archive.add(cand(0, 0.0, seed_text))
    (dim,) = archive.dimensions
    assert (dim.low, dim.high, dim.log) == (100.0, 1600.0, True)
    cells = {n: archive.add(cand(n, 1.0, "a" * n)) for n in (50, 150, 400, 800, 5000)}
    # a quarter of the seed's length or less -> first bin; 4x or more -> last bin
    assert cells[50].cell == 0 and cells[5000].cell == 7
    assert cells[150].cell < 4 <= cells[800].cell
    assert len({p.cell for p in cells.values() if p is not None}) == 5


def test_complexity_counts_distinct_tokens_not_length():
    assert text_complexity("x = 1\n") == 3
    assert text_complexity("x = 1\n" * 50) == 3  # repetition adds length, not vocabulary
    assert text_complexity("x = 1\ny = x + 2\n") == 6
    assert text_complexity("alpha beta, gamma") == 4


def test_two_problem_features_make_a_grid_and_more_dimensions_make_a_cvt():
    two = EliteArchive(elites_config().elites, problem(Feature("a", 0, 1, 3), Feature("b", 0, 1, 5)))
    two.anchor("x")
    assert two.kind == "grid" and two.cells == 15
    three = EliteArchive(
        elites_config(cells=16).elites, problem(Feature("a", 0, 1, 3), Feature("b", 0, 1, 5), Feature("c", 0, 1, 2))
    )
    three.anchor("x")
    assert three.kind == "cvt" and three.cells == 16
    one_cvt = EliteArchive(elites_config(kind="cvt", cells=8, builtin=["length"]).elites, problem())
    one_cvt.anchor("x" * 100)
    assert one_cvt.kind == "cvt" and one_cvt.cells == 8


def test_cvt_cells_are_the_same_for_the_same_seed_and_keep_their_best():
    feats = (Feature("a", 0, 1), Feature("b", 0, 1), Feature("c", 0, 1))

    def build() -> EliteArchive:
        archive = EliteArchive(elites_config(cells=12).elites, problem(*feats), seed=3)
        for i in range(60):
            archive.add(cand(i + 1, float(i % 7), a=(i * 0.37) % 1, b=(i * 0.61) % 1, c=(i * 0.13) % 1))
        return archive

    first, second = build(), build()
    assert first.map() == second.map()
    assert first.map()["centroids"] == second.map()["centroids"]
    for elite in first.elites():
        # no candidate admitted to the same cell scored higher than its elite
        assert elite.candidate.score == max(
            float(i % 7)
            for i in range(60)
            if first._cells.index(np.array([(i * 0.37) % 1, (i * 0.61) % 1, (i * 0.13) % 1])) == elite.cell
        )


def test_candidates_without_a_declared_feature_stay_out_and_are_counted():
    archive = EliteArchive(elites_config().elites, problem(Feature("f", 0, 1)))
    assert archive.add(cand(1, 1.0)) is None
    assert archive.stats()["missing_features"] == 1 and len(archive) == 0


def test_archive_reports_elite_events_stats_and_a_json_elite_map():
    cfg = Config(**{"elites": {"builtin": ["length"], "bins": 4}})
    archive = Archive(cfg, problem(Feature("f", 0.0, 1.0, 2)))
    events = archive.admit(cand(0, 0.0, "x = 0\n" * 10, f=0.2))
    assert [e.kind for e in events] == ["elite"] and events[0].data["status"] == "new"
    events = archive.admit(cand(1, 1.0, "x = 0\n" * 10, f=0.3))
    assert events[0].data == {
        "id": 1,
        "cell": events[0].data["cell"],
        "status": "improved",
        "replaced": 0,
        "score": 1.0,
    }
    assert archive.admit(cand(2, 0.5, "x = 0\n" * 10, f=0.3)) == []
    archive.admit(cand(3, 0.5, "x = 0\n" * 40, f=0.9))
    stats = archive.stats()["elites"]
    assert stats["cells"] == 8 and stats["filled"] == 2
    emap = json.loads(json.dumps(archive.elite_map()))
    assert [d["name"] for d in emap["dimensions"]] == ["f", "length"]
    assert emap["dimensions"][1]["scale"] == "log"
    filled = {c["id"]: c for c in emap["filled"]}
    assert set(filled) == {1, 3}
    assert filled[3]["features"] == {"f": 0.9, "length": 240.0}
    assert filled[3]["grid"][0] == 1 and filled[1]["grid"][0] == 0


def test_elites_never_hold_more_candidates_than_cells():
    cfg = Config(**{"elites": {"builtin": ["length"], "bins": 5}})
    archive = Archive(cfg, problem(Feature("f", 0.0, 1.0, 3)))
    archive.admit(cand(0, 0.0, "y" * 200, f=0.5))
    for i in range(1, 800):
        archive.admit(
            Candidate(
                i,
                "y" * (50 + i % 700),
                parents=(0,),
                operator="diff",
                score=float(i % 13),
                valid=True,
                features={"f": (i * 0.01) % 1},
            )
        )
    assert len(archive.elites) <= 15 == archive.stats()["elites"]["cells"]
