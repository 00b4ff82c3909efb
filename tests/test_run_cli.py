"""End-to-end runs of the engine through the `evoengine` command, with real processes."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import EVOENGINE, REPO, as_schema_1, cli, problem_folder, status

from evoengine.store import SCHEMA_VERSION

pytest_plugins = ["scripted_server"]


def _rows(run_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT id, seq, text, parents, score, valid FROM candidates WHERE status='evaluated' ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


def test_offline_run_improves_the_seed_and_reports_it(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    proc = cli("run", str(quadratic), "--budget", "60", "--run-dir", str(run_dir), "-q", check=True)
    assert "no model configured" in proc.stderr
    assert "best score" in proc.stdout and str(run_dir) in proc.stdout
    s = status(run_dir)
    assert s["admitted"] == 60
    assert s["best_score"] > s["seed_score"] + 0.25
    best_file = run_dir / "best" / "quadratic.py"
    assert best_file.is_file()
    best = cli("best", str(run_dir), check=True).stdout
    assert best == best_file.read_text()
    assert (run_dir / "config.yaml").is_file()


def test_status_text_shows_islands_and_best(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    cli("run", str(quadratic), "--budget", "20", "--run-dir", str(run_dir), "-q", check=True)
    text = cli("status", str(run_dir), check=True).stdout
    assert "20 admitted" in text and "best" in text and "islands" in text


def test_a_store_from_before_schedules_is_read_and_upgraded_on_resume(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    cli("run", str(quadratic), "--budget", "12", "--run-dir", str(run_dir), "-q", check=True)
    as_schema_1(run_dir)
    assert status(run_dir)["admitted"] == 12  # read as it is
    cli("resume", str(run_dir), "--budget", "20", "-q", check=True)
    assert status(run_dir)["admitted"] == 20
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    closed = [c for (c,) in conn.execute("SELECT closed FROM candidates WHERE status='evaluated' ORDER BY seq")]
    assert closed[:12] == [None] * 12  # counting on from the 12+ proposals closed before
    assert closed[12] >= 13 and len(set(closed[12:])) == 8
    assert (
        conn.execute("SELECT COUNT(*) FROM candidates WHERE status='evaluated' AND digest IS NULL").fetchone()[0] == 0
    )
    assert conn.execute("SELECT closed FROM resume").fetchone()[0] >= 20  # the snapshot a next resume starts from


def test_unknown_config_key_names_the_key_and_the_nearest_valid_one(tmp_path, quadratic):
    proc = cli("run", str(quadratic), "--set", "islands.cuont=3", "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "islands.cuont" in proc.stderr and "islands.count" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_broken_problem_file_names_the_file(tmp_path):
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "problem.py").write_text("import this_module_does_not_exist\n")
    proc = cli("run", str(bad), "--run-dir", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert str(bad / "problem.py") in proc.stderr and "this_module_does_not_exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_invalid_seed_is_refused_with_the_evaluator_feedback(tmp_path, quadratic):
    prob = tmp_path / "badseed"
    prob.mkdir()
    (prob / "problem.py").write_text((quadratic / "problem.py").read_text())
    (prob / "initial.py").write_text("# EVOLVE-BLOCK-START\ndef params():\n    return 'nope'\n# EVOLVE-BLOCK-END\n")
    proc = cli("run", str(prob), "--run-dir", str(tmp_path / "r"), "-q")
    assert proc.returncode == 2
    assert "seed scores invalid" in proc.stderr and "three numbers" in proc.stderr


@pytest.mark.slow
def test_resume_after_sigkill_keeps_every_admitted_candidate(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    budget = 80
    proc = subprocess.Popen(
        [
            *EVOENGINE,
            "run",
            str(quadratic),
            "--budget",
            str(budget),
            "--run-dir",
            str(run_dir),
            "-q",
            "--set",
            "concurrency.evaluations=2",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if (run_dir / "archive.sqlite").exists() and len(_rows(run_dir)) >= 25:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(run_dir)
    assert 25 <= len(before) < budget

    cli("resume", str(run_dir), "-q", check=True)
    after = _rows(run_dir)
    assert after[: len(before)] == before  # nothing admitted before the kill changed
    assert len(after) == budget  # the budget counted on from where it was
    ids = [r[0] for r in after]
    assert len(set(ids)) == len(ids)
    known = set(ids)
    import json

    for row in after:
        assert set(json.loads(row[3])) <= known, f"candidate {row[0]} has a dangling parent"


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [*EVOENGINE, "run", str(quadratic), "--budget", "100000", "--run-dir", str(run_dir), "-q"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not ((run_dir / "archive.sqlite").exists() and len(_rows(run_dir)) >= 10):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"evoengine resume {run_dir}" in out
    n = len(_rows(run_dir))
    cli("resume", str(run_dir), "--budget", str(n + 10), "-q", check=True)
    assert len(_rows(run_dir)) == n + 10


def test_from_run_seeds_a_new_run_with_the_best_of_an_earlier_one(tmp_path, quadratic):
    first = tmp_path / "first"
    cli("run", str(quadratic), "--budget", "40", "--run-dir", str(first), "-q", check=True)
    second = tmp_path / "second"
    cli("run", str(quadratic), "--budget", "10", "--run-dir", str(second), "--from", str(first), "-q", check=True)
    conn = sqlite3.connect(second / "archive.sqlite")
    imported = conn.execute("SELECT origin, score FROM candidates WHERE operator='import'").fetchall()
    assert imported and all(origin.startswith(f"{first}#") for origin, _ in imported)
    assert max(s for _, s in imported) == status(first)["best_score"]
    assert status(second)["best_score"] >= status(first)["best_score"]


def test_python_api_runs_and_reads_a_search(tmp_path, quadratic):
    import evoengine

    run = evoengine.run(quadratic, run_dir=tmp_path / "api", budget=15, islands__count=2)
    cands = run.candidates()
    assert len(cands) == 15
    assert run.best.score == max(c.score for c in cands if c.valid)
    graph = evoengine.open_run(tmp_path / "api").lineage()
    assert graph.number_of_nodes() == 15


@pytest.mark.slow
def test_compare_puts_a_search_beside_its_baselines_at_their_common_budget(tmp_path, quadratic):
    runs = []
    for strategy, budget in (("power_law", 25), ("iid", 20), ("greedy", 30)):
        run_dir = tmp_path / strategy
        cli("run", str(quadratic), "--budget", str(budget), "--set", f"selection.strategy={strategy}",
            "--run-dir", str(run_dir), "-q", check=True)  # fmt: skip
        runs.append(run_dir)
    table = cli("compare", *map(str, runs), check=True).stdout.splitlines()
    header = table[0].split()
    assert header[:3] == ["run", "budget.candidates", "selection.strategy"] and "best@20" in header
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert set(rows) == {"power_law", "iid", "greedy"}
    assert rows["iid"][2] == "iid" and rows["greedy"][3] == "30"
    assert header[-1] == "stopped" and all(row[-1] == "budget" for row in rows.values())
    best_at = header.index("best@20")
    for name, run_dir in zip(("power_law", "iid", "greedy"), runs, strict=True):
        conn = sqlite3.connect(run_dir / "archive.sqlite")
        scores = [s for (s,) in conn.execute("SELECT score FROM candidates WHERE seq <= 20 AND valid=1")]
        conn.close()
        assert float(rows[name][best_at]) == pytest.approx(max(scores), rel=1e-5)


def _best_at(run_dir: Path, budget: int) -> float:
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    try:
        return conn.execute("SELECT max(score) FROM candidates WHERE seq <= ? AND valid=1", (budget,)).fetchone()[0]
    finally:
        conn.close()


def _setup_rows(stdout: str) -> dict[str, list[str]]:
    """The `setup` table that `compare` prints after the runs' own: setup -> its cells."""
    lines = stdout.split("\n\n")[1].splitlines()
    return {line.split()[0]: line.split() for line in lines[1:]}


