"""Where a model's replies come from: an OpenAI-compatible endpoint through the official
`openai` client (one `AsyncOpenAI` per endpoint and key, reused for the run), or an earlier
run's recorded replies. The in-process vLLM backend is in `vllm.py`. A backend answers one
request (`complete`), says in one sentence why it cannot be used (`check`, the pre-flight),
and classifies its failures (`transient`, `describe`) for the client's retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass

import openai

from ..config import Model
from ..errors import ModelError
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
    """A model behind an OpenAI-compatible HTTP endpoint; the `AsyncOpenAI` is shared per endpoint
    (the pool closes it)."""

    def __init__(self, model: Model, endpoints: dict[tuple[str, str], openai.AsyncOpenAI]):
        self.model = model
        self.where = endpoint_url(model)
        self._endpoints = endpoints
        with contextlib.suppress(ModelError):  # no key in the environment: the pre-flight says so
            self.client()  # built now, in start-up's thread rather than on the event loop (~0.1 s: TLS setup)

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
        return Completion(text, token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens")))

    async def embed(self, texts: list[str], timeout_s: float) -> tuple[list[list[float]], int]:
        reply = await self.client().embeddings.create(model=self.model.model_id, input=texts, timeout=timeout_s)
        data = sorted(reply.data, key=lambda d: d.index)
        if len(data) != len(texts):
            raise MalformedReply(f"asked for {len(texts)} embeddings, got {len(data)}")
        usage = getattr(reply, "usage", None)
        return [list(d.embedding) for d in data], int(getattr(usage, "prompt_tokens", 0) or 0)

    async def check(self) -> str | None:
        name, where, model_id = self.model.name, self.where, self.model.model_id
        timeout = min(self.model.timeout_s, PREFLIGHT_TIMEOUT_S)
        served: list[str] = []
        try:
            client = self.client()
            try:
                served = [m.id for m in (await client.models.list(timeout=timeout)).data]
            except (openai.APIStatusError, openai.APIResponseValidationError, ValueError) as exc:
                if isinstance(exc, openai.AuthenticationError):
                    raise
                log.debug("model %s: %s/models failed (%s); trying a 1-token completion", name, where, exc)
            if model_id not in served:  # the list is missing or does not name the model: ask for one token
                ping = [{"role": "user", "content": "ping"}]
                await client.chat.completions.create(model=model_id, messages=ping, max_tokens=1, timeout=timeout)
        except ModelError as exc:  # no key in the environment
            return str(exc)
        except openai.AuthenticationError:
            return (
                f"model {name!r}: {where} refused the key in {self.model.api_key_env}; "
                f"check that the key is valid for this endpoint"
            )
        except openai.APIConnectionError as exc:
            return (
                f"model {name!r}: cannot reach {where} ({describe(exc)}); start the server "
                f"or fix `base_url` in its models entry"
            )
        except openai.NotFoundError:
            listed = f"; it serves: {', '.join(served[:20])}" if served else ""
            return (
                f"model {name!r}: {where} does not serve model {model_id!r}{listed}; fix `model:` in its models entry"
            )
        except (openai.APIStatusError, openai.APIResponseValidationError, ValueError) as exc:
            return f"model {name!r}: {where} failed a 1-token test request: {describe(exc)}"
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
    if isinstance(exc, openai.APIStatusError):
        body = exc.body.get("message", exc.body) if isinstance(exc.body, dict) else exc.body
        return f"HTTP {exc.status_code}: {str(body or exc.message)[:300]}"
    if isinstance(exc, (asyncio.TimeoutError, openai.APITimeoutError)):
        return "timed out"
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    return f"{text} ({cause})" if isinstance(exc, openai.APIConnectionError) and cause else text


def transient(exc: BaseException) -> bool:
    """Worth another try: rate limits, server errors, timeouts, dropped connections, garbage."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    if isinstance(exc, MalformedReply):
        return exc.transient
    return isinstance(exc, (openai.APIConnectionError, asyncio.TimeoutError))


def retry_after(exc: BaseException) -> float | None:
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
