"""The evaluator models' proxy in one process: the evaluator's side (`evoengine.evaluation.models`,
and the real `openai` client) talks HTTP over the proxy's Unix socket; the proxy talks real HTTP
to the scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import openai
import pytest

from evoengine.evaluation import models
from evoengine.llm.client import ModelPool
from evoengine.llm.proxy import ModelProxy

pytest_plugins = ["scripted_server"]

LATENCY = 0.2


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def serve(proxy: ModelProxy, proposal: int | None = 7) -> str:
    """Grant this process the way an evaluation gets it (a token; the socket by its path here)."""
    token = proxy.grant(proposal, f"candidate {proposal}")
    models.configure({"token": token, "names": proxy.names, "socket": str(proxy.directory / "models.sock")})
    return token


def test_evaluator_calls_and_proposals_share_the_model_slots_and_are_recorded_for_their_candidate():
    from scripted_server import ScriptedServer

    server = ScriptedServer(latency_s=LATENCY).start()
    server.script("writer", "a proposal").script("reader", lambda request: "refund")
    recorded = []

    async def main() -> None:
        proposals = ModelPool([server.model("writer", timeout_s=10.0)], concurrency=2)
        proxy = ModelProxy([server.model("reader", timeout_s=10.0, price_in=1.0)])
        proxy.prepare(lambda proposal, call: recorded.append((proposal, call)), proposals.slots)
        await proxy.start()
        serve(proxy)
        try:
            evaluator = asyncio.to_thread(models.chat_many, [ask(f"ticket {i}") for i in range(6)], at_once=6)
            proposing = [proposals["writer"].chat(ask(f"improve {i}")) for i in range(6)]
            replies, *_ = await asyncio.gather(evaluator, *proposing)
        finally:
            await proxy.aclose()
            await proposals.aclose()
        assert replies == ["refund"] * 6

    try:
        asyncio.run(main())
    finally:
        server.stop()
        models.configure(None)
    arrivals = sorted(e.at for e in server.calls())
    in_flight = [sum(1 for b in arrivals if b <= a < b + LATENCY) for a in arrivals]
    assert len(arrivals) == 12 and max(in_flight) == 2  # both kinds of call, never more than the slots
    assert [(p, c.purpose, c.model) for p, c in recorded] == [(7, "evaluate", "reader")] * 6
    assert all(c.cost > 0 and c.tokens_in > 0 for _, c in recorded)


def with_proxy(model, body) -> None:
    """Run `await body(proxy, token)` with a started proxy for `model` granted to this process."""

    async def main() -> None:
        proxy = ModelProxy([model])
        proxy.prepare(lambda proposal, call: None, None)
        await proxy.start()  # the pre-flight passes: the endpoint is up
        try:
            await body(proxy, serve(proxy))
        finally:
            await proxy.aclose()

    try:
        asyncio.run(main())
    finally:
        models.configure(None)


def test_the_openai_client_works_through_the_proxy_and_a_revoked_token_is_refused(scripted_server):
    scripted_server.script("reader", lambda request: f"you said: {request['messages'][-1]['content']}")
    outcome = {}

    async def body(proxy: ModelProxy, token: str) -> None:
        client = models.model_client()
        reply = await asyncio.to_thread(
            client.chat.completions.create, model="reader", messages=ask("hello"), temperature=0.0
        )
        outcome["reply"], outcome["usage"] = reply.choices[0].message.content, reply.usage.prompt_tokens
        listed = await asyncio.to_thread(client.models.list)
        outcome["listed"] = [m.id for m in listed.data]
        unknown = asyncio.to_thread(client.chat.completions.create, model="writer", messages=ask("x"))
        with pytest.raises(openai.NotFoundError, match="no evaluator model named 'writer'"):
            await unknown
        outcome["grant"] = proxy.revoke(token)
        with pytest.raises(models.EvaluatorModelError, match="no valid token"):
            await asyncio.to_thread(models.chat, ask("after the evaluation"))

    with_proxy(scripted_server.model("reader", timeout_s=10.0), body)
    assert outcome["reply"] == "you said: hello" and outcome["usage"] == 1
    assert outcome["listed"] == ["reader"]
    assert outcome["grant"].calls == 1 and outcome["grant"].errors == 0


def test_an_endpoint_that_died_is_an_error_with_the_reason_in_the_evaluator(scripted_server):
    scripted_server.script("reader", "fine")

    async def body(proxy: ModelProxy, token: str) -> None:
        scripted_server.drop()
        with pytest.raises(models.EvaluatorModelError, match=r"evaluator model 'reader' \(http.*Connection error"):
            await asyncio.to_thread(models.chat, ask("anyone there?"))

    with_proxy(scripted_server.model("reader", timeout_s=1.0, max_retries=1), body)


def test_without_an_evaluator_model_the_evaluator_is_told_how_to_configure_one():
    models.configure(None)
    assert not models.available() and not models.available("reader") and models.names() == []
    with pytest.raises(models.EvaluatorModelError, match="add it under `evaluator_models:`"):
        models.chat(ask("hello"), model="reader")
