"""The first evaluation worker, launched before the run is known (evaluation/early.py): the
pool takes it only if it would have launched that very worker, and either way the run's own
limits and sandbox hold and a broken problem is named, not waited for."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

from conftest import cli

from evoengine.evaluation import EvaluatorPool, Limits
from evoengine.evaluation.early import EarlyWorker

# Reports the limits the evaluation runs under, and whether it sees a file outside the problem.
PROBE = """
import os, resource
from evoengine import EvalResult, Problem

problem = Problem(name="probe", description="reports its sandbox", initial="seed.py", timeout_s=5)
if os.path.exists(os.path.join(os.path.dirname(__file__), "engine-only")) and "PROBE_ENGINE" not in os.environ:
    raise RuntimeError("this problem imports only outside the sandbox")


def evaluate(path):
    return EvalResult(score=1.0, valid=True, metrics={
        "cpu_s": float(resource.getrlimit(resource.RLIMIT_CPU)[0]),
        "file_mb": resource.getrlimit(resource.RLIMIT_FSIZE)[0] / 2**20,
        "sees_outside": float(os.path.exists(OUTSIDE)),
    })
"""


def probe_problem(root: Path) -> Path:
    """The probe problem in `root`/problem, and a file beside that folder that only an evaluation
    without a filesystem view can see."""
    outside = root / "outside.txt"
    outside.write_text("not for candidates")
    folder = root / "problem"
    folder.mkdir()
    (folder / "problem.py").write_text(PROBE.replace("OUTSIDE", repr(str(outside))))
    (folder / "seed.py").write_text("x = 1\n")
    return folder


def seed_metrics(run_dir: Path) -> dict:
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    try:
        (metrics,) = conn.execute("SELECT metrics FROM candidates WHERE status='evaluated' ORDER BY seq").fetchone()
    finally:
        conn.close()
    return json.loads(metrics)


def test_a_run_scores_its_seed_in_the_early_worker_under_the_runs_limits(tmp_path):
    problem = probe_problem(tmp_path)
    run_dir = tmp_path / "run"
    args = ("--debug", "run", str(problem), "--budget", "1", "--run-dir", str(run_dir))
    proc = cli(*args, "--set", "evaluation.timeout_s=7", check=True)  # a limit the worker is told later
    assert "the first evaluation worker was launched early" in proc.stderr
    metrics = seed_metrics(run_dir)
    assert metrics["cpu_s"] == 9  # the run's timeout (+2 s of CPU), not the problem's 5 s
    if "filesystem view" in proc.stderr:
        assert metrics["sees_outside"] == 0


def test_a_run_whose_config_changes_the_sandbox_gets_a_worker_launched_for_it(tmp_path):
    problem = probe_problem(tmp_path)
    run_dir = tmp_path / "run"
    args = ("--debug", "run", str(problem), "--budget", "1", "--run-dir", str(run_dir))
    proc = cli(*args, "--set", "evaluation.max_file_mb=8", check=True)  # the worker's /tmp is sized by it
    assert "does not fit this run" in proc.stderr
    assert seed_metrics(run_dir)["file_mb"] == 8


def test_a_problem_that_fails_to_import_in_the_sandbox_is_named_not_waited_for(tmp_path):
    problem = probe_problem(tmp_path)
    (problem / "engine-only").touch()
    env = {**os.environ, "PROBE_ENGINE": "1"}  # not on the sandbox's allow-list: workers never see it
    proc = cli("run", str(problem), "--budget", "3", "--run-dir", str(tmp_path / "run"), env=env, timeout=120)
    assert proc.returncode == 2
    assert f"{problem / 'problem.py'}: importing it failed with RuntimeError" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_pool_takes_an_early_worker_only_if_it_was_launched_as_its_own(tmp_path):
    problem = probe_problem(tmp_path)

    async def run(limits: Limits) -> tuple[bool, bool, dict, str]:
        early = await EarlyWorker.start(problem)
        assert early is not None and early.helper is not None and early.folder is not None
        pid, folder = early.helper.pid, early.folder
        pool = EvaluatorPool(problem / "problem.py", 1, limits, early=early)
        try:
            await pool.start()
            result = await pool.evaluate("x = 2\n")
            taken = pool.worker_pids() == [pid]
        finally:
            await pool.close()
        return taken, folder.exists(), result.metrics, pool.isolation

    async def without(limits: Limits) -> tuple[dict, str]:
        pool = EvaluatorPool(problem / "problem.py", 1, limits)
        try:
            await pool.start()
            return (await pool.evaluate("x = 2\n")).metrics, pool.isolation
        finally:
            await pool.close()

    for limits, fits in ((Limits(timeout_s=3.0), True), (Limits(timeout_s=3.0, max_file_mb=8), False)):
        taken, folder_left, metrics, isolation = asyncio.run(run(limits))
        assert taken == fits
        assert not folder_left  # the pool removed the folder it was handed
        assert (metrics, isolation) == asyncio.run(without(limits))
        assert metrics["file_mb"] == limits.max_file_mb and metrics["cpu_s"] == 5


def test_an_early_worker_nobody_takes_is_killed_with_its_folder(tmp_path):
    problem = probe_problem(tmp_path)

    async def launch_and_discard() -> tuple[int, Path]:
        early = await EarlyWorker.start(problem)
        assert early is not None and early.helper is not None and early.folder is not None
        pid, folder = early.helper.pid, early.folder
        await early.close()
        return pid, folder

    pid, folder = asyncio.run(launch_and_discard())
    assert not folder.exists()
    assert not Path(f"/proc/{pid}").exists()
    assert asyncio.run(EarlyWorker.start(tmp_path / "no-such-problem")) is None


def test_a_run_on_a_machine_where_bubblewrap_fails_evaluates_without_it(tmp_path):
    # bubblewrap installed but unable to make namespaces (an unprivileged container, say): the
    # early worker dies at once, and the run falls back to the sandbox without it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    problem = probe_problem(tmp_path)
    run_dir = tmp_path / "run"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    cli("run", str(problem), "--budget", "3", "--run-dir", str(run_dir), env=env, timeout=120, check=True)
    assert seed_metrics(run_dir)["cpu_s"] == 7  # evaluated, in the sandbox, under the problem's limits
