"""Peers' problem folders (OpenEvolve's and ShinkaEvolve's shapes, written here) run as they
are, their config mapped, and `python -m evoengine.porting` makes them native in one step."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TEST_PROBLEMS, cli, status

import evoengine
from evoengine.config import load_config
from evoengine.peers import open_problem as load_problem
from evoengine.porting import prepare_run

HAS_OPENEVOLVE = importlib.util.find_spec("openevolve") is not None
HAS_SHINKA = importlib.util.find_spec("shinka") is not None


def _copy(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(TEST_PROBLEMS / name, tmp_path / name))


def _files(folder: Path) -> dict[Path, bytes]:
    """Every file of a folder but Python's bytecode caches, with its bytes."""
    return {
        p.relative_to(folder): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _candidate(tmp_path: Path, seed: Path, old: str, new: str) -> str:
    """A candidate file in a folder of its own: the seed with one edit."""
    folder = tmp_path / f"candidate-{len(list(tmp_path.glob('candidate-*')))}"
    folder.mkdir()
    path = folder / seed.name
    path.write_text(seed.read_text().replace(old, new))
    return str(path)


@pytest.mark.slow
def test_an_openevolve_folder_runs_as_it_is_with_its_config_mapped(tmp_path):
    folder = _copy("openevolve_shape", tmp_path)
    before = _files(folder)
    run_dir = tmp_path / "run"
    proc = cli("run", str(folder), "--run-dir", str(run_dir), check=True)
    assert "not mapped (no evoengine equivalent): log_level, checkpoint_interval" in proc.stderr
    s = status(run_dir)
    assert s["admitted"] == 41  # max_iterations 40 children, and the seed
    assert s["best_score"] > s["seed_score"]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["seed"] == 7 and saved["islands"]["count"] == 2 and saved["islands"]["population"] == 100
    seed = evoengine.open_run(run_dir).candidates()[0]
    assert seed.metrics["runs"] == 1.0 and "distance" in seed.metrics  # both cascade stages ran
    assert seed.score == pytest.approx(seed.metrics["combined_score"])
    assert _files(folder) == before


def test_the_cascade_stops_a_program_that_fails_its_first_stage(tmp_path):
    loaded = load_problem(TEST_PROBLEMS / "openevolve_shape")
    seed = loaded.problem.initial_path
    assert loaded.problem.description.startswith("Move the point (x, y)")  # prompt.system_message
    broken = loaded.evaluate(_candidate(tmp_path, seed, "y = 2.0", "y = 1 / 0"))
    assert broken.valid and broken.score == 0.0  # OpenEvolve's fitness: the mean of the numbers
    assert broken.metrics == {"runs": 0.0} and "ZeroDivisionError" in broken.feedback
    better = loaded.evaluate(_candidate(tmp_path, seed, "x = 3.0", "x = 1.2"))
    assert better.metrics["runs"] == 1.0 and better.score > loaded.evaluate(str(seed)).score


@pytest.mark.slow
def test_openevolves_pair_runs_with_evaluator_and_resumes(tmp_path):
    folder = _copy("openevolve_shape", tmp_path)
    run_dir = tmp_path / "run"
    seed, evaluator = folder / "initial_program.py", folder / "evaluator.py"
    cli("run", str(seed), "--evaluator", str(evaluator), "--budget", "12", "--run-dir", str(run_dir), "-q", check=True)
    assert status(run_dir)["admitted"] == 12  # --budget beats their max_iterations
    cli("resume", str(run_dir), "--budget", "20", "-q", check=True)
    assert status(run_dir)["admitted"] == 20


@pytest.mark.slow
@pytest.mark.skipif(not HAS_OPENEVOLVE, reason="needs openevolve: pip install 'evoengine[openevolve]'")
def test_an_evaluation_result_with_artifacts_feeds_back_to_the_next_prompt(tmp_path):
    folder = _copy("openevolve_shape", tmp_path)
    run_dir = tmp_path / "run"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ("--evaluator", str(folder / "evaluator_artifacts.py"), "--budget", "8", "--run-dir", str(run_dir), "-q")
    cli("run", str(folder / "initial_program.py"), *args, env=env, check=True)
    seed = evoengine.open_run(run_dir).candidates()[0]
    assert seed.artifacts["hint"] == "move x down" and "hint: move x down" in seed.feedback
    assert seed.metrics["distance"] > 0
    assert list((tmp_path / "cache" / "evoengine" / "peers").glob("*/problem.py"))  # the pair's problem file


@pytest.mark.slow
def test_a_shinka_folder_runs_as_it_is(tmp_path):
    folder = _copy("shinka_shape", tmp_path)
    before = _files(folder)
    run_dir = tmp_path / "run"
    proc = cli("run", str(folder), "--set", "models=[]", "--run-dir", str(run_dir), check=True)
    assert "mapped from" in proc.stderr and "db_config.archive_size" in proc.stderr
    s = status(run_dir)
    assert s["admitted"] == 30  # evo_config.num_generations
    assert s["best_score"] > s["seed_score"]
    seed = evoengine.open_run(run_dir).candidates()[0]
    assert seed.metrics == {"squared_error": pytest.approx(0.7625)}  # public numbers
    assert seed.artifacts["private"] == '{"target": [0.8, -0.4, 0.25]}'  # private: kept, not shown
    assert seed.feedback == "weight 0 is the furthest off"  # text_feedback
    assert _files(folder) == before


def test_an_incorrect_shinka_candidate_is_invalid_with_its_error(tmp_path):
    loaded = load_problem(TEST_PROBLEMS / "shinka_shape")
    assert loaded.problem.description.startswith("Choose three weights")  # task_sys_msg of run_evo.py
    assert loaded.problem.timeout_s == 20  # job_config.time
    result = loaded.evaluate(_candidate(tmp_path, loaded.problem.initial_path, "0.1, 0.1, 0.1", "0.1, 9.0, 0.1"))
    assert not result.valid and result.score is None
    assert result.feedback.startswith("incorrect: ValueError: weights must be three numbers in [-2, 2]")


@pytest.mark.skipif(not HAS_SHINKA, reason="needs shinka-evolve: pip install 'evoengine[shinka]'")
def test_an_evaluator_built_on_run_shinka_eval_is_scored(tmp_path):
    loaded = load_problem(TEST_PROBLEMS / "shinka_eval")
    result = loaded.evaluate(_candidate(tmp_path, loaded.problem.initial_path, "0.1, 0.1, 0.1", "0.8, -0.4, 0.2"))
    assert result.valid and result.score == pytest.approx(1 / (1 + 0.05**2))
    assert result.feedback == "squared error 0.0025"
    wrong = loaded.evaluate(_candidate(tmp_path, loaded.problem.initial_path, "0.1, 0.1, 0.1", "0.1, 9.0, 0.1"))
    assert not wrong.valid and "weights must be three numbers" in wrong.feedback


@pytest.mark.skipif(HAS_SHINKA, reason="shows the message given when shinka-evolve is not installed")
def test_a_missing_peer_package_is_named_with_its_pip_command(tmp_path):
    proc = cli("run", str(_copy("shinka_eval", tmp_path)), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert "evaluate.py imports shinka" in proc.stderr and "pip install 'evoengine[shinka]'" in proc.stderr


def test_a_preset_given_by_the_user_wins_over_the_peers_config():
    folder = TEST_PROBLEMS / "openevolve_shape"
    assert prepare_run(folder, None, "small") == (folder, [])
    assert "seed=7" in prepare_run(folder)[1]


@pytest.mark.slow
def test_porting_makes_a_native_problem_in_one_step(tmp_path):
    folder = _copy("openevolve_shape", tmp_path)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["llm"] = {
        "api_base": "http://127.0.0.1:9/v1",
        "api_key": "${MY_KEY}",
        "temperature": 0.4,
        "models": [{"name": "small-model", "weight": 0.8}, {"name": "big-model", "max_tokens": 900}],
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "problems" / "points"
    step = [sys.executable, "-m", "evoengine.porting", str(folder), "-o", str(out)]
    proc = subprocess.run(step, capture_output=True, text=True, check=True)
    assert f"evoengine run {out} -c {out / 'evoengine.yaml'}" in proc.stdout
    ported = load_config(out / "evoengine.yaml")
    assert [(m.name, m.base_url, m.api_key_env, m.temperature) for m in ported.models] == [
        ("small-model", "http://127.0.0.1:9/v1", "MY_KEY", 0.4),
        ("big-model", "http://127.0.0.1:9/v1", "MY_KEY", 0.4),
    ]
    assert ported.models[1].max_tokens == 900 and ported.budget.candidates == 41
    native = load_problem(out)
    assert native.path == out / "problem.py" and native.problem.initial == "initial_program.py"
    run_dir = tmp_path / "run"
    cli("run", str(out), "--set", "models=[]", "--budget", "10", "--run-dir", str(run_dir), "-q", check=True)
    assert status(run_dir)["admitted"] == 10
