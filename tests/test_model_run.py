"""End-to-end searches driven by models: the real `evoengine` command over real HTTP to the
scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import random
import re
import sqlite3

import pytest
import yaml
from conftest import cli, status

pytest_plugins = ["scripted_server"]

FENCE = re.compile(r"```[a-z]*\n(.*?)\n```", re.S)
CONSTANT = re.compile(r"^(\s*)(outer_radius|inner_radius|outer_phase|inner_phase) = (-?[0-9.]+)\s*$", re.M)


def _parent(request: dict) -> str:
    prompt = request["messages"][-1]["content"]
    return FENCE.search(prompt).group(1)


def improving_model(request: dict, salt: str = "") -> str:
    """A model with one idea: widen the rings of a circle packing (and jiggle their phases),
    answering in whatever reply format the prompt asks for; the same prompt gets the same reply
    unless `salt` differs (a sampling model's)."""
    prompt = request["messages"][-1]["content"]
    parent = _parent(request)
    rng = random.Random(prompt + salt)
    match = rng.choice(list(CONSTANT.finditer(parent)))
    indent, name, value = match.groups()
    if name.endswith("radius"):
        new = min(0.48, max(0.05, float(value) + rng.uniform(-0.01, 0.04)))
    else:
        new = float(value) + rng.uniform(-0.3, 0.3)
    new_line = f"{indent}{name} = {new:.5f}"
    if "<<<<<<< SEARCH" in prompt:
        return f"Push the ring outwards.\n<<<<<<< SEARCH\n{match.group(0)}\n=======\n{new_line}\n>>>>>>> REPLACE\n"
    child = parent.replace(match.group(0), new_line, 1)
    return f"Here it is:\n```python\n{child}\n```\n"


def _config(tmp_path, server, **extra) -> str:
    cfg = {
        "extends": "default",
        "models": [server.model("good", price_in=1.0, price_out=2.0, timeout_s=10.0).dump()],
        "operators": {"diff": 0.5, "full": 0.3, "crossover": 0.2},
        "concurrency": {"proposals": 2, "evaluations": 2},
        **extra,
    }
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.slow
def test_model_driven_run_improves_circle_packing_with_all_three_operators(tmp_path, scripted_server):
    scripted_server.script("good", improving_model)
    run_dir = tmp_path / "run"
    # This model improves almost every time, so `refine` would rightly take nearly every parent
    # as the best, with no inspirations and so no crossover; the operators are what is tested.
    config = _config(tmp_path, scripted_server, selection={"refine": False})
    proc = cli(
        "run",
        "circle_packing",
        "-c",
        config,
        "--budget",
        "40",
        "--run-dir",
        str(run_dir),
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    assert "no model configured" not in proc.stderr
    s = status(run_dir)
    assert s["best_score"] > s["seed_score"] + 0.1
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    operators = {op for (op,) in conn.execute("SELECT operator FROM candidates WHERE status='evaluated'")}
    assert {"diff", "full", "crossover"} <= operators
    crossover_parents = [
        json.loads(p)
        for (p,) in conn.execute("SELECT parents FROM candidates WHERE status='evaluated' AND operator='crossover'")
    ]
    assert all(len(p) == 2 for p in crossover_parents)
    calls, tokens_in, cost = conn.execute(
        "SELECT COUNT(*), SUM(tokens_in), SUM(cost) FROM model_calls WHERE purpose='propose'"
    ).fetchone()
    assert calls == len(scripted_server.calls("good"))
    assert cost == pytest.approx(s["spend"]) and cost > 0 and tokens_in > 0


@pytest.mark.slow
def test_garbage_replies_are_failed_proposals_and_the_run_goes_on(tmp_path, scripted_server):
    replies = iter(range(10**6))

    def flaky(request: dict) -> str:
        return "I am not sure what you mean." if next(replies) % 2 else improving_model(request)

    scripted_server.script("good", flaky)
    run_dir = tmp_path / "run"
    proc = cli(
        "run",
        "circle_packing",
        "-c",
        _config(tmp_path, scripted_server),
        "--budget",
        "15",
        "--run-dir",
        str(run_dir),
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    reasons = [r for (r,) in conn.execute("SELECT reason FROM candidates WHERE status='failed'")]
    assert reasons and all(r for r in reasons)
    assert status(run_dir)["admitted"] == 15


def test_a_dead_endpoint_stops_the_run_before_it_starts_with_one_clear_error(tmp_path, scripted_server, dead_url):
    cfg = {"models": [{"name": "m", "base_url": dead_url, "api_key_env": None, "timeout_s": 1.0, "max_retries": 0}]}
    path = tmp_path / "dead.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = cli("run", "circle_packing", "-c", str(path), "--run-dir", str(tmp_path / "run"), "-q")
    assert proc.returncode == 2
    assert dead_url in proc.stderr and "Traceback" not in proc.stderr
    assert "snapshot" not in proc.stderr  # nothing about a store that was rightly discarded
    assert not (tmp_path / "run").exists()  # nothing left behind to block a rerun


@pytest.mark.parametrize(
    "reply, novel",
    [
        ("NOVEL", True),
        ("novel", True),
        ("NOT_NOVEL", False),
        ("Not novel.", False),
        ("not-novel", False),
        ("I think it is NOT NOVEL", False),
        ("", False),
        ("unsure", False),
    ],
)
def test_the_novelty_judge_is_read_however_it_spells_its_verdict(reply, novel):
    from evoengine.engine import judge_says_novel

    assert judge_says_novel(reply) is novel


@pytest.mark.slow
def test_a_model_judge_rejects_near_duplicates_and_its_calls_are_recorded(tmp_path, scripted_server):
    scripted_server.script("good", improving_model)
    scripted_server.script("judge", "NOT_NOVEL")
    config = _config(tmp_path, scripted_server, novelty={"threshold": 0.5, "judge": "judge", "max_retries": 1})
    cfg = yaml.safe_load(open(config))
    cfg["models"].append(scripted_server.model("judge", timeout_s=10.0).dump())
    cfg["bandit"] = {"kind": "uniform"}
    cfg["operators"] = {"diff": 1.0, "full": 0.0, "crossover": 0.0}
    open(config, "w").write(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    proc = cli("run", "circle_packing", "-c", config, "--budget", "20", "--run-dir", str(run_dir), "-q")
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    reasons = [r for (r,) in conn.execute("SELECT reason FROM candidates WHERE status='failed'")]
    judged = [r for r in reasons if "judge agreed" in r]
    assert judged, reasons[:5]
    assert conn.execute("SELECT COUNT(*) FROM model_calls WHERE purpose='judge'").fetchone()[0] >= len(judged)
    assert proc.returncode == 1 and "proposals all failed" in proc.stdout


def _record_then_replay(
    tmp_path, server, config: str, budget: int, *, resume_at: int | None = None
) -> tuple[list, list]:
    """Run (stopping at `resume_at` and resuming), stop the server, run again from the record:
    every row of both stores, by id."""
    first, second = tmp_path / "first", tmp_path / "second"
    cli(
        "run",
        "circle_packing",
        "-c",
        config,
        "--budget",
        str(resume_at or budget),
        "--run-dir",
        str(first),
        "-q",
        check=True,
    )
    if resume_at:
        cli("resume", str(first), "--budget", str(budget), "-q", check=True)
    server.stop()  # nothing answers any more: every reply must come from the record
    cli(
        "run",
        "circle_packing",
        "-c",
        config,
        "--set",
        f"replay={first}",
        "--budget",
        str(budget),
        "--run-dir",
        str(second),
        "-q",
        check=True,
    )

    def rows(run):
        conn = sqlite3.connect(run / "archive.sqlite")
        return conn.execute(
            "SELECT id, status, closed, text, parents, operator, score, reason FROM candidates ORDER BY id"
        ).fetchall()

    return rows(first), rows(second)


@pytest.mark.slow
def test_a_deterministic_run_replays_exactly_with_no_endpoint(tmp_path, scripted_server):
    scripted_server.script("good", improving_model)
    config = _config(tmp_path, scripted_server, concurrency={"deterministic": True})
    recorded, replayed = _record_then_replay(tmp_path, scripted_server, config, 12)
    assert replayed == recorded
    assert [r[1] for r in recorded].count("evaluated") == 12


@pytest.mark.slow
@pytest.mark.parametrize("resume_at", [None, 12], ids=["in-one-go", "resumed"])
def test_a_concurrent_run_with_failures_replays_exactly_with_no_endpoint(tmp_path, scripted_server, resume_at):
    replies = iter(range(10**6))

    def moody(request: dict) -> str:  # garbage, an unchanged copy, or an improvement
        n = next(replies)
        if n % 5 == 1 or not FENCE.search(request["messages"][-1]["content"]):  # (a repair request)
            return "I am not sure what you mean."
        if n % 5 == 3:
            return f"Here it is:\n```python\n{_parent(request)}\n```\n"
        return improving_model(request)

    scripted_server.script("good", moody)
    config = _config(tmp_path, scripted_server, concurrency={"proposals": 3, "evaluations": 2})
    recorded, replayed = _record_then_replay(tmp_path, scripted_server, config, 25, resume_at=resume_at)
    assert replayed == recorded
    statuses = [r[1] for r in recorded]
    assert statuses.count("evaluated") == 25 and "failed" in statuses
    closing = [r[2] for r in recorded if r[2] is not None]
    assert closing != sorted(closing)  # proposals really overlapped: they closed out of order


@pytest.mark.slow
def test_a_money_budget_stops_the_run_and_nothing_is_spent_past_the_stop(tmp_path, scripted_server):
    scripted_server.script("good", improving_model)
    config = _config(tmp_path, scripted_server, budget={"cost_usd": 0.01, "candidates": 500})
    cfg = yaml.safe_load(open(config))
    cfg["models"][0]["price_in"] = 5.0  # dollars per million prompt tokens: ~0.3 cent a call
    open(config, "w").write(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    proc = cli("run", "circle_packing", "-c", config, "--run-dir", str(run_dir), "-q")
    assert proc.returncode == 0, proc.stderr
    assert "stopped: money" in proc.stdout and f"evoengine resume {run_dir}" in proc.stdout
    s = status(run_dir)
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    calls, dearest = conn.execute("SELECT COUNT(*), MAX(cost) FROM model_calls").fetchone()
    assert calls > 2  # the budget ran out mid-run, not at the first replies
    # past the budget, at most the calls already in flight (concurrency.proposals = 2) finish
    assert 0.01 <= s["spend"] <= 0.01 + 2 * dearest
    assert s["admitted"] < 500


@pytest.mark.slow
def test_a_key_revoked_mid_run_stops_the_run_at_once_and_a_resume_with_a_good_key_goes_on(tmp_path, scripted_server):
    # The endpoint takes the key for 20 calls, then refuses it (revoked, expired, rotated).
    scripted_server.require_key = "sk-live"

    def revoking(request: dict) -> str:
        if sum(e.path.endswith("/chat/completions") for e in scripted_server.log) >= 20:
            scripted_server.require_key = "sk-rotated"
        return improving_model(request, salt=str(len(scripted_server.log)))  # a sampling model

    scripted_server.script("good", revoking)
    config = _config(tmp_path, scripted_server, budget={"candidates": 60}, concurrency={"proposals": 4})
    cfg = yaml.safe_load(open(config))
    cfg["models"][0]["api_key_env"] = "EVO_TEST_KEY"
    open(config, "w").write(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    proc = cli("run", "circle_packing", "-c", config, "--run-dir", str(run_dir), "-q", env={"EVO_TEST_KEY": "sk-live"})
    assert proc.returncode == 1 and "stopped: key refused" in proc.stdout, proc.stdout + proc.stderr
    assert "refused the key in $EVO_TEST_KEY: HTTP 401: Incorrect API key provided" in proc.stdout
    assert f"resume:  evoengine resume {run_dir}" in proc.stdout and "Traceback" not in proc.stderr, proc.stderr
    refused = sum(e.status == 401 for e in scripted_server.log)
    assert 1 <= refused <= 4  # the first refusal stops it; at most the other calls in flight are refused too
    s = status(run_dir)
    assert s["stopped"]["reason"] == "key refused" and "$EVO_TEST_KEY" in s["stopped"]["message"]
    kept = s["admitted"]
    proc = cli("resume", str(run_dir), "-q", env={"EVO_TEST_KEY": "sk-rotated"})
    assert proc.returncode == 0 and status(run_dir)["admitted"] == 60 > kept, proc.stdout + proc.stderr


@pytest.mark.slow
def test_bandit_state_survives_a_resume(tmp_path, scripted_server):
    # A sampling model: refining one best asks the same prompt again, and the same reply would
    # be a copy, refused; a long enough run of those (with the bad model's) stops the run.
    calls = itertools.count()
    scripted_server.script("good", lambda request: improving_model(request, salt=str(next(calls))))
    scripted_server.script("bad", "I would rather not.")
    config = _config(tmp_path, scripted_server)
    cfg = yaml.safe_load(open(config))
    cfg["models"].append(scripted_server.model("bad", timeout_s=10.0).dump())
    cfg["operators"] = {"diff": 1.0, "full": 0.0, "crossover": 0.0, "repair_attempts": 0}
    open(config, "w").write(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    cli("run", "circle_packing", "-c", config, "--budget", "15", "--run-dir", str(run_dir), "-q", check=True)
    before = status(run_dir)["bandit"]
    assert before["good"]["calls"] > 0 and before["bad"]["calls"] > 0
    cli("resume", str(run_dir), "--budget", "30", "-q", check=True)
    after = status(run_dir)["bandit"]
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    for arm in ("good", "bad"):
        observed = conn.execute(
            "SELECT COUNT(*) FROM candidates WHERE model=? AND reward IS NOT NULL", (arm,)
        ).fetchone()[0]
        assert after[arm]["calls"] == observed  # every observation before and after the resume counts
        assert after[arm]["calls"] >= before[arm]["calls"]
    assert after["good"]["mean_reward"] > after["bad"]["mean_reward"]
    assert after["good"]["calls"] > after["bad"]["calls"]


_NUDGES = itertools.count()


def _nudge_a_constant(request: dict) -> str:
    """For tests/problems/quadratic: move one of a, b, c a little, differently on every call (as a
    sampling model would: refining one best asks the same prompt again and again, and a reply
    drawn from the prompt alone repeats, so every child after the first is a refused copy)."""
    parent = _parent(request)
    rng = random.Random(f"{request['messages'][-1]['content']}#{next(_NUDGES)}")
    match = rng.choice(list(re.finditer(r"^(\s*)([abc]) = (-?[0-9.e-]+)\s*$", parent, re.M)))
    new = f"{match.group(1)}{match.group(2)} = {float(match.group(3)) + rng.gauss(0, 0.3):.6f}"
    return f"<<<<<<< SEARCH\n{match.group(0)}\n=======\n{new}\n>>>>>>> REPLACE\n"


@pytest.mark.slow
def test_the_model_slots_are_kept_full_and_never_overfilled(tmp_path, quadratic):
    from scripted_server import ScriptedServer

    # Replies slow enough that one evaluation slot keeps up with three model slots on a loaded
    # machine too (at 0.1 s the check measured the machine: 51% under a load of 7 on 2 cores).
    latency = 0.3
    server = ScriptedServer(latency_s=latency).start()
    try:
        server.script("m", _nudge_a_constant)
        cfg = tmp_path / "m.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "models": [server.model("m", timeout_s=10.0).dump()],
                    "operators": {"diff": 1.0, "full": 0.0, "crossover": 0.0},
                    "concurrency": {"proposals": 3, "evaluations": 1},
                }
            )
        )
        proc = cli("run", str(quadratic), "-c", str(cfg), "--budget", "40", "--run-dir", str(tmp_path / "run"), "-q")
        assert proc.returncode == 0, proc.stderr
        arrivals = sorted(e.at for e in server.calls("m"))
    finally:
        server.stop()
    # each request is out from its arrival until `latency` later, when its reply leaves
    in_flight = [sum(1 for b in arrivals if b <= a < b + latency) for a in arrivals]
    assert max(in_flight) == 3  # the configured proposals, and never a fourth
    busy = len(arrivals) * latency / (3 * (arrivals[-1] + latency - arrivals[0]))
    assert busy > 0.7, f"model slots busy only {busy:.0%} of the search"