@pytest.mark.slow
def test_baselines_pair_the_search_with_both_baselines_seed_by_seed_and_go_on_where_they_stopped(tmp_path, quadratic):
    root = tmp_path / "cmp"
    proc = cli("baselines", str(quadratic), "--seeds", "2", "--budget", "12", "--run-dir", str(root), "-q",
               "--setup", "no-refine", "selection.refine=false", check=True)  # fmt: skip
    names = sorted(p.name for p in root.iterdir())
    assert names == sorted(f"{s}-s{k}" for s in ("search", "iid", "greedy", "no-refine") for k in (0, 1))
    for name in names:
        config = (root / name / "config.yaml").read_text()
        assert f"seed: {name[-1]}\n" in config and status(root / name)["admitted"] == 12
    assert "strategy: iid" in (root / "iid-s1" / "config.yaml").read_text()
    assert "refine: false" in (root / "no-refine-s0" / "config.yaml").read_text()
    rows = _setup_rows(proc.stdout)
    assert list(rows) == ["search", "iid", "greedy", "no-refine"] and rows["greedy"][1] == "2"
    gains = [_best_at(root / f"greedy-s{k}", 12) - _best_at(root / f"search-s{k}", 12) for k in (0, 1)]
    assert float(rows["greedy"][3]) == pytest.approx(sum(gains) / 2, abs=1e-3)
    assert _setup_rows(cli("compare", str(root), check=True).stdout) == rows  # the folder stands for its runs
    cli("report", str(root), check=True)
    assert (root / "compare.html").is_file()

    # A third seed, one of whose runs was started by hand and stopped short: the six finished runs
    # are kept as they are, the short one is resumed to the budget, the rest are made.
    before = {name: (root / name / "archive.sqlite").stat().st_mtime_ns for name in names}
    cli("run", str(quadratic), "--budget", "5", "--set", "seed=2", "--run-dir", str(root / "search-s2"), "-q",
        check=True)  # fmt: skip
    first_five = _rows(root / "search-s2")
    proc = cli("baselines", str(quadratic), "--seeds", "3", "--budget", "12", "--run-dir", str(root), "-q", check=True)
    assert {name: (root / name / "archive.sqlite").stat().st_mtime_ns for name in names} == before
    assert _rows(root / "search-s2")[:5] == first_five and status(root / "search-s2")["admitted"] == 12
    assert all(status(root / f"{s}-s2")["admitted"] == 12 for s in ("iid", "greedy"))
    assert _setup_rows(proc.stdout)["iid"][1] == "3"
    assert "3 runs to make or finish (6 done before): 3 setups x 3 seeds of 12 candidates" in proc.stderr
    proc = cli("baselines", str(quadratic), "--seeds", "3", "--budget", "12", "--run-dir", str(root),
               "--set", "selection.refine=false", "-q")  # fmt: skip
    assert proc.returncode == 2 and "search-s0 was run with another config" in proc.stderr
    assert "selection.refine" in proc.stderr and "--run-dir" in proc.stderr


