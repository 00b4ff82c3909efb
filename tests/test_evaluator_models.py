"""Models a problem's evaluator asks (`evaluator_models:`), through the engine's loopback proxy:
the real `evoengine` command, the real `openai` client and real HTTP to the scripted
OpenAI-compatible server on 127.0.0.1, which answers like the problems' simulated models."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, TEST_PROBLEMS, cli, status

from evoengine.problem import load_problem
from evoengine.store import RunReader

pytest_plugins = ["scripted_server"]
PROBLEMS = REPO / "problems"
KEY = "sk-canary-evaluator-7c41"  # the evaluator model's key: the engine holds it, nobody else
TICKETS = 84  # prompt_triage's labelled tickets: one call each per evaluation

sys.path.insert(0, str(PROBLEMS / "prompt_triage"))
sys.path.insert(0, str(PROBLEMS / "harness_oracle"))
import reader  # noqa: E402  (prompt_triage's simulated model, served over HTTP here)
import towns  # noqa: E402  (harness_oracle's simulated oracle)


def simulated_reader(request: dict) -> str:
    messages = request["messages"]
    return reader.answer(reader.read(messages[0]["content"]), messages[-1]["content"]).reply


@pytest.fixture
def keyed_server():
    """A scripted server that answers only requests carrying KEY."""
    from scripted_server import ScriptedServer

    server = ScriptedServer(require_key=KEY).start()
    try:
        yield server
    finally:
        server.stop()


def config(tmp_path: Path, server: Any, name: str, extra: dict | None = None, **model) -> str:
    settings = {"timeout_s": 10.0, "max_retries": 0, "api_key_env": "EVOENGINE_TEST_EVALUATOR_KEY", **model}
    cfg = {"evaluator_models": [server.model(name, **settings).dump()], **(extra or {})}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def run(*args: str, timeout: float = 300):
    return cli("run", *args, "-q", env={"EVOENGINE_TEST_EVALUATOR_KEY": KEY}, timeout=timeout)


def evaluate_offline(name: str, tmp_path: Path) -> float:
    """The seed's score with the problem's own simulated model (no evaluator model configured)."""
    loaded = load_problem(PROBLEMS / name)
    path = tmp_path / f"seed{loaded.problem.suffix}"
    path.write_text(loaded.problem.seed_text())
    return loaded.evaluate(str(path)).score


# ---------------------------------------------------------------- spend, status, budget


@pytest.mark.slow
def test_prompt_triage_asks_its_reader_through_the_engine_and_the_calls_are_spend_in_status(tmp_path, keyed_server):
    keyed_server.script("reader", simulated_reader)
    cfg = config(tmp_path, keyed_server, "reader", {"concurrency": {"evaluations": 2}}, price_in=1.0, price_out=2.0)
    run_dir = tmp_path / "run"
    proc = run("prompt_triage", "-c", cfg, "--budget", "6", "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    s = status(run_dir)
    # the model behind the proxy answered as the simulated one does: the same seed score
    assert s["seed_score"] == pytest.approx(evaluate_offline("prompt_triage", tmp_path))
    served = keyed_server.calls("reader")
    assert len(served) >= TICKETS and all(e.status == 200 for e in served)  # every request carried the key
    usage = {(u["model"], u["purpose"]): u for u in s["models"]}
    assert set(usage) == {("reader", "evaluate")}
    assert usage["reader", "evaluate"]["calls"] == len(served)
    cost = sum(e.usage["prompt_tokens"] * 1.0 + e.usage["completion_tokens"] * 2.0 for e in served) / 1e6
    assert s["spend"] == pytest.approx(cost) and cost > 0  # the run's spend is the evaluator's calls
    assert f"spend ${cost:.4f}" in proc.stdout
    shown = cli("status", str(run_dir), check=True).stdout
    assert f"evaluator  reader: {len(served)} calls (0 failed)" in shown
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    children = conn.execute(
        "SELECT COUNT(DISTINCT proposal_id) FROM model_calls WHERE purpose='evaluate' AND proposal_id IS NOT NULL"
    ).fetchone()[0]
    assert children >= 1  # a child's evaluator calls are kept with its proposal (for replay)
    reader = RunReader.open(run_dir)  # the report shows a proposal's own calls, the evaluator's only in total
    try:
        assert all(call["purpose"] == "propose" for d in reader.details() for call in d["calls"])
    finally:
        reader.close()
    assert KEY.encode() not in (run_dir / "archive.sqlite").read_bytes()


@pytest.mark.slow
def test_a_money_budget_counts_the_evaluators_calls_and_stops_the_run(tmp_path, keyed_server):
    keyed_server.script("reader", simulated_reader)
    extra = {"budget": {"cost_usd": 0.05, "candidates": 100}, "concurrency": {"evaluations": 1}}
    cfg = config(tmp_path, keyed_server, "reader", extra, price_in=5.0)  # ~$0.03 an evaluation
    run_dir = tmp_path / "run"
    proc = run("prompt_triage", "-c", cfg, "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert "stopped: money" in proc.stdout
    s = status(run_dir)
    assert s["spend"] >= 0.05 and s["admitted"] < 100
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    (dearest,) = conn.execute("SELECT MAX(cost) FROM model_calls").fetchone()
    # Past the stop the proxy takes no more calls: only the 8 that one evaluation has out at once finish.
    assert s["spend"] <= 0.05 + 8 * dearest


@pytest.mark.slow
def test_an_evaluator_key_revoked_mid_run_stops_the_run_at_once(tmp_path, keyed_server):
    # prompt_triage's reader answers for 300 calls (a few evaluations), then refuses the key.
    def revoking(request: dict) -> str:
        if len(keyed_server.log) >= 300:
            keyed_server.require_key = "sk-rotated"
        return simulated_reader(request)

    keyed_server.script("reader", revoking)
    cfg = config(tmp_path, keyed_server, "reader", {"budget": {"candidates": 100}}, price_in=1.0)
    run_dir = tmp_path / "run"
    proc = run("prompt_triage", "-c", cfg, "--run-dir", str(run_dir))
    assert proc.returncode == 1 and "stopped: key refused" in proc.stdout, proc.stdout + proc.stderr
    assert "evaluator_models: model reader" in proc.stdout and "HTTP 401" in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert status(run_dir)["admitted"] < 100
    # one evaluation has at most 8 calls out at once: past the first refusal, only those
    assert sum(e.status == 401 for e in keyed_server.log) <= 8


def test_once_the_run_stops_the_proxy_answers_no_more_evaluator_calls(keyed_server, monkeypatch):
    # The engine calls `refuse` as it stops (money spent, say): an evaluation still asking
    # gets a 503 naming why, and nothing more reaches the paid endpoint.
    from evoengine.llm.proxy import SOCKET_NAME, ModelProxy

    monkeypatch.setenv("EVOENGINE_TEST_EVALUATOR_KEY", KEY)
    keyed_server.script("reader", simulated_reader)
    model = keyed_server.model("reader", timeout_s=10.0, max_retries=0, api_key_env="EVOENGINE_TEST_EVALUATOR_KEY")
    body = json.dumps({"model": "reader", "messages": [{"role": "user", "content": "Ticket: the printer is on fire"}]})

    async def ask(proxy: ModelProxy, token: str) -> bytes:
        reader_, writer = await asyncio.open_unix_connection(str(proxy.directory / SOCKET_NAME))
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer {token}\r\n"
        writer.write(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode())
        reply = await reader_.read()
        writer.close()
        return reply

    async def scenario() -> tuple[bytes, bytes, int, int]:
        proxy = ModelProxy([model])
        recorded: list[Any] = []
        proxy.prepare(lambda proposal, call: recorded.append(call), None)
        await proxy.start()
        try:
            token = proxy.grant(7, "candidate 7")
            first = await ask(proxy, token)
            served = len(keyed_server.calls("reader"))
            proxy.refuse("money")
            second = await ask(proxy, token)
            return first, second, served, len(recorded)
        finally:
            await proxy.aclose()

    first, second, served, recorded = asyncio.run(scenario())
    assert first.startswith(b"HTTP/1.1 200") and recorded == 1
    assert second.startswith(b"HTTP/1.1 503") and b"the run is stopping (money)" in second
    assert len(keyed_server.calls("reader")) == served  # the refused call never left the engine


# ---------------------------------------------------------------- a dead endpoint


@pytest.mark.slow
def test_an_endpoint_that_dies_makes_children_invalid_with_the_reason_and_the_streak_stops_the_run(tmp_path):
    from scripted_server import ScriptedServer

    server = ScriptedServer().start()
    answered = Counter()

    def dies_after_the_seed(request: dict) -> str:
        answered["calls"] += 1
        if answered["calls"] > TICKETS:
            server.drop()  # the endpoint dies: this connection and every later one fails
        return simulated_reader(request)

    try:
        server.script("reader", dies_after_the_seed)
        extra = {"budget": {"invalid_streak": 3, "candidates": 50}, "evaluation": {"gate": False}}
        cfg = config(tmp_path, server, "reader", extra, api_key_env=None)
        run_dir = tmp_path / "run"
        proc = run("prompt_triage", "-c", cfg, "--run-dir", str(run_dir))
    finally:
        server.stop()
    assert proc.returncode == 1, proc.stderr
    assert "stopped: failing" in proc.stdout and "invalid for the same reason" in proc.stdout
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    rows = conn.execute("SELECT valid, score, feedback FROM candidates WHERE status='evaluated' ORDER BY id").fetchall()
    assert rows[0][0] == 1 and rows[0][1] > 0  # the seed, scored while the endpoint lived
    children = rows[1:]
    assert len(children) >= 3 and all(valid == 0 for valid, _, _ in children)  # never a valid zero
    for _, _, feedback in children:
        assert "EvaluatorModelError" in feedback and "evaluator model 'reader'" in feedback, feedback
    assert "Connection error" in children[-1][2]
    failed = conn.execute("SELECT COUNT(*) FROM model_calls WHERE error IS NOT NULL").fetchone()[0]
    assert failed >= 3


def test_an_evaluator_endpoint_dead_at_start_stops_the_run_before_it_starts(tmp_path, dead_url):
    cfg = tmp_path / "dead.yaml"
    dead = {"name": "reader", "base_url": dead_url, "api_key_env": None, "timeout_s": 1.0, "max_retries": 0}
    cfg.write_text(yaml.safe_dump({"evaluator_models": [dead]}))
    run_dir = tmp_path / "run"
    proc = run("prompt_triage", "-c", str(cfg), "--run-dir", str(run_dir))
    assert proc.returncode != 0
    assert "evaluator_models: model pre-flight check failed" in proc.stderr and "cannot reach" in proc.stderr
    assert not (run_dir / "archive.sqlite").exists()


def test_an_evaluator_model_the_problem_does_not_ask_for_is_a_config_error(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text(yaml.safe_dump({"evaluator_models": [{"name": "raeder", "api_key_env": None}]}))
    proc = run("prompt_triage", "-c", str(cfg), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode != 0
    assert "evaluator_models: problem 'prompt_triage' asks for no model named 'raeder'" in proc.stderr
    assert "it asks for: reader" in proc.stderr and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- replay


@pytest.mark.slow
def test_a_replayed_run_answers_the_evaluators_calls_from_the_record(tmp_path, keyed_server):
    keyed_server.script("reader", simulated_reader)
    cfg = config(tmp_path, keyed_server, "reader", {"concurrency": {"evaluations": 2, "proposals": 2}})
    first, second = tmp_path / "first", tmp_path / "second"
    assert run("prompt_triage", "-c", cfg, "--budget", "8", "--run-dir", str(first)).returncode == 0
    asked = len(keyed_server.calls("reader"))
    keyed_server.stop()  # the replay needs no endpoint
    proc = run("prompt_triage", "-c", cfg, "--budget", "8", "--run-dir", str(second), "--set", f"replay={first}")
    assert proc.returncode == 0, proc.stderr

    def rows(run_dir: Path):
        conn = sqlite3.connect(run_dir / "archive.sqlite")
        candidates = conn.execute("SELECT id, status, text, score FROM candidates ORDER BY id").fetchall()
        calls = conn.execute("SELECT COUNT(*), SUM(tokens_in) FROM model_calls WHERE purpose='evaluate'").fetchone()
        return candidates, calls

    assert rows(second) == rows(first)
    assert rows(first)[1][0] == asked


# ---------------------------------------------------------------- hostile candidates

HOSTILE_ANSWER = r"""
import glob, json, os, socket, sys

