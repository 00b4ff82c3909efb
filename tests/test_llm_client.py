"""Model clients over real HTTP against a scripted server."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evoengine.config import Model
from evoengine.errors import ModelError
from evoengine.llm import ModelPool, preflight, request_hash
from evoengine.records import ModelCall

pytest_plugins = ["scripted_server"]  # the scripted_server and dead_url fixtures

ASK = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello to the world"}]


def chat(pool: ModelPool, name: str, messages=ASK, **kw) -> ModelCall:
    return asyncio.run(_chat(pool, name, messages, **kw))


async def _chat(pool: ModelPool, name: str, messages, **kw) -> ModelCall:
    try:
        return await pool[name].chat(messages, **kw)
    finally:
        await pool.aclose()


def test_rate_limits_and_server_errors_are_retried_until_the_reply_arrives(scripted_server):
    scripted_server.script("m", "hello world").inject("m", 429, 500, 429, 503)
    pool = ModelPool([scripted_server.model("m", max_retries=4)], backoff_s=0.01)
    call = chat(pool, "m")
    assert call.reply == "hello world" and call.error is None
    assert [e.status for e in scripted_server.calls("m")] == [429, 500, 429, 503, 200]


def test_the_pool_keeps_at_most_its_concurrency_of_requests_out_across_models():
    from scripted_server import ScriptedServer

    server = ScriptedServer(latency_s=0.2).start()
    try:
        server.script("a", "from a").script("b", "from b")
        pool = ModelPool([server.model("a"), server.model("b")], concurrency=2)

        async def ask_six() -> list[ModelCall]:
            try:
                return await asyncio.gather(*(pool[name].chat(ASK) for name in "ababab"))
            finally:
                await pool.aclose()

        start = time.monotonic()
        calls = asyncio.run(ask_six())
        wall = time.monotonic() - start
    finally:
        server.stop()
    assert [c.reply for c in calls] == ["from a", "from b"] * 3
    arrivals = sorted(e.at for e in server.calls())
    # three waves of two: never a third request while two are out
    assert all(later - earlier >= 0.15 for earlier, later in zip(arrivals, arrivals[2:], strict=False))
    assert 0.55 < wall < 2.0
    # a call's latency is its own request's time, not the wait for a slot
    assert all(0.19 < c.latency_s < 0.4 for c in calls)


def test_a_slow_reply_is_abandoned_at_the_timeout_and_asked_again(scripted_server):
    scripted_server.timeout_sleep_s = 3.0
    scripted_server.script("m", "on time").inject("m", "timeout")
    pool = ModelPool([scripted_server.model("m", timeout_s=0.3)], backoff_s=0.01)
    start = time.monotonic()
    call = chat(pool, "m")
    assert call.reply == "on time"
    assert time.monotonic() - start < 2.0
    assert len(scripted_server.calls("m")) == 2


def test_a_model_that_keeps_timing_out_gives_up_at_its_overall_deadline(scripted_server):
    scripted_server.timeout_sleep_s = 3.0
    scripted_server.script("m", "never seen").inject("m", *["timeout"] * 6)
    pool = ModelPool([scripted_server.model("m", timeout_s=0.25, max_retries=2)], backoff_s=0.01)
    start = time.monotonic()
    call = chat(pool, "m")
    elapsed = time.monotonic() - start
    assert call.reply is None and "timed out" in call.error
    assert elapsed < 0.25 * 3 + 0.5  # the deadline is timeout_s * (max_retries + 1)


def test_a_retry_that_would_end_past_the_deadline_is_not_waited_for(scripted_server):
    scripted_server.script("m", "too late").inject("m", 500)
    pool = ModelPool([scripted_server.model("m", timeout_s=0.2, max_retries=3)], backoff_s=30.0)
    start = time.monotonic()
    call = chat(pool, "m")
    assert call.reply is None and "deadline" in call.error
    assert time.monotonic() - start < 0.5


def test_a_model_that_keeps_failing_returns_the_reason_instead_of_raising(scripted_server):
    scripted_server.script("m", "never seen").inject("m", *[500] * 10)
    pool = ModelPool([scripted_server.model("m", max_retries=2)], backoff_s=0.01)
    call = chat(pool, "m")
    assert call.reply is None
    assert "HTTP 500" in call.error
    assert len(scripted_server.calls("m")) == 3


def test_a_refused_request_is_not_retried(scripted_server):
    scripted_server.script("m", "x")
    pool = ModelPool([scripted_server.model("m", model="no-such-model")], backoff_s=0.01)
    call = chat(pool, "m")
    assert call.reply is None and "HTTP 404" in call.error and "no-such-model" in call.error
    assert len(scripted_server.calls()) == 1


@pytest.mark.parametrize("fault", ["bad_json", "empty_choices", "no_content"])
def test_malformed_replies_are_retried(scripted_server, fault):
    scripted_server.script("m", "finally fine").inject("m", fault, fault)
    pool = ModelPool([scripted_server.model("m")], backoff_s=0.01)
    assert chat(pool, "m").reply == "finally fine"
    assert len(scripted_server.calls("m")) == 3


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("bad_json", "not valid JSON"),
        ("empty_choices", "no choices"),
        ("no_content", "no text"),
    ],
)
def test_malformed_replies_that_persist_are_reported_with_the_reason(scripted_server, fault, reason):
    scripted_server.script("m", "x").inject("m", *[fault] * 5)
    pool = ModelPool([scripted_server.model("m", max_retries=1)], backoff_s=0.01)
    call = chat(pool, "m")
    assert call.reply is None and reason in call.error


def test_a_reply_cut_off_by_max_tokens_is_not_asked_again(scripted_server):
    scripted_server.script("m", "x").inject("m", "cut_off", "cut_off")
    pool = ModelPool([scripted_server.model("m", max_tokens=16)], backoff_s=0.01)
    call = chat(pool, "m")
    assert call.reply is None and "raise max_tokens" in call.error and "max_tokens=16" in call.error
    assert len(scripted_server.calls("m")) == 1


def test_usage_and_cost_come_from_the_reply_and_the_prices(scripted_server):
    scripted_server.script("m", "one two three four five")
    pool = ModelPool([scripted_server.model("m", price_in=3.0, price_out=15.0)])
    call = chat(pool, "m")
    usage = scripted_server.calls("m")[0].usage
    assert (call.tokens_in, call.tokens_out) == (usage["prompt_tokens"], usage["completion_tokens"]) == (7, 5)
    assert call.cost == pytest.approx((7 * 3.0 + 5 * 15.0) / 1e6)
    assert call.latency_s > 0 and call.purpose == "propose"


def test_usage_is_estimated_when_the_endpoint_reports_none(scripted_server):
    scripted_server.script("m", "x" * 400).inject("m", "no_usage")
    pool = ModelPool([scripted_server.model("m", price_out=1.0)])
    call = chat(pool, "m")
    assert call.tokens_out == 101 and call.cost > 0


def test_the_request_hash_names_model_messages_temperature_and_max_tokens(scripted_server):
    scripted_server.script("m", "hi")
    pool = ModelPool([scripted_server.model("m", model="served-id", temperature=0.7, max_tokens=99)])
    scripted_server.script("served-id", "hi")
    call = chat(pool, "m")
    assert call.request_hash == request_hash("served-id", ASK, 0.7, 99)
    assert request_hash("served-id", ASK, 0.7, 99) != request_hash("served-id", ASK, 0.8, 99)
    assert request_hash("served-id", ASK, 0.7, 99) != request_hash("other", ASK, 0.7, 99)
    sent = scripted_server.calls("served-id")[0].body
    assert (sent["temperature"], sent["max_tokens"]) == (0.7, 99)


def test_models_on_one_endpoint_share_one_http_client(scripted_server):
    scripted_server.script("a", "A").script("b", "B")
    pool = ModelPool([scripted_server.model("a"), scripted_server.model("b")])

    async def both():
        try:
            assert (await pool["a"].chat(ASK)).reply == "A"
            assert (await pool["b"].chat(ASK)).reply == "B"
            assert pool["a"].backend.client() is pool["b"].backend.client()
        finally:
            await pool.aclose()

    asyncio.run(both())


def test_a_model_is_asked_without_importing_the_openai_client(scripted_server):
    # importing `openai` costs ~0.7 s of CPU before a run's first request, and `httpx` pulls
    # `rich`, `click` and `trio` in when they are installed (benchmarks/README.md)
    scripted_server.script("a", "A")
    model = scripted_server.model("a").dump()
    script = (
        "import asyncio, sys\n"
        "from evoengine.config import Model\n"
        "from evoengine.llm import ModelPool\n"
        f"pool = ModelPool([Model(**{model!r})])\n"
        "async def main():\n"
        "    await pool.preflight()\n"
        "    print((await pool['a'].chat([{'role': 'user', 'content': 'hi'}])).reply)\n"
        "    await pool.aclose()\n"
        "asyncio.run(main())\n"
        "print('openai' in sys.modules, any(n in sys.modules for n in ('rich', 'click', 'trio', 'pydantic')))\n"
        "import importlib.util\n"  # and what was kept out can still be imported afterwards
        "print(all(importlib.import_module(n) for n in ('rich', 'click') if importlib.util.find_spec(n)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["A", "False", "False", "True"], proc.stderr


def test_embeddings_come_back_in_order_with_their_usage(scripted_server):
    scripted_server.script("embedder", "unused")
    pool = ModelPool([scripted_server.model("embedder", price_in=0.02)])

    async def run():
        try:
            return await pool["embedder"].embed(["a b", "c", "a b"])
        finally:
            await pool.aclose()

    vectors, call = asyncio.run(run())
    assert len(vectors) == 3 and vectors[0] == vectors[2] != vectors[1]
    assert call.tokens_in == 5 and call.purpose == "embed"


# ---------------------------------------------------------------- pre-flight


def test_preflight_passes_for_a_served_model(scripted_server):
    scripted_server.script("m", "x")
    asyncio.run(preflight([scripted_server.model("m")]))
    assert [e.path for e in scripted_server.log] == ["/v1/models"]  # nothing billed


def test_preflight_names_every_dead_endpoint_in_one_error(dead_url):
    models = [
        Model(name="first", base_url=dead_url, api_key_env=None),
        Model(name="second", base_url=dead_url.replace("/v1", "/other/v1"), api_key_env=None),
    ]
    with pytest.raises(ModelError) as err:
        asyncio.run(preflight(models))
    text = str(err.value)
    assert "'first'" in text and "'second'" in text and dead_url in text
    assert "cannot reach" in text and "base_url" in text and "nothing was spent" in text


def test_preflight_reports_a_missing_key_variable_without_calling_the_endpoint(scripted_server, monkeypatch):
    monkeypatch.delenv("EVO_TEST_NO_SUCH_KEY", raising=False)
    scripted_server.script("m", "x")
    with pytest.raises(ModelError, match="EVO_TEST_NO_SUCH_KEY") as err:
        asyncio.run(preflight([scripted_server.model("m", api_key_env="EVO_TEST_NO_SUCH_KEY")]))
    assert "api_key_env: null" in str(err.value)
    assert scripted_server.log == []


def test_preflight_uses_the_key_from_the_environment_and_reports_a_refused_one(monkeypatch):
    from scripted_server import ScriptedServer

    server = ScriptedServer(require_key="sk-right").start()
    try:
        server.script("m", "x")
        monkeypatch.setenv("EVO_TEST_KEY", "sk-right")
        asyncio.run(preflight([server.model("m", api_key_env="EVO_TEST_KEY")]))
        monkeypatch.setenv("EVO_TEST_KEY", "sk-wrong")
        with pytest.raises(ModelError, match="refused the key in EVO_TEST_KEY"):
            asyncio.run(preflight([server.model("m", api_key_env="EVO_TEST_KEY")]))
    finally:
        server.stop()


def test_preflight_reports_a_model_the_endpoint_does_not_serve(scripted_server):
    scripted_server.script("served", "x")
    with pytest.raises(ModelError, match="does not serve model 'missing'; it serves: served"):
        asyncio.run(preflight([scripted_server.model("m", model="missing")]))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_choosing_the_vllm_backend_without_vllm_says_how_to_get_it():
    with pytest.raises(ModelError) as err:
        ModelPool([Model(name="local", model="Qwen/Qwen2.5-0.5B-Instruct", backend="vllm")])
    text = str(err.value)
    assert "'local'" in text and 'pip install "evoengine[vllm]"' in text and "vllm serve" in text


# ---------------------------------------------------------------- replay


def write_store(run_dir: Path, calls: list[ModelCall]) -> None:
    """The lead's store table, written the way the engine records calls."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(run_dir / "archive.sqlite") as db:
        db.execute(
            "CREATE TABLE model_calls(id INTEGER PRIMARY KEY, proposal_id INTEGER, model TEXT, "
            "request_hash TEXT, messages TEXT, reply TEXT, tokens_in INT, tokens_out INT, cost REAL, "
            "latency_s REAL, error TEXT, purpose TEXT, created REAL)"
        )
        for i, c in enumerate(calls):
            db.execute(
                "INSERT INTO model_calls(proposal_id, model, request_hash, messages, reply, tokens_in, "
                "tokens_out, cost, latency_s, error, purpose, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    i,
                    c.model,
                    c.request_hash,
                    json.dumps(c.messages),
                    c.reply,
                    c.tokens_in,
                    c.tokens_out,
                    c.cost,
                    c.latency_s,
                    c.error,
                    c.purpose,
                    0.0,
                ),
            )