@pytest.mark.slow
def test_baselines_stopped_by_ctrl_c_keep_what_each_run_made_and_go_on_from_there(tmp_path, quadratic):
    root = tmp_path / "cmp"
    command = [*EVOENGINE, "baselines", str(quadratic), "--seeds", "1", "--jobs", "2"]
    proc = subprocess.Popen([*command, "--budget", "5000", "--run-dir", str(root), "-q"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
        (root / name / "archive.sqlite").exists() and len(_rows(root / name)) >= 20 for name in ("search-s0", "iid-s0")
    ):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the command and its runs alike
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err and f"--run-dir {root}" in err
    kept = {name: _rows(root / name) for name in ("search-s0", "iid-s0")}
    assert all(20 <= len(rows) < 5000 for rows in kept.values()) and not (root / "greedy-s0").exists()
    said = cli("compare", str(root), check=True).stdout
    for name, rows in kept.items():
        assert f"{name} stopped short of its budget (interrupted) after {len(rows)} candidates" in said
    assert f"all are compared at {min(map(len, kept.values()))} candidates" in said
    budget = max(len(rows) for rows in kept.values()) + 10
    cli(*command[3:], "--budget", str(budget), "--run-dir", str(root), "-q", check=True)
    for name, rows in kept.items():
        assert _rows(root / name)[: len(rows)] == rows and len(_rows(root / name)) == budget
    assert len(_rows(root / "greedy-s0")) == budget


def test_baselines_stop_at_the_first_run_that_fails_and_start_no_other(tmp_path):
    problem = problem_folder(
        tmp_path / "broken",
        "from evoengine.problem import Problem\n"
        'problem = Problem(name="broken", description="d", initial="initial.py", language="python", kind="program")\n'
        "def evaluate(path):\n"
        '    raise RuntimeError("the evaluator is broken")\n',
        "# EVOLVE-BLOCK-START\nx = 1\n# EVOLVE-BLOCK-END\n",
    )
    root = tmp_path / "cmp"
    proc = cli("baselines", str(problem), "--seeds", "3", "--budget", "10", "--run-dir", str(root), "-q")
    assert proc.returncode != 0 and "the evaluator is broken" in proc.stderr
    assert "no further run was started" in proc.stderr and f"--run-dir {root}" in proc.stderr
    assert sorted(p.name for p in root.iterdir()) == ["search-s0"]


def test_baselines_say_what_they_will_spend_before_the_first_run(tmp_path, quadratic, dead_url):
    config = tmp_path / "model.yaml"
    config.write_text(
        yaml.safe_dump(
            {"models": [{"name": "m", "base_url": dead_url, "api_key_env": None, "max_retries": 0, "price_in": 1.0}]}
        )
    )
    root = tmp_path / "cmp"
    args = ["baselines", str(quadratic), "--seeds", "3", "--budget", "10", "-c", str(config), "--run-dir", str(root)]
    proc = cli(*args, "--set", "budget.cost_usd=0.5", "-q")
    plan = "9 runs to make or finish (0 done before): 3 setups x 3 seeds of 10 candidates"
    assert f"{plan}; each run may spend up to $0.5 (budget.cost_usd: $4.5 in all)" in proc.stderr
    assert proc.returncode != 0 and "no further run was started" in proc.stderr  # nobody answers
    proc = cli(*args, "-q")
    assert f"{plan}; no budget.cost_usd is set, so only the candidates bound each run's model spend" in proc.stderr


def test_a_noisy_run_keeps_one_candidate_per_behaviour_and_pools_the_scores_of_its_copies(tmp_path):
    """noisy_knapsack fingerprints what a policy decides: most offline edits of a threshold
    decide alike, and each such child is one more evaluation of the candidate it copies."""
    run_dir = tmp_path / "run"
    on = ("--set", "evaluation.pool_copies=true")
    cli("run", "noisy_knapsack", "--budget", "50", "--run-dir", str(run_dir), "-q", *on, check=True)
    cli("resume", str(run_dir), "--budget", "80", "-q", check=True)  # rebuilt from the store, copies among it
    conn = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT id, kind, reason, metrics, artifacts FROM candidates WHERE status='evaluated'"
    ).fetchall()
    conn.close()
    copies = [r for r in rows if r[1] == "copy"]
    kept = {r[0]: r for r in rows if r[1] is None and "behaviour" in r[4]}  # (valid ones: invalid have none)
    assert len(rows) == 80 and len(copies) >= 10
    behaviour = [json.loads(r[4])["behaviour"] for r in kept.values()]
    assert len(set(behaviour)) == len(behaviour)  # (80 candidates: none left the one island)
    named = [int(re.match(r"behaves as candidate (\d+) \(the same behaviour\)", r[2]).group(1)) for r in copies]
    for original, count in collections.Counter(named).items():
        metrics = json.loads(kept[original][3])
        assert metrics["pooled"] >= count and metrics["rechecks"] >= metrics["pooled"]
    s = status(run_dir)
    assert s["failure_kinds"]["copy"] == len(copies) and s["best_id"] in kept  # a copy's own score is no best
