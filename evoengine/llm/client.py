"""Model clients: one `ModelClient` per configured model, behind a `ModelPool` for the run.

A `ModelClient` sends chat requests through a backend (an OpenAI-compatible endpoint via
the official `openai` async client, vLLM in process, or the replies recorded by an earlier
run) and owns what every call needs around it: retries with exponential backoff on rate
limits, 5xx, timeouts and malformed replies; an overall deadline per call; token usage,
cost (prices are USD per million tokens) and the request hash. A call that still fails
comes back as a `ModelCall` whose `error` says why; it never raises for a bad endpoint
mid-run, except for a replay that diverged (a `ModelError`, which should stop the run).

`await preflight(models)` (or `ModelPool.preflight()`) checks, before anything is spent,
that every model's key is in the environment and its endpoint answers, and raises one
`ModelError` listing every problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import openai

from ..config import Model
from ..errors import ModelError
from ..problem import safe_text
from ..records import ModelCall
from .replay import ReplayBook, current_proposal, request_hash

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
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


class Backend(Protocol):
    """How a `ModelClient` reaches its model."""

    where: str  # the endpoint or source, for messages

    async def complete(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, timeout_s: float, digest: str
    ) -> Completion: ...

    async def check(self) -> str | None:
        """A pre-flight problem in one sentence, or None when the model answers."""

    async def aclose(self) -> None: ...


# ---------------------------------------------------------------- OpenAI-compatible


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


class OpenAIBackend:
    """A model behind an OpenAI-compatible HTTP endpoint; the `AsyncOpenAI` is shared per endpoint."""

    def __init__(self, model: Model, endpoints: dict[tuple[str, str], openai.AsyncOpenAI]):
        self.model = model
        self.where = endpoint_url(model)
        self._endpoints = endpoints
        try:  # built now, in start-up's thread rather than on the event loop (~0.1 s: TLS setup)
            self.client()
        except ModelError:
            pass  # no key in the environment: the pre-flight says so

    def client(self) -> openai.AsyncOpenAI:
        key = api_key(self.model)
        slot = (self.where, key)
        if slot not in self._endpoints:
            # Retries are ours (with a deadline), so the client's own are off.
            self._endpoints[slot] = openai.AsyncOpenAI(
                base_url=self.where, api_key=key, max_retries=0, timeout=self.model.timeout_s
            )
        return self._endpoints[slot]

    async def complete(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, timeout_s: float, digest: str
    ) -> Completion:
        # The request goes out as plain JSON and the reply is read as JSON: the client's typed
        # `chat.completions.create` spends ~2.5 ms of CPU per call typing both, half of the
        # engine's own time per candidate (benchmarks/README.md). Errors, headers and the
        # endpoint are the client's, as with `create`.
        body = {
            "model": self.model.model_id,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        raw = await self.client().post("/chat/completions", body=body, cast_to=bytes, options={"timeout": timeout_s})
        try:
            reply = json.loads(raw)
        except ValueError as exc:
            raise MalformedReply(f"the reply is not valid JSON ({exc})") from exc
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list):
            raise MalformedReply(f"the reply is not a chat completion (got {raw[:200]!r})")
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
        return Completion(text, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))

    async def embed(self, texts: list[str], timeout_s: float) -> tuple[list[list[float]], int]:
        reply = await self.client().embeddings.create(model=self.model.model_id, input=texts, timeout=timeout_s)
        data = sorted(reply.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise MalformedReply(f"asked for {len(texts)} embeddings, got {len(data)}")
        usage = getattr(reply, "usage", None)
        return [list(d.embedding) for d in data], int(getattr(usage, "prompt_tokens", 0) or 0)

    async def check(self) -> str | None:
        name, where = self.model.name, self.where
        try:
            client = self.client()
        except ModelError as exc:
            return str(exc)
        timeout = min(self.model.timeout_s, PREFLIGHT_TIMEOUT_S)
        served: list[str] | None = None
        try:
            page = await client.models.list(timeout=timeout)
            served = [m.id for m in page.data]
        except (openai.AuthenticationError, openai.APIConnectionError) as exc:
            return self._unusable(exc, where)
        except (openai.APIStatusError, openai.APIResponseValidationError, ValueError) as exc:
            log.debug("model %s: %s/models failed (%s); trying a 1-token completion", name, where, exc)
        if served is not None and self.model.model_id in served:
            return None
        try:  # the list is missing or does not name the model: ask for one token
            await client.chat.completions.create(
                model=self.model.model_id,
                messages=[{"role": "user", "content": "ping"}],
                max_tokens=1,
                timeout=timeout,
            )
            return None
        except openai.NotFoundError:
            listed = f"; it serves: {', '.join(served[:20])}" if served else ""
            return (
                f"model {name!r}: {where} does not serve model {self.model.model_id!r}"
                f"{listed}; fix `model:` in its models entry"
            )
        except (openai.AuthenticationError, openai.APIConnectionError) as exc:
            return self._unusable(exc, where)
        except (openai.APIStatusError, openai.APIResponseValidationError, ValueError) as exc:
            return f"model {name!r}: {where} failed a 1-token test request: {_describe(exc)}"

    def _unusable(self, exc: Exception, where: str) -> str:
        """What to tell the user when the endpoint refuses the key or cannot be reached."""
        name = self.model.name
        if isinstance(exc, openai.AuthenticationError):
            return (
                f"model {name!r}: {where} refused the key in {self.model.api_key_env}; "
                f"check that the key is valid for this endpoint"
            )
        return (
            f"model {name!r}: cannot reach {where} ({_describe(exc)}); start the server "
            f"or fix `base_url` in its models entry"
        )

    async def aclose(self) -> None:
        return None  # the endpoint's client is shared; the pool closes it


class ReplayBackend:
    """Answers from an earlier run's recorded replies; needs no endpoint and no key."""

    def __init__(self, model: Model, book: ReplayBook):
        self.model = model
        self.book = book
        self.where = f"replay of {book.run_dir}"

    async def complete(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, timeout_s: float, digest: str
    ) -> Completion:
        rec = self.book.take(digest, self.model.name, current_proposal.get())
        return Completion(rec.reply or "", rec.tokens_in, rec.tokens_out, rec.cost, rec.error)

    async def check(self) -> str | None:
        return None  # the book was read when it was opened

    async def aclose(self) -> None:
        return None


