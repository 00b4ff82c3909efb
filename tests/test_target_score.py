"""budget.target_score: a run stops once its best score reaches the target, a stop reason of its own."""

from __future__ import annotations

import pytest
import yaml
from conftest import cli, status


def _target(run_dir):
    return yaml.safe_load((run_dir / "config.yaml").read_text())["budget"]["target_score"]


def test_the_target_score_is_set_by_run_and_changed_by_resume(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    cli("run", str(quadratic), "--budget", "6", "--target-score", "100", "--run-dir", str(run_dir), "-q", check=True)
    assert _target(run_dir) == 100
    cli("resume", str(run_dir), "--budget", "8", "--target-score", "50.5", "-q", check=True)
    assert _target(run_dir) == 50.5


@pytest.mark.slow
def test_a_run_stops_when_its_best_reaches_the_target_score(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    # The seed scores -7.0025; the offline operators pass -6.5 within a few dozen candidates.
    proc = cli("run", str(quadratic), "--budget", "500", "--target-score", "-6.5", "--run-dir", str(run_dir), "-q")
    assert proc.returncode == 0 and "stopped: target after" in proc.stdout
    s = status(run_dir)
    assert s["best_score"] >= -6.5 and s["admitted"] < 500
