"""Model clients: one `ModelClient` per configured model, behind a `ModelPool` for the run.

A `ModelClient` sends chat requests through a backend (an OpenAI-compatible endpoint over
HTTP, vLLM in process, or the replies recorded by an earlier run) and owns what every call
needs around it: retries with exponential backoff on rate limits, 5xx, timeouts and
malformed replies; an overall deadline per call; token usage, cost (prices are USD per
million tokens) and the request hash. A call that still fails comes back as a `ModelCall`
whose `error` says why; it never raises for a bad endpoint mid-run, except for a replay
that diverged (a `ModelError`, which should stop the run).

`await preflight(models)` (or `ModelPool.preflight()`) checks, before anything is spent,
that every model's key is in the environment and its endpoint answers, and raises one
`ModelError` listing every problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config import Model
from ..errors import KeyRefused, ModelError
from ..problem import safe_text
from ..records import ModelCall
from .backends import Backend, Completion, OpenAIBackend, ReplayBackend, describe, refused_key, retry_after, transient
from .httpx_lean import httpx
from .replay import ReplayBook, request_hash

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
T = TypeVar("T")


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

    async def _retrying(self, attempt: Callable[[float], Awaitable[T]], slots: Any) -> tuple[T | Exception, float]:
        """`attempt(timeout)` until it succeeds, fails for good, or the call's deadline would pass,
        with backoff between tries; its result (or the last failure, its reason extended) and
        when the first try started. Each try holds one of `slots` while it is out."""
        start: float | None = None  # the first try's start: latency and deadline count from it
        tries = 0
        while True:
            tries += 1
            async with slots:
                if start is None:
                    start = time.monotonic()
                    deadline = start + self.deadline_s
                timeout = min(self.model.timeout_s, deadline - time.monotonic())
                try:
                    return await asyncio.wait_for(attempt(timeout), timeout), start
                except ModelError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded reason
                    failure = exc
            if refused_key(failure):  # every later call would be refused too: stop, and say how to go on
                held = f"the key in ${self.model.api_key_env}" if self.model.api_key_env else "its request"
                raise KeyRefused(
                    f"model {self.name} ({self.backend.where}) refused {held}: {describe(failure)}; "
                    "with a valid key there, resume the run"
                )
            retry = transient(failure) and tries <= self.model.max_retries
            wait = self._backoff(tries, failure)
            reason = describe(failure)
            if retry and time.monotonic() + wait < deadline:
                log.info("model %s: %s; retry %d/%d in %.2fs", self.name, reason, tries, self.model.max_retries, wait)
                await asyncio.sleep(wait)
                continue
            if retry:
                reason += f"; gave up at the {self.deadline_s:g}s deadline"
            elif tries > 1:
                reason += f" (after {tries} attempts)"
            return RuntimeError(reason), start

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

        def ask(timeout: float) -> Awaitable[Completion]:
            return self.backend.complete(messages, temp, limit, timeout, digest)

        done, start = await self._retrying(ask, self.slots)  # one of the run's model slots per try
        latency = time.monotonic() - start
        if isinstance(done, Exception):
            log.warning("model %s (%s): %s", self.name, self.backend.where, done)
            return ModelCall(self.name, digest, messages, None, latency_s=latency, error=str(done), purpose=purpose)
        cost = done.cost if done.cost is not None else self.cost(done.tokens_in, done.tokens_out)
        text = None if done.error else safe_text(done.text)
        return ModelCall(
            self.name, digest, messages, text, tokens_in=done.tokens_in, tokens_out=done.tokens_out, cost=cost,
            latency_s=latency, error=done.error, purpose=purpose,
        )  # fmt: skip

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], ModelCall]:
        """Embedding vectors for `texts` (OpenAI-compatible endpoints only), with its call record."""
        if not isinstance(self.backend, OpenAIBackend):
            raise ModelError(f"model {self.name!r}: embeddings need an OpenAI-compatible endpoint")
        digest = request_hash(self.model.model_id, [{"role": "user", "content": t} for t in texts], 0, 0)
        done, start = await self._retrying(lambda timeout: self.backend.embed(texts, timeout), contextlib.nullcontext())
        if isinstance(done, Exception):
            raise ModelError(f"model {self.name!r} ({self.backend.where}): embedding failed: {done}")
        vectors, tokens = done
        call = ModelCall(
            self.name, digest, [], None, tokens_in=tokens, cost=self.cost(tokens, 0),
            latency_s=time.monotonic() - start, purpose="embed",
        )  # fmt: skip
        return vectors, call

    def _backoff(self, attempt: int, exc: BaseException) -> float:
        hinted = retry_after(exc)
        if hinted is not None:
            return hinted
        base = min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
        return base * (0.5 + 0.5 * self._jitter.random())


class ModelPool:
    """The run's model clients by name; one HTTP client per endpoint and key, reused for the run;
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
        slots: asyncio.Semaphore | None = None,
    ):
        self._endpoints: dict[tuple[str, str], httpx.AsyncClient] = {}
        self.book = ReplayBook(replay) if replay else None
        # At most `concurrency` requests out at once across all models (proposals, repairs, judge),
        # or, with `slots`, another pool's semaphore shared (the evaluators' models share the proposals').
        self.slots = slots or (asyncio.Semaphore(concurrency) if concurrency else None)
        self.clients = {m.name: ModelClient(m, self._backend(m), backoff_s=backoff_s, slots=self.slots) for m in models}

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
            await endpoint.aclose()


async def preflight(models: list[Model], *, replay: str | Path | None = None) -> None:
    """Check every model is reachable with the keys in the environment (one `ModelError` if not)."""
    pool = ModelPool(models, replay=replay)
    try:
        await pool.preflight()
    finally:
        await pool.aclose()