# ---------------------------------------------------------------- the client


def _count(value: object) -> int:
    """A token count from a reply's usage; what is not a number counts as 0."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        body = exc.body.get("message", exc.body) if isinstance(exc.body, dict) else exc.body
        return f"HTTP {exc.status_code}: {str(body or exc.message)[:300]}"
    if isinstance(exc, (asyncio.TimeoutError, openai.APITimeoutError)):
        return "timed out"
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    return f"{text} ({cause})" if isinstance(exc, openai.APIConnectionError) and cause else text


def _transient(exc: BaseException) -> bool:
    """Worth another try: rate limits, server errors, timeouts, dropped connections, garbage."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    if isinstance(exc, MalformedReply):
        return exc.transient
    return isinstance(exc, (openai.APIConnectionError, asyncio.TimeoutError))


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for header, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is not None:
            try:
                return min(max(float(value) / scale, 0.0), MAX_RETRY_AFTER_S)
            except ValueError:
                continue
    return None


class ModelClient:
    """One configured model: chat calls with retries, a deadline, usage, cost and hash."""

    def __init__(
        self, model: Model, backend: Backend, *, backoff_s: float = 1.0, slots: asyncio.Semaphore | None = None
    ):
        self.model = model
        self.backend = backend
        self.backoff_s = backoff_s
        self.slots = slots or contextlib.nullcontext()  # shared by the pool's clients
        self._jitter = random.Random(model.name)  # only spaces out retries; never touches results

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def deadline_s(self) -> float:
        """The longest one call may take, retries and waits included."""
        return self.model.timeout_s * (self.model.max_retries + 1)

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.model.price_in + tokens_out * self.model.price_out) / 1e6

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        purpose: str = "propose",
    ) -> ModelCall:
        """Ask the model; the `ModelCall` has the reply, or `error` saying why there is none."""
        temp = self.model.temperature if temperature is None else temperature
        limit = self.model.max_tokens if max_tokens is None else max_tokens
        digest = request_hash(self.model.model_id, messages, temp, limit)
        start: float | None = None  # the first attempt's start: latency and deadline count from it
        attempts = 0
        while True:
            attempts += 1
            async with self.slots:  # one of the run's model-call slots, only while a request is out
                if start is None:
                    start = time.monotonic()
                    deadline = start + self.deadline_s
                timeout = min(self.model.timeout_s, deadline - time.monotonic())
                try:
                    done = await asyncio.wait_for(
                        self.backend.complete(messages, temp, limit, timeout, digest), timeout
                    )
                    break
                except ModelError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded reason
                    failure = exc
            reason = _describe(failure)
            retry = _transient(failure) and attempts <= self.model.max_retries
            wait = self._backoff(attempts, failure)
            if retry and time.monotonic() + wait < deadline:
                log.info(
                    "model %s: %s; retry %d/%d in %.2fs", self.name, reason, attempts, self.model.max_retries, wait
                )
                await asyncio.sleep(wait)
                continue
            if retry:
                reason += f"; gave up at the {self.deadline_s:g}s deadline"
            elif attempts > 1:
                reason += f" (after {attempts} attempts)"
            log.warning("model %s (%s): %s", self.name, self.backend.where, reason)
            return ModelCall(
                self.name, digest, messages, None, latency_s=time.monotonic() - start, error=reason, purpose=purpose
            )
        cost = done.cost if done.cost is not None else self.cost(done.tokens_in, done.tokens_out)
        return ModelCall(
            self.name,
            digest,
            messages,
            None if done.error else safe_text(done.text),
            tokens_in=done.tokens_in,
            tokens_out=done.tokens_out,
            cost=cost,
            latency_s=time.monotonic() - start,
            error=done.error,
            purpose=purpose,
        )

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], ModelCall]:
        """Embedding vectors for `texts` (OpenAI-compatible endpoints only), with its call record."""
        if not isinstance(self.backend, OpenAIBackend):
            raise ModelError(f"model {self.name!r}: embeddings need an OpenAI-compatible endpoint")
        digest = request_hash(self.model.model_id, [{"role": "user", "content": t} for t in texts], 0, 0)
        start = time.monotonic()
        deadline = start + self.deadline_s
        attempts = 0
        while True:
            attempts += 1
            timeout = min(self.model.timeout_s, deadline - time.monotonic())
            try:
                vectors, tokens = await asyncio.wait_for(self.backend.embed(texts, timeout), timeout)
                call = ModelCall(
                    self.name,
                    digest,
                    [],
                    None,
                    tokens_in=tokens,
                    cost=self.cost(tokens, 0),
                    latency_s=time.monotonic() - start,
                    purpose="embed",
                )
                return vectors, call
            except Exception as exc:  # noqa: BLE001
                wait = self._backoff(attempts, exc)
                if _transient(exc) and attempts <= self.model.max_retries and time.monotonic() + wait < deadline:
                    await asyncio.sleep(wait)
                    continue
                raise ModelError(
                    f"model {self.name!r} ({self.backend.where}): embedding failed: {_describe(exc)}"
                ) from exc

    def _backoff(self, attempt: int, exc: BaseException) -> float:
        hinted = _retry_after(exc)
        if hinted is not None:
            return hinted
        base = min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
        return base * (0.5 + 0.5 * self._jitter.random())


