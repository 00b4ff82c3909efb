"""How runs end, and what a second process, a stuck endpoint, a failing evaluator or a
mistyped value cannot do to them: each end is fast, honest and named."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import EVOENGINE, REPO, cli, status

from evoengine.config import load_config
from evoengine.errors import ConfigError
from evoengine.problem import EvalResult

pytest_plugins = ["scripted_server"]


def _rows(run_dir: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _config(tmp_path: Path, server, name: str = "m", **more) -> str:
    cfg = {"models": [server.model(name, timeout_s=10.0).dump()], **more}
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


# ---------------------------------------------------------------- one process per run


@pytest.mark.slow
def test_two_resumes_of_one_run_exactly_one_runs_and_the_budget_holds(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    cli("run", str(quadratic), "--budget", "5", "--run-dir", str(run_dir), "-q", check=True)
    command = [*EVOENGINE, "resume", str(run_dir), "--budget", "150", "-q"]
    procs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    time.sleep(0.3)
    procs.append(subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outcomes = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    refused = [o for o in outcomes if o[0] == 2]
    ran = [o for o in outcomes if o[0] == 0]
    assert len(refused) == 1 and len(ran) == 1, outcomes
    message = refused[0][2]
    assert "in use by another evoengine process (pid " in message and "Traceback" not in message
    assert str(procs[0].pid) in message or str(procs[1].pid) in message
    assert status(run_dir)["admitted"] == 150  # the budget held: one process spent it


@pytest.mark.slow
def test_status_reads_a_run_while_another_process_holds_it(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    command = [*EVOENGINE, "run", str(quadratic), "--budget", "400", "--run-dir", str(run_dir)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / ".lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status(run_dir)["problem"] == "quadratic"  # read-only commands take no lock
        second = cli("resume", str(run_dir), "-q")
        assert second.returncode == 2 and f"pid {proc.pid}" in second.stderr
        while status(run_dir)["running_pid"] is None and time.monotonic() < deadline:
            time.sleep(0.05)  # (the lock file exists a moment before it names its process)
        assert f"running    in process {proc.pid}" in cli("status", str(run_dir), check=True).stdout
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    said = cli("status", str(run_dir), check=True).stdout
    assert "stopped    interrupted" in said and "running" not in said


@pytest.mark.slow
def test_a_full_disk_stops_the_run_with_what_to_do_and_a_resume_loses_nothing(tmp_path, quadratic):
    # A 9 MB disk, 6 MB of it taken by another file: the run fills the rest within a few dozen
    # candidates. The disk exists only inside bubblewrap, so the run, a copy of its folder at
    # the stop, the freeing of space and the resume all happen there.
    disk = tmp_path / "disk"
    disk.mkdir()
    bwrap = ["bwrap", "--dev-bind", "/", "/", "--size", "9000000", "--tmpfs", str(disk)]
    try:
        usable = subprocess.run([*bwrap, "true"], capture_output=True, timeout=30).returncode == 0
    except FileNotFoundError:
        usable = False
    if not usable:
        pytest.skip("needs bubblewrap able to mount a small tmpfs")
    evoengine = f"{sys.executable} -m evoengine.cli"
    script = f"""
        head -c 6000000 /dev/zero > {disk}/filler
        {evoengine} run {quadratic} --budget 100000 --run-dir {disk}/run -q > {tmp_path}/out 2> {tmp_path}/err
        echo $? > {tmp_path}/rc
        cp -r {disk}/run {tmp_path}/at_stop
        rm {disk}/filler
        {evoengine} resume {disk}/run --budget 300 -q > /dev/null 2> {tmp_path}/resume_err && cp -r {disk}/run {tmp_path}/resumed
    """
    subprocess.run([*bwrap, "bash", "-c", script], cwd=REPO, timeout=600, check=True)
    err = (tmp_path / "err").read_text()
    assert (tmp_path / "rc").read_text().strip() == "2" and "Traceback" not in err, err
    assert "database or disk is full. Nothing admitted is lost" in err and f"evoengine resume {disk}/run" in err
    assert (tmp_path / "resumed").is_dir(), (tmp_path / "resume_err").read_text()
    rows = "SELECT id, seq, text, score FROM candidates WHERE seq IS NOT NULL ORDER BY seq"
    kept = _rows(tmp_path / "at_stop", rows)
    assert 10 < len(kept) < 300
    after = _rows(tmp_path / "resumed", rows)
    assert after[: len(kept)] == kept and len(after) == 300
    assert status(tmp_path / "resumed")["stopped"] == {"reason": "budget", "message": ""}


@pytest.mark.slow
def test_a_closed_terminal_stops_the_run_cleanly_and_says_so(tmp_path, quadratic):
    # The run writes to a terminal; the terminal goes (its master side closed: every later write
    # fails) and the run gets SIGHUP, as when an ssh session drops.
    import pty

    master, terminal = pty.openpty()
    run_dir = tmp_path / "run"
    command = [*EVOENGINE, "run", str(quadratic), "--budget", "100000", "--run-dir", str(run_dir)]
    proc = subprocess.Popen(command, cwd=REPO, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
            (run_dir / "archive.sqlite").exists() and status(run_dir)["admitted"] >= 20
        ):
            if select.select([master], [], [], 0.2)[0]:
                os.read(master, 65536)  # what a terminal would show
        os.close(master)
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    s = status(run_dir)
    assert s["stopped"]["reason"] == "interrupted" and "terminal closed (SIGHUP)" in s["stopped"]["message"]
    assert "nohup" in s["stopped"]["message"] and s["in_flight"] == 0 and s["running_pid"] is None
    kept = _rows(run_dir, "SELECT id, text, score FROM candidates WHERE seq IS NOT NULL ORDER BY seq")
    cli("resume", str(run_dir), "--budget", str(len(kept) + 10), "-q", check=True)
    assert (
        _rows(run_dir, "SELECT id, text, score FROM candidates WHERE seq IS NOT NULL ORDER BY seq")[: len(kept)] == kept
    )


def test_a_resume_refused_at_its_models_pre_flight_leaves_the_run_as_it_was(tmp_path, quadratic, dead_url):
    run_dir = tmp_path / "run"
    cli("run", str(quadratic), "--budget", "20", "--run-dir", str(run_dir), "-q", check=True)
    before = status(run_dir)
    models = f"models=[{{name: m, base_url: '{dead_url}', api_key_env: null, max_retries: 0}}]"
    proc = cli("resume", str(run_dir), "--budget", "40", "--set", models, "-q")
    assert proc.returncode == 2 and "model pre-flight check failed, nothing was spent" in proc.stderr
    after = status(run_dir)
    assert after["stopped"] == {"reason": "budget", "message": ""}  # the last run's stop, not the refusal
    assert after["archive"] == before["archive"] and after["admitted"] == 20  # islands and cells as they were


# ---------------------------------------------------------------- values that mean something else


@pytest.mark.parametrize(
    "override, key",
    [
        ("islands.count=yes", "islands.count"),
        ("budget.candidates=on", "budget.candidates"),
        ("novelty.enabled=1", "novelty.enabled"),
        ("concurrency.deterministic=0", "concurrency.deterministic"),
    ],
)
def test_yaml_booleans_are_not_numbers_and_numbers_are_not_booleans(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_a_valid_flag_must_be_a_real_boolean():
    result = EvalResult.coerce({"score": 1.0, "valid": "false"})
    assert not result.valid and "valid" in result.feedback and "'false'" in result.feedback
    assert EvalResult.coerce({"score": 1.0, "valid": True}).valid
    assert not EvalResult.coerce({"score": 1.0, "valid": 0}).valid  # 0/1 are read as the booleans they spell


@pytest.mark.slow
@pytest.mark.parametrize("budget", ["0", "-5"])
def test_resume_with_a_budget_below_one_is_refused_by_the_same_rule_as_the_config(tmp_path, quadratic, budget):
    run_dir = tmp_path / "run"
    cli("run", str(quadratic), "--budget", "4", "--run-dir", str(run_dir), "-q", check=True)
    before = (run_dir / "config.yaml").read_text()
    proc = cli("resume", str(run_dir), "--budget", budget, "-q")
    assert proc.returncode == 2 and "budget.candidates" in proc.stderr and "greater than or equal to 1" in proc.stderr
    assert (run_dir / "config.yaml").read_text() == before


@pytest.mark.slow
def test_a_resume_with_nothing_to_do_says_so_and_changes_nothing(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    cli("run", str(quadratic), "--budget", "6", "--run-dir", str(run_dir), "-q", check=True)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}
    proc = cli("resume", str(run_dir), "--budget", "4", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do: the run already has 6 candidates" in proc.stdout
    assert "stopped: budget after 6 candidates" in proc.stdout
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == before


# ---------------------------------------------------------------- stops with their own reasons


@pytest.mark.slow
def test_a_run_stops_at_its_target_score(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    proc = cli("run", str(quadratic), "--budget", "300", "--set", "budget.target_score=-5", "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert "stopped: target after" in proc.stdout and "resume" not in proc.stdout.split("lineage")[0]
    admitted = status(run_dir)["admitted"]
    assert admitted < 300
    best = _rows(run_dir, "SELECT MAX(score) FROM candidates WHERE valid=1")[0][0]
    assert best >= -5
    scores = [s for (s,) in _rows(run_dir, "SELECT score FROM candidates WHERE status='evaluated' ORDER BY seq")]
    assert max(s for s in scores[:-4] if s is not None) < -5 or admitted <= 6  # it stopped soon after


@pytest.mark.slow
def test_an_evaluator_that_fails_every_child_stops_the_run_after_a_short_streak(tmp_path, quadratic):
    problem = tmp_path / "broken_eval"
    problem.mkdir()
    (problem / "initial.py").write_text((quadratic / "initial.py").read_text())
    source = (
        (quadratic / "problem.py")
        .read_text()
        .replace(
            "def evaluate(path: str) -> EvalResult:\n",
            "def evaluate(path: str) -> EvalResult:\n"
            "    if open(path).read() != open(__file__.replace('problem.py', 'initial.py')).read():\n"
            "        raise ImportError(\"No module named 'helper_for_children'\")\n",
        )
    )
    (problem / "problem.py").write_text(source)
    run_dir = tmp_path / "run"
    proc = cli("run", str(problem), "--budget", "300", "--run-dir", str(run_dir))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "stopped: failing" in proc.stdout
    assert "the last 20 candidates were all invalid for the same reason" in proc.stdout
    assert "helper_for_children" in proc.stdout and f"evoengine resume {run_dir}" in proc.stdout
    s = status(run_dir)
    assert s["admitted"] == 21  # the seed and the streak
    assert s["stopped"]["reason"] == "failing" and "helper_for_children" in s["stopped"]["message"]
    said = cli("status", str(run_dir), check=True).stdout
    assert "stopped    failing: the last 20 candidates were all invalid for the same reason" in said


@pytest.mark.slow
def test_children_that_do_not_compile_never_take_an_evaluation(tmp_path, scripted_server):
    scripted_server.script("m", "```python\ndef construct_packing(:\n    return [[0.5, 0.5]] * 26\n```\n")
    run_dir = tmp_path / "run"
    config = _config(tmp_path, scripted_server, operators={"diff": 0.0, "full": 1.0, "crossover": 0.0})
    proc = cli("run", "circle_packing", "-c", config, "--budget", "20", "--run-dir", str(run_dir), "-q")
    assert proc.returncode == 1 and "proposals all failed" in proc.stdout
    assert _rows(run_dir, "SELECT COUNT(*) FROM candidates WHERE status='evaluated'") == [(1,)]  # the seed only
    failed = _rows(run_dir, "SELECT kind, reason FROM candidates WHERE status='failed'")
    assert failed and all("does not compile" in reason for _, reason in failed), failed[:3]


@pytest.mark.slow
def test_an_endpoint_that_never_answers_stops_the_run_in_bounded_time(tmp_path):
    from scripted_server import ScriptedServer

    server = ScriptedServer(timeout_sleep_s=120).start()
    try:
        server.script("m", lambda request: "timeout")  # it takes the request and never replies
        cfg = {"models": [server.model("m", timeout_s=1.0, max_retries=1).dump()]}
        cfg["budget"] = {"silence_s": 4.0}
        path = tmp_path / "stuck.yaml"
        path.write_text(yaml.safe_dump(cfg))
        run_dir = tmp_path / "run"
        proc = cli("run", "circle_packing", "-c", str(path), "--budget", "50", "--run-dir", str(run_dir), "-q")
    finally:
        server.stop()
    assert proc.returncode == 1
    assert "stopped: no reply" in proc.stdout and "no model has answered for 4 s" in proc.stdout
    assert server.url.rsplit("/", 1)[0] in proc.stdout


# ---------------------------------------------------------------- replays that end or diverge


@pytest.mark.slow
def test_a_replay_that_runs_out_of_recording_says_so(tmp_path, scripted_server):
    from test_model_run import improving_model

    scripted_server.script("good", improving_model)
    config = _config(tmp_path, scripted_server, "good")
    first, second = tmp_path / "first", tmp_path / "second"
    cli("run", "circle_packing", "-c", config, "--budget", "8", "--run-dir", str(first), "-q", check=True)
    scripted_server.stop()
    proc = cli(
        "run", "circle_packing", "-c", config, "--set", f"replay={first}", "--budget", "20",
        "--run-dir", str(second), "-q",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "stopped: recording ended after 8 candidates" in proc.stdout
    assert f"the recording in {first} holds no more proposals" in proc.stdout


@pytest.mark.slow
def test_a_diverged_replay_stops_at_once_with_the_divergence(tmp_path, scripted_server):
    from test_model_run import improving_model

    scripted_server.script("good", improving_model)
    config = _config(tmp_path, scripted_server, "good", concurrency={"proposals": 2, "evaluations": 2})
    first, second = tmp_path / "first", tmp_path / "second"
    cli("run", "circle_packing", "-c", config, "--budget", "12", "--run-dir", str(first), "-q", check=True)
    scripted_server.stop()
    started = time.monotonic()
    proc = cli(
        "run", "circle_packing", "-c", config, "--set", f"replay={first}", "--set", "seed=7", "--budget", "12",
        "--run-dir", str(second), "-q",
    )  # fmt: skip
    took = time.monotonic() - started
    assert proc.returncode == 2 and "diverged" in proc.stderr, proc.stdout + proc.stderr
    assert took < 30, f"the divergence took {took:.0f} s to end the run"  # it used to wait ~100 s


# ---------------------------------------------------------------- text no store, file or page can carry


@pytest.mark.slow
def test_lone_surrogates_from_a_model_and_an_evaluator_are_stored_and_shown(tmp_path, scripted_server):
    problem = tmp_path / "echo"
    problem.mkdir()
    (problem / "initial.py").write_text(
        "# EVOLVE-BLOCK-START\ndef params():\n    return (0.1, 0.2, 0.3)\n# EVOLVE-BLOCK-END\n"
    )
    (problem / "problem.py").write_text(
        "from evoengine import EvalResult, Problem\n"
        "problem = Problem(name='echo', description='d', initial='initial.py', timeout_s=10)\n"
        "def evaluate(path):\n"
        "    text = open(path).read()\n"
        "    return EvalResult(score=float(len(text)), feedback='echo \\ud800 ' + text[-40:],\n"
        "                      metrics={'m\\udfff': 1.0}, artifacts={'a': 'x\\ud834'})\n"
    )

    def reply(request: dict) -> str:
        return "```python\n# EVOLVE-BLOCK-START\ndef params():\n    return (1, 2, 3)  # \ud800\n# EVOLVE-BLOCK-END\n```"

    scripted_server.script("m", reply)
    config = _config(tmp_path, scripted_server, operators={"diff": 0.0, "full": 1.0, "crossover": 0.0})
    run_dir = tmp_path / "run"
    proc = cli("run", str(problem), "-c", config, "--budget", "4", "--run-dir", str(run_dir), "-q")
    assert proc.returncode in (0, 1), proc.stderr  # it may stop on duplicates; it never crashes
    assert "Traceback" not in proc.stderr
    feedback = [f for (f,) in _rows(run_dir, "SELECT feedback FROM candidates WHERE status='evaluated'")]
    assert any("echo \\ud800" in f for f in feedback)
    replies = [r for (r,) in _rows(run_dir, "SELECT reply FROM model_calls WHERE reply IS NOT NULL")]
    assert replies and all("\\ud800" in r for r in replies)
    assert json.loads(cli("status", str(run_dir), "--json", check=True).stdout)["admitted"] >= 1
    assert cli("report", str(run_dir), "-o", str(tmp_path / "r.html")).returncode == 0
