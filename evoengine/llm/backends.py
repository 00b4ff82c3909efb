"""Where a model's replies come from: an OpenAI-compatible endpoint over HTTP (one
`httpx.AsyncClient` per endpoint and key, reused for the run), or an earlier run's recorded
replies. The in-process vLLM backend is in `vllm.py`. A backend answers one request
(`complete`), says in one sentence why it cannot be used (`check`, the pre-flight), and
classifies its failures (`transient`, `describe`) for the client's retries.

The endpoint is spoken to directly, not through the official `openai` client: a chat request
is one JSON POST, and importing that client costs ~0.7 s of CPU before a run's first request
(benchmarks/README.md, start-up), where `httpx`, which it is built on, costs under 0.1 s."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from ..config import Model
from ..errors import ModelError
from .httpx_lean import httpx
from .replay import ReplayBook, current_proposal

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 60.0
PREFLIGHT_TIMEOUT_S = 20.0
DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class Completion:
    """What a backend got back for one request."""

    text: str
    tokens_in: int
    tokens_out: int
    cost: float | None = None  # set when the backend knows better than the prices (replay)
    error: str | None = None  # a failure the backend reports as the answer (replay)


class MalformedReply(Exception):
    """The endpoint answered, but not with a usable chat completion."""

    def __init__(self, message: str, *, transient: bool = True):
        super().__init__(message)
        self.transient = transient


class StatusError(Exception):
    """The endpoint answered with an HTTP error status."""

    def __init__(self, response: httpx.Response):
        self.response = response
        self.status_code = response.status_code
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        if isinstance(body, dict) and "error" in body:  # OpenAI's {"error": {"message": ...}}
            body = body["error"]
        if isinstance(body, dict):
            body = body.get("message", body)
        super().__init__(f"HTTP {self.status_code}: {str(body or response.reason_phrase)[:300]}")


class Backend:
    """How a `ModelClient` reaches its model."""

    where: str  # the endpoint or source, for messages

    async def complete(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, timeout_s: float, digest: str
    ) -> Completion:
        raise NotImplementedError

    async def check(self) -> str | None:
        """A pre-flight problem in one sentence, or None when the model answers."""
        return None

    async def aclose(self) -> None:
        return None


def endpoint_url(model: Model) -> str:
    return (model.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def api_key(model: Model) -> str:
    """The key from `model.api_key_env`, or a placeholder for endpoints without keys."""
    if model.api_key_env is None:
        return "EMPTY"
    key = os.environ.get(model.api_key_env)
    if not key:
        raise ModelError(
            f"model {model.name!r} ({endpoint_url(model)}): the environment variable "
            f"{model.api_key_env} holding its API key is not set; export {model.api_key_env}=<key>, "
            f"or set `api_key_env: null` in its models entry for an endpoint without keys "
            f"(local vLLM, Ollama)"
        )
    return key


class OpenAIBackend(Backend):
    """A model behind an OpenAI-compatible HTTP endpoint; the `httpx.AsyncClient` is shared per
    endpoint and key (the pool closes it)."""

    def __init__(self, model: Model, endpoints: dict[tuple[str, str], httpx.AsyncClient]):
        self.model = model
        self.where = endpoint_url(model)
        self._endpoints = endpoints
        with contextlib.suppress(ModelError):  # no key in the environment: the pre-flight says so
            self.client()  # built now, in start-up's thread rather than on the event loop (TLS setup)

    def client(self) -> httpx.AsyncClient:
        key = api_key(self.model)
        slot = (self.where, key)
        if slot not in self._endpoints:
            self._endpoints[slot] = httpx.AsyncClient(
                base_url=self.where + "/",
                headers={"Authorization": f"Bearer {key}"},
                # plain HTTP (a local server) needs no certificates: loading them costs ~0.1 s of CPU
                verify=self.where.lower().startswith("https:"),
                timeout=self.model.timeout_s,
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
            )
        return self._endpoints[slot]

    async def _request(self, method: str, path: str, timeout_s: float, body: Any = None) -> Any:
        """One request's reply as JSON; an error status raises `StatusError`, a reply that is
        not JSON `MalformedReply`."""
        response = await self.client().request(method, path, json=body, timeout=timeout_s)
        if response.status_code >= 400:
            raise StatusError(response)
        try:
            return response.json()
        except ValueError as exc:
            raise MalformedReply(f"the reply is not valid JSON ({exc})") from exc

    async def complete(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, timeout_s: float, digest: str
    ) -> Completion:
        body = {
            "model": self.model.model_id,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        reply = await self._request("POST", "chat/completions", timeout_s, body)
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list):
            raise MalformedReply(f"the reply is not a chat completion (got {json.dumps(reply)[:200]})")
        if not choices:
            raise MalformedReply("the reply has no choices")
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str) or not text.strip():
            finish = choice.get("finish_reason")
            if finish == "length":  # asking again would end the same way
                raise MalformedReply(
                    f"the reply has no text: it ran out of tokens (max_tokens={max_tokens}); "
                    f"raise max_tokens for this model",
                    transient=False,
                )
            raise MalformedReply(
                f"the reply has no text (finish_reason={finish!r})", transient=finish != "content_filter"
            )
        usage = reply.get("usage")
        if not isinstance(usage, dict):  # some servers omit usage: estimate ~4 characters per token
            return Completion(text, sum(len(m["content"]) for m in messages) // 4 + 1, len(text) // 4 + 1)
        return Completion(text, token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens")))

    async def embed(self, texts: list[str], timeout_s: float) -> tuple[list[list[float]], int]:
        reply = await self._request("POST", "embeddings", timeout_s, {"model": self.model.model_id, "input": texts})
        data = reply.get("data") if isinstance(reply, dict) else None
        if not isinstance(data, list) or not all(isinstance(d, dict) and "embedding" in d for d in data):
            raise MalformedReply(f"the reply is not a list of embeddings (got {json.dumps(reply)[:200]})")
        if len(data) != len(texts):
            raise MalformedReply(f"asked for {len(texts)} embeddings, got {len(data)}")
        data.sort(key=lambda d: d.get("index", 0))
        usage = reply.get("usage")
        return [list(d["embedding"]) for d in data], token_count(
            usage.get("prompt_tokens") if isinstance(usage, dict) else 0
        )

    async def check(self) -> str | None:
        name, where, model_id = self.model.name, self.where, self.model.model_id
        timeout = min(self.model.timeout_s, PREFLIGHT_TIMEOUT_S)
        served: list[str] = []
        try:
            try:
                listed = await self._request("GET", "models", timeout)
                entries = listed.get("data") if isinstance(listed, dict) else None
                served = [str(m.get("id")) for m in entries or [] if isinstance(m, dict)]
            except (StatusError, MalformedReply) as exc:
                if isinstance(exc, StatusError) and exc.status_code == 401:
                    raise
                log.debug("model %s: %s/models failed (%s); trying a 1-token completion", name, where, exc)
            if model_id not in served:  # the list is missing or does not name the model: ask for one token
                ping = {"model": model_id, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
                await self._request("POST", "chat/completions", timeout, ping)
        except ModelError as exc:  # no key in the environment
            return str(exc)
        except (StatusError, MalformedReply) as exc:
            status = getattr(exc, "status_code", None)
            if status == 401:
                return (
                    f"model {name!r}: {where} refused the key in {self.model.api_key_env}; "
                    f"check that the key is valid for this endpoint"
                )
            if status == 404:
                listed = f"; it serves: {', '.join(served[:20])}" if served else ""
                return (
                    f"model {name!r}: {where} does not serve model {model_id!r}{listed}; "
                    f"fix `model:` in its models entry"
                )
            return f"model {name!r}: {where} failed a 1-token test request: {describe(exc)}"
        except (httpx.TransportError, asyncio.TimeoutError) as exc:
            return (
                f"model {name!r}: cannot reach {where} ({describe(exc)}); start the server "
                f"or fix `base_url` in its models entry"
            )
        return None


class ReplayBackend(Backend):
    """Answers from an earlier run's recorded replies; needs no endpoint and no key (its
    pre-flight was reading the book)."""

    def __init__(self, model: Model, book: ReplayBook):
        self.model = model
        self.book = book
        self.where = f"replay of {book.run_dir}"

    async def complete(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, timeout_s: float, digest: str
    ) -> Completion:
        rec = self.book.take(digest, self.model.name, current_proposal.get())
        return Completion(rec.reply or "", rec.tokens_in, rec.tokens_out, rec.cost, rec.error)


def token_count(value: object) -> int:
    """A token count from a reply's usage; what is not a number counts as 0."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def describe(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)):
        return "timed out"
    if isinstance(exc, httpx.TransportError):
        return f"Connection error ({str(exc) or type(exc).__name__})"
    return str(exc) or type(exc).__name__


def transient(exc: BaseException) -> bool:
    """Worth another try: rate limits, server errors, timeouts, dropped connections, garbage."""
    if isinstance(exc, StatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    if isinstance(exc, MalformedReply):
        return exc.transient
    return isinstance(exc, (httpx.TransportError, asyncio.TimeoutError))


def refused_key(exc: BaseException) -> bool:
    """The endpoint refused the key (HTTP 401: wrong, revoked or expired): no call will pass."""
    return isinstance(exc, StatusError) and exc.status_code == 401


def retry_after(exc: BaseException) -> float | None:
    if not isinstance(exc, StatusError):
        return None
    headers = exc.response.headers
    for header, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is not None:
            try:
                return min(max(float(value) / scale, 0.0), MAX_RETRY_AFTER_S)
            except ValueError:
                continue
    return None