def _stolen_call(path, token):
    body = json.dumps({"model": "judge", "messages": [{"role": "user", "content": "a stolen call"}]}).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(head.encode() + body)
        return "reached: " + sock.recv(300).decode(errors="replace")
    except OSError as exc:
        return f"refused: {exc}"

def answer():
    seen = list(os.environ.values())
    for pid in os.listdir("/proc"):
        for what in ("environ", "cmdline", "mem"):
            try:
                seen.append(open(f"/proc/{pid}/{what}", "rb").read(1 << 16).decode(errors="replace"))
            except (OSError, ValueError):
                pass
    access = getattr(sys.modules.get("evoengine.evaluation.models"), "_access", None)
    token = access.token if access is not None else ""
    paths = ["/proc/self/fd/4/models.sock", f"/proc/{os.getppid()}/fd/4/models.sock"]
    paths += glob.glob("/tmp/evoengine-models-*/models.sock") + glob.glob("/proc/*/fd/*/models.sock")
    return json.dumps({
        "key_seen": [s[:80] for s in seen if CANARY in s or "sk-" in s],
        "token_in_memory": bool(token),
        "attempts": {path: _stolen_call(path, token) for path in paths},
    })
"""


@pytest.mark.slow
def test_candidate_code_beside_the_evaluator_cannot_read_the_key_or_reach_the_proxy(tmp_path, keyed_server):
    keyed_server.script("judge", "7/10")
    problem = tmp_path / "model_judge"
    shutil.copytree(TEST_PROBLEMS / "model_judge", problem)
    block = 'CANARY = "sk-canary-"\n' + HOSTILE_ANSWER  # what it looks for: any key of the kind, not ours
    seed = (problem / "initial.py").read_text()
    start, end = seed.index("# EVOLVE-BLOCK-START\n") + 21, seed.index("# EVOLVE-BLOCK-END")
    (problem / "initial.py").write_text(seed[:start] + block + seed[end:])
    run_dir = tmp_path / "run"
    proc = run(str(problem), "-c", config(tmp_path, keyed_server, "judge"), "--budget", "1", "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    valid, artifacts = conn.execute("SELECT valid, artifacts FROM candidates WHERE id=1").fetchone()
    assert valid == 1  # the evaluator's own call went through the proxy
    report = json.loads(json.loads(artifacts)["answer"])
    assert report["key_seen"] == []
    assert "/proc/self/fd/4/models.sock" in report["attempts"]
    assert all(said.startswith("refused") for said in report["attempts"].values()), report["attempts"]
    served = keyed_server.calls("judge")
    assert len(served) == 1 and "a stolen call" not in json.dumps(served[0].body)
    assert KEY.encode() not in (run_dir / "archive.sqlite").read_bytes()


@pytest.mark.slow
def test_a_hostile_harness_cannot_read_the_task_data_or_the_key_with_the_oracle_behind_the_proxy(
    tmp_path, keyed_server
):
    from test_kind_problems import HOSTILE, with_block

    keyed_server.script("oracle", scripted_oracle())
    problem = tmp_path / "harness_oracle"
    shutil.copytree(PROBLEMS / "harness_oracle", problem)
    hostile = with_block(problem / "initial.py", f"PROBLEM_DIR = {str(problem)!r}\n" + HOSTILE)
    (problem / "initial.py").write_text(hostile)
    run_dir = tmp_path / "run"
    proc = run(str(problem), "-c", config(tmp_path, keyed_server, "oracle"), "--budget", "1", "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    valid, score, feedback = conn.execute("SELECT valid, score, feedback FROM candidates WHERE id=1").fetchone()
    assert valid == 1 and "secret" not in feedback, feedback
    assert score < 0.9  # no answers leaked: it scores what asking the oracle once scores
    served = keyed_server.calls("oracle")
    assert len(served) >= 90 and all(e.status == 200 for e in served)
    assert KEY.encode() not in (run_dir / "archive.sqlite").read_bytes()


# ---------------------------------------------------------------- the example configs

FENCE = re.compile(r"```[a-z]*\n(.*?)\n```", re.S)


def scripted_writer(request: dict) -> str:
    """A proposing model with one idea: put a refund rule first (a new wording each time)."""
    prompt = request["messages"][-1]["content"]
    n = int(hashlib.sha256(prompt.encode()).hexdigest()[:6], 16)
    rule = f"- refund: the customer wants money back (rule {n})."
    billing = "- billing: payments, prices, invoices and charges."
    if "<<<<<<< SEARCH" in prompt:
        return f"Refunds first.\n<<<<<<< SEARCH\n{billing}\n=======\n{rule}\n{billing}\n>>>>>>> REPLACE\n"
    parent = FENCE.findall(prompt)[-1]
    return "```text\n" + parent.replace(billing, f"{rule}\n{billing}", 1) + "\n```\n"


def scripted_oracle() -> Any:
    repeats = Counter()

    def oracle(request: dict) -> str:
        question = request["messages"][-1]["content"]
        repeats[question] += 1
        return towns.offline_reply(question, repeats[question] - 1)

    return oracle


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset,problem,evaluator,budget",
    [("prompt_model", "prompt_triage", "reader", 4), ("harness_model", "harness_oracle", "oracle", 1)],
)
def test_the_example_configs_run_their_problem_with_both_models_behind_the_engine(
    tmp_path, keyed_server, preset, problem, evaluator, budget
):
    cfg = yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text())
    for entry in cfg["models"] + cfg["evaluator_models"]:  # the same entries, pointed at the scripted server
        entry.update(base_url=keyed_server.url, api_key_env="EVOENGINE_TEST_EVALUATOR_KEY", timeout_s=10.0)
    (writer,) = cfg["models"]
    (reading,) = cfg["evaluator_models"]
    assert reading["name"] == evaluator
    keyed_server.script(writer.get("model") or writer["name"], scripted_writer)
    keyed_server.script(reading["model"], simulated_reader if evaluator == "reader" else scripted_oracle())
    path = tmp_path / f"{preset}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    proc = run(problem, "-c", str(path), "--budget", str(budget), "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    s = status(run_dir)
    usage = {(u["model"], u["purpose"]): u for u in s["models"]}
    assert s["admitted"] == budget and usage[evaluator, "evaluate"]["calls"] > 0
    assert s["spend"] == pytest.approx(sum(u["cost"] for u in usage.values())) and s["spend"] > 0
    if budget > 1:  # children were proposed by the other model
        assert usage[writer["name"], "propose"]["calls"] > 0 and s["valid"] > 1


def test_evaluator_models_are_refused_with_the_ray_backend_before_anything_starts(tmp_path):
    cfg = tmp_path / "ray.yaml"
    entry = {"name": "reader", "api_key_env": None}
    cfg.write_text(yaml.safe_dump({"evaluator_models": [entry], "evaluation": {"backend": "ray"}}))
    proc = run("prompt_triage", "-c", str(cfg), "--run-dir", str(tmp_path / "run"))
    assert proc.returncode != 0 and "not available with evaluation.backend: ray" in proc.stderr
    assert not (tmp_path / "run").exists()
