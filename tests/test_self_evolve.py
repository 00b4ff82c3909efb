"""Self-evolution: evoengine evolving its own harness, with scoring out of the harness's reach."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from conftest import cli, status

from evoengine.config import load_config
from evoengine.problem import load_problem
from evoengine.records import Candidate, ProposalContext
from evoengine.selfevolve import DEFAULT_HARNESS, HarnessProxy, area_under_best, inner_search

QUADRATIC = str(Path(__file__).resolve().parent / "problems" / "quadratic")


def test_area_under_the_best_so_far_curve_is_normalised_by_the_seed():
    assert area_under_best([-4.0, -2.0, None, -3.0], 4) == pytest.approx((0 + 0.5 + 0.5 + 0.5) / 4)
    assert area_under_best([2.0], 3) == 0.0  # nothing found: no area
    assert area_under_best([None, 1.0], 2) == 0.0  # an invalid seed cannot be improved on


def test_the_proxy_answers_like_the_harness_it_holds_and_advances_the_same_rng():
    from evoengine.harness import load_harness

    config = load_config(None, [])
    problem = load_problem(QUADRATIC).problem
    parent = Candidate(id=1, text=problem.seed_text(), valid=True, score=-7.0)

    def ctx(seed: int) -> ProposalContext:
        return ProposalContext(
            problem=problem,
            parent=parent,
            inspirations=[parent],
            failures=["x: y"],
            rng=random.Random(seed),
            island=0,
            attempt=1,
        )

    local, proxy = load_harness(config), HarnessProxy(DEFAULT_HARNESS, config)
    try:
        a, b = ctx(7), ctx(7)
        assert proxy.offline(a) == local.offline(b)
        assert proxy.plan(a, "m") == local.plan(b, "m")
        assert proxy.messages(a, proxy.plan(a, "m")) == local.messages(b, local.plan(b, "m"))
        assert a.rng.random() == b.rng.random()
    finally:
        proxy.close()


def test_a_harness_that_rewrites_the_scoring_gains_nothing(tmp_path):
    """The harness runs in its own process: patching the scorer there changes nothing here."""
    cheat = tmp_path / "cheat.py"
    cheat.write_text(
        DEFAULT_HARNESS.read_text()
        + """

import evoengine.selfevolve as _se
import evoengine.llm.bandit as _bandit
_se.area_under_best = lambda *args, **kwargs: 1000.0
_bandit.improvement_reward = lambda *args, **kwargs: 1.0
"""
    )
    honest = inner_search(DEFAULT_HARNESS, QUADRATIC, 1, 10, [])
    cheated = inner_search(cheat, QUADRATIC, 1, 10, [])
    assert cheated == pytest.approx(honest)
    assert cheated < 10


@pytest.mark.parametrize("proxy", [True, False])
def test_a_broken_harness_fails_its_proposals_not_the_run(tmp_path, proxy):
    broken = tmp_path / "broken.py"
    broken.write_text(
        DEFAULT_HARNESS.read_text().replace(
            "def offline_plan(ctx):",
            "def offline_plan(ctx):\n    raise RuntimeError('no plan today')\n\n\ndef _unused(ctx):",
        )
    )
    assert inner_search(broken, QUADRATIC, 1, 5, [], proxy=proxy) == 0.0
    assert inner_search(DEFAULT_HARNESS, QUADRATIC, 1, 12, [], proxy=proxy) > 0.0  # it improves on the seed


@pytest.mark.slow
def test_self_evolve_runs_end_to_end_and_writes_a_usable_harness(tmp_path):
    run_dir = tmp_path / "se"
    out = tmp_path / "harness.py"
    proc = cli(
        "self-evolve",
        "--budget",
        "5",
        "--inner-budget",
        "8",
        "--seeds",
        "1",
        "--suite",
        f"deceptive_ridge,{QUADRATIC}",
        "--run-dir",
        str(run_dir),
        "-o",
        str(out),
        "-q",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    s = status(run_dir)
    assert s["admitted"] == 5 and s["problem"] == "harness"
    with sqlite3.connect(run_dir / "archive.sqlite") as db:  # the seed harness: one score per problem of the suite
        (feedback,) = db.execute("SELECT feedback FROM candidates ORDER BY id LIMIT 1").fetchone()
    assert "deceptive_ridge:1" in feedback and "quadratic:1" in feedback, feedback
    assert out.read_text() == (run_dir / "best" / "harness.py").read_text()
    assert "EVOLVE-BLOCK-START" in out.read_text()
    # the written harness is what `harness: PATH` uses in an ordinary run
    cli(
        "run",
        QUADRATIC,
        "--budget",
        "5",
        "--set",
        f"harness={out}",
        "--run-dir",
        str(tmp_path / "use"),
        "-q",
        check=True,
    )
    lineage = cli("lineage", str(run_dir), check=True).stdout
    assert f"#{s['best_id']}" in lineage and "[seed]" in lineage
    assert DEFAULT_HARNESS.read_text().count("OFFLINE_STEP = 1.0") == 1  # the package is never modified
    # a self-evolution run is a run like any other: it reports and resumes
    report = cli("report", str(run_dir), check=True)
    assert (run_dir / "report.html").stat().st_size > 10_000, report.stdout
    cli("resume", str(run_dir), "--budget", "6", "-q", check=True, timeout=600)
    assert status(run_dir)["admitted"] == 6