# ---------------------------------------------------------------- the pool


class ModelPool:
    """The run's model clients by name; one `AsyncOpenAI` per endpoint, reused for the run;
    with `concurrency`, that many requests out at once at most, over all of them.

    With `replay` (a run directory) every model answers from that run's recorded replies.
    """

    def __init__(
        self,
        models: list[Model],
        *,
        replay: str | Path | None = None,
        backoff_s: float = 1.0,
        concurrency: int | None = None,
    ):
        self._endpoints: dict[tuple[str, str], openai.AsyncOpenAI] = {}
        self.book = ReplayBook(replay) if replay else None
        self.clients: dict[str, ModelClient] = {}
        # At most `concurrency` requests out at once across all models (proposals, repairs, judge).
        slots = asyncio.Semaphore(concurrency) if concurrency else None
        for model in models:
            self.clients[model.name] = ModelClient(model, self._backend(model), backoff_s=backoff_s, slots=slots)

    def _backend(self, model: Model) -> Backend:
        if self.book is not None:
            return ReplayBackend(model, self.book)
        if model.backend == "vllm":
            from .vllm import VLLMBackend

            return VLLMBackend(model)
        return OpenAIBackend(model, self._endpoints)

    @property
    def names(self) -> list[str]:
        return list(self.clients)

    def __getitem__(self, name: str) -> ModelClient:
        try:
            return self.clients[name]
        except KeyError:
            raise ModelError(f"no model named {name!r}; configured: {', '.join(self.clients)}") from None

    async def preflight(self) -> None:
        """Raise one `ModelError` naming every model that cannot be used; spend nothing else."""
        checks = await asyncio.gather(*(c.backend.check() for c in self.clients.values()))
        problems = [p for p in checks if p]
        if problems:
            raise ModelError("model pre-flight check failed, nothing was spent:\n  - " + "\n  - ".join(problems))
        log.info("models ready: %s", ", ".join(f"{c.name} ({c.backend.where})" for c in self.clients.values()))

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.backend.aclose()
        for slot, endpoint in list(self._endpoints.items()):
            del self._endpoints[slot]
            await endpoint.close()


async def preflight(models: list[Model], *, replay: str | Path | None = None) -> None:
    """Check every model is reachable with the keys in the environment (one `ModelError` if not)."""
    pool = ModelPool(models, replay=replay)
    try:
        await pool.preflight()
    finally:
        await pool.aclose()