def test_a_replay_answers_from_the_recorded_replies_without_any_endpoint(scripted_server, tmp_path, dead_url):
    replies = iter(["first", "second", "third"])
    scripted_server.script("m", lambda request: next(replies))
    model = scripted_server.model("m", price_in=1.0)
    recorded = [
        chat(ModelPool([model]), "m"),
        chat(ModelPool([model]), "m"),
        chat(ModelPool([model]), "m", [{"role": "user", "content": "other"}]),
    ]
    write_store(tmp_path / "run", recorded)

    offline = model.replace(base_url=dead_url, api_key_env="EVO_TEST_UNSET_KEY")
    asyncio.run(preflight([offline], replay=tmp_path / "run"))  # no endpoint, no key needed
    pool = ModelPool([offline], replay=tmp_path / "run")

    async def replay():
        try:
            other = await pool["m"].chat([{"role": "user", "content": "other"}])
            one, two = await pool["m"].chat(ASK), await pool["m"].chat(ASK)
            return other, one, two
        finally:
            await pool.aclose()

    other, one, two = asyncio.run(replay())
    assert (one.reply, two.reply, other.reply) == ("first", "second", "third")
    assert one.request_hash == recorded[0].request_hash and one.cost == recorded[0].cost
    with pytest.raises(ModelError, match="diverged"):
        chat(ModelPool([offline], replay=tmp_path / "run"), "m", [{"role": "user", "content": "new"}])


def test_replaying_from_a_folder_without_a_store_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="archive.sqlite"):
        ModelPool([Model(name="m")], replay=tmp_path)


# ---------------------------------------------------------------- presets


@pytest.mark.parametrize("preset, local", [("openai", False), ("vllm", True), ("ollama", True)])
def test_model_presets_load_with_models_for_their_endpoint(preset, local):
    from evoengine.config import load_config

    config = load_config(preset)
    assert config.models and config.budget.candidates  # `extends: default` kept the rest
    for model in config.models:
        if local:
            assert model.base_url.startswith("http://127.0.0.1:") and model.api_key_env is None
        else:
            assert model.api_key_env == "OPENAI_API_KEY" and model.price_in > 0 and model.price_out > 0
