"""Models for a problem's evaluator, inside its sandbox: `chat(...)`, `model_client()`, `available(...)`.

A problem declares the models its evaluator asks (`Problem(evaluator_models=("reader",))`);
the run's config gives each an endpoint (`evaluator_models:` entries, like `models:`). The
evaluator never holds the key: it asks the engine's proxy (llm/proxy.py), an
OpenAI-compatible endpoint on a Unix socket that adds the key, retries, and counts every
call into the run's spend, budget and replay record.

The worker keeps a descriptor of the socket's folder at fd 4 of each evaluation and hands it
a token good for that evaluation only; the socket is reached as /proc/self/fd/4/models.sock
and appears in no filesystem view. Candidate code that `call_candidate` runs starts with
only its pipes open, so it cannot reach the proxy (where the sandbox has a filesystem view:
docs/reliability.md); a sealed child (problems/harness_oracle) neither. A call that fails
raises `EvaluatorModelError` with the reason, so the candidate is invalid with it instead of
scoring a silent zero.

    from evoengine.evaluation import models
    if models.available("reader"):
        reply = models.chat([{"role": "user", "content": "..."}], model="reader", temperature=0)
        replies = models.chat_many([messages, ...], model="reader")  # several out at once, no threads

Without the config entry (an offline run) `available` is False and the evaluator uses its
own fallback (a simulated model, say); `chat` then raises `EvaluatorModelError`.
"""

from __future__ import annotations

import json
import selectors
import socket
from dataclasses import dataclass
from typing import Any

SOCKET_FD = 4  # where each evaluation holds the proxy's folder
SOCKET_NAME = "models.sock"  # as llm/proxy.py names it
BASE_URL = "http://evaluator-models/v1"  # the host part is never resolved: the socket is the way
TIMEOUT_S = 3600.0  # the evaluation's own timeout ends it first


class EvaluatorModelError(Exception):
    """An evaluator model could not answer: not configured, unreachable, or an HTTP error."""


@dataclass(frozen=True)
class Access:
    """This evaluation's way to its models."""

    token: str
    names: tuple[str, ...]
    socket: str | None = None  # the proxy's socket, where it is not at fd 4 (a test, say)

    @property
    def socket_path(self) -> str:
        return self.socket or f"/proc/self/fd/{SOCKET_FD}/{SOCKET_NAME}"


_access: Access | None = None


def configure(access: dict[str, Any] | None) -> None:
    """Set by the worker in each evaluation, before `evaluate` runs: {"token", "names"} and
    optionally "socket" (a path); None: no models."""
    global _access
    _access = Access(str(access["token"]), tuple(access["names"]), access.get("socket")) if access else None


def names() -> list[str]:
    """The evaluator models this run configured."""
    return list(_access.names) if _access else []


def available(name: str | None = None) -> bool:
    """Whether the run configured evaluator model `name` (any, if None)."""
    return _access is not None and (name is None or name in _access.names)


def chat(
    messages: list[dict[str, str]],
    *,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> str:
    """Ask evaluator model `model` (the only one configured, if None); its reply's text.

    `temperature` and `max_tokens` default to the model's config entry. Safe to call from
    several threads at once (the run's model slots limit how many are out)."""
    return chat_many([messages], model=model, temperature=temperature, max_tokens=max_tokens)[0]


def chat_many(
    conversations: list[list[dict[str, str]]],
    *,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    at_once: int = 8,
) -> list[str]:
    """`chat` for each conversation, up to `at_once` out together (one thread: no memory for
    thread stacks and arenas under the sandbox's address-space limit); the replies in order.
    The first failure raises."""
    name = _resolve(model)
    assert _access is not None
    requests = [_request(_body(name, m, temperature, max_tokens)) for m in conversations]
    replies: list[str] = [""] * len(requests)
    waiting = list(reversed(range(len(requests))))
    with selectors.DefaultSelector() as selector:
        try:
            for _ in range(min(at_once, len(requests))):
                _send_next(selector, waiting, requests)
            while selector.get_map():
                for key, _ in selector.select():
                    sock, job = key.fileobj, key.data
                    chunk = sock.recv(1 << 16)  # type: ignore[union-attr]
                    job["data"] += chunk
                    done = _response(job["data"])
                    if done is None and chunk:
                        continue
                    selector.unregister(sock)
                    sock.close()  # type: ignore[union-attr]
                    if done is None:
                        raise EvaluatorModelError("the evaluator model proxy closed the connection mid-reply")
                    replies[job["index"]] = _text(name, *done)
                    _send_next(selector, waiting, requests)
        finally:
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
    return replies


def model_client() -> Any:
    """An `openai.OpenAI` client for the evaluator models (pass `model=<name>`), through the proxy.

    It imports the `openai` client in the evaluation (about a second); `chat` needs nothing."""
    if _access is None:
        raise EvaluatorModelError(_unconfigured(None))
    import httpx
    import openai

    transport = httpx.HTTPTransport(uds=_access.socket_path)
    return openai.OpenAI(
        base_url=BASE_URL,
        api_key=_access.token,
        max_retries=0,  # the proxy retries, within the model's deadline
        timeout=TIMEOUT_S,
        http_client=httpx.Client(transport=transport, timeout=TIMEOUT_S),
    )


def _body(name: str, messages: Any, temperature: float | None, max_tokens: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": name, "messages": messages}
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def _text(name: str, status: int, reply: Any) -> str:
    if status != 200:
        error = reply.get("error") if isinstance(reply, dict) else None
        said = error.get("message") if isinstance(error, dict) else str(reply)[:300]
        raise EvaluatorModelError(f"{said} (HTTP {status})")
    try:
        return str(reply["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        raise EvaluatorModelError(f"evaluator model {name!r}: the proxy's reply has no text") from None


def _request(body: dict[str, Any]) -> bytes:
    """One HTTP request to the proxy, for `chat_many`'s own connections (closed after it)."""
    assert _access is not None
    data = json.dumps(body).encode()
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: evaluator-models\r\nContent-Type: application/json\r\n"
    head += f"Authorization: Bearer {_access.token}\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    return head.encode() + data


def _send_next(selector: selectors.BaseSelector, waiting: list[int], requests: list[bytes]) -> None:
    if not waiting:
        return
    index = waiting.pop()
    assert _access is not None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT_S)
        sock.connect(_access.socket_path)
        sock.sendall(requests[index])
    except OSError as exc:
        sock.close()
        raise EvaluatorModelError(f"cannot reach the engine's evaluator model proxy: {exc}") from None
    selector.register(sock, selectors.EVENT_READ, {"index": index, "data": b""})


def _response(data: bytes) -> tuple[int, Any] | None:
    """(status, JSON body) of a complete response from the proxy, or None while it is not."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    if len(body) < int(fields.get("content-length", "0")):
        return None
    try:
        return int(lines[0].split()[1]), json.loads(body)
    except (ValueError, IndexError):
        return 0, body[:300].decode(errors="replace")


def _resolve(model: str | None) -> str:
    if _access is None or (model is not None and model not in _access.names):
        raise EvaluatorModelError(_unconfigured(model))
    if model is None:
        if len(_access.names) != 1:
            raise EvaluatorModelError(f"name the evaluator model to ask: one of {', '.join(_access.names)}")
        return _access.names[0]
    return model


def _unconfigured(model: str | None) -> str:
    which = f"evaluator model {model!r}" if model else "an evaluator model"
    have = f" (it has: {', '.join(_access.names)})" if _access else ""
    return f"this run configures no {which}{have}; add it under `evaluator_models:` in the run's config"
