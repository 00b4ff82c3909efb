"""The loopback proxy through which evaluators reach their models (`evaluator_models:`).

One per run, started by the engine: an OpenAI-compatible HTTP endpoint (`POST
/v1/chat/completions`, `GET /v1/models`) on a Unix socket in a private folder. It forwards
each request to the configured model through a `ModelClient`, which adds the key, retries,
and counts tokens and cost; the key never leaves the engine's process. Every call is handed
to `record(proposal, call)` (the engine stores it with purpose "evaluate", adds it to the
spend and checks `budget.cost_usd`), shares the proposals' model slots (one semaphore), and
is answered from the record when the run replays another. Once the run stops (its money
spent, say), the proxy takes no more calls (`refuse`): only those already out finish.

Who may ask: each evaluation gets a grant (`grant(proposal)`): a random token, good until
the evaluation ends (`revoke`), which also ties its calls to the candidate for the store and
for replay. The evaluation reaches the socket only through a descriptor of its folder that
the pool passes to its workers (the folder is in no sandbox's filesystem view); candidate
code that `call_candidate` runs loses it with its other descriptors (evaluation/models.py).

A call that fails (an unreachable endpoint, an HTTP error after the retries, a replay that
diverged) is answered with HTTP 502 and the reason, which the evaluator's client raises:
the candidate is invalid with that reason, never a valid zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from ..config import Model
from ..errors import KeyRefused, ModelError
from ..files import remove_stale_folders
from ..records import ModelCall
from .replay import current_proposal

log = logging.getLogger(__name__)

SOCKET_NAME = "models.sock"
PREFIX = "evoengine-models-"  # + the engine's pid + "-" + random: the proxy's folder in /tmp
MAX_BODY = 16 * 1024 * 1024  # largest request accepted
PURPOSE = "evaluate"  # the store's `purpose` of evaluator-side calls


@dataclass
class Grant:
    """One evaluation's right to ask, and what its calls cost."""

    proposal: int | None
    label: str
    calls: int = 0
    errors: int = 0
    cost: float = 0.0


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ModelProxy:
    """The run's evaluator models behind a Unix socket (see the module docstring).

    Built with the socket bound (nothing served yet, nothing imported); `prepare` builds the
    model clients (in start-up's thread: it imports the HTTP client), `start` runs their
    pre-flight and then serves; requests that arrive earlier wait in the socket's backlog.
    """

    def __init__(self, models: list[Model], *, replay: str | None = None, concurrency: int = 2):
        self.models, self.replay, self.concurrency = models, replay, concurrency
        self.names = [m.name for m in models]
        remove_stale_folders(PREFIX)
        self.directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        if len(str(self.directory / SOCKET_NAME)) > 100:  # a socket's path ends at 108 bytes
            self.directory.rmdir()
            self.directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir="/tmp"))
        self.directory.chmod(0o711)  # the sandbox's uid may pass through, not list it
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.directory / SOCKET_NAME))
        (self.directory / SOCKET_NAME).chmod(0o666)  # the token, not the file mode, says who may ask
        self._listener.listen(256)
        self._listener.setblocking(False)
        self.fd = os.open(self.directory, os.O_PATH | os.O_DIRECTORY)  # what the pool hands its workers
        self.grants: dict[str, Grant] = {}
        self.pool: Any = None  # the ModelPool, once prepared
        self.record: Callable[[int | None, ModelCall], None] = lambda proposal, call: None
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task] = set()
        self._served = 0
        self.refusing: str | None = None  # why the run is stopping, once it is: no more calls

    def prepare(
        self,
        record: Callable[[int | None, ModelCall], None],
        slots: asyncio.Semaphore | None,
        stop: Callable[[str, str], None] = lambda reason, message: None,
    ) -> None:
        """Build the clients; `slots` is the proposals' semaphore (None: a new one of `concurrency`);
        `stop(reason, message)` stops the run (an endpoint that refused its key)."""
        from .client import ModelPool

        self.record, self.stop = record, stop
        self.pool = ModelPool(self.models, replay=self.replay, concurrency=self.concurrency, slots=slots)

    async def start(self) -> None:
        """The models' pre-flight (a `ModelError` naming every problem), then serve."""
        if self.pool is None:
            raise RuntimeError("ModelProxy.prepare() must be called before start()")
        try:
            await self.pool.preflight()
        except ModelError as exc:
            raise ModelError(f"evaluator_models: {exc}") from None
        self._server = await asyncio.start_unix_server(self._serve, sock=self._listener, limit=MAX_BODY)

    def grant(self, proposal: int | None, label: str) -> str:
        """A token for one evaluation (of proposal `proposal`, for its calls' records)."""
        token = secrets.token_urlsafe(24)
        self.grants[token] = Grant(proposal, label)
        return token

    def refuse(self, why: str) -> None:
        """Take no more calls: the run is stopping (`why`; say, its money budget is spent).
        Calls already out finish and are counted; an evaluation still asking is answered 503."""
        self.refusing = why

    def revoke(self, token: str) -> Grant | None:
        """End a grant; what its calls were."""
        return self.grants.pop(token, None)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self.pool is not None:
            await self.pool.aclose()
        with contextlib.suppress(OSError):
            self._listener.close()
            os.close(self.fd)
        shutil.rmtree(self.directory, ignore_errors=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    request = await _read_request(reader)
                    if request is None:
                        break
                    method, path, headers, body = request
                    status, payload = await self._answer(method, path, headers, body)
                    keep = headers.get("connection", "").lower() != "close"
                except _BadRequest as exc:
                    status, payload, keep = exc.status, _error(str(exc), "invalid_request_error"), False
                data = json.dumps(payload).encode()
                head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
                head += f"Content-Length: {len(data)}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n"
                writer.write(head.encode() + data)
                await writer.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the evaluation went away (killed at its timeout, say)
        except asyncio.CancelledError:  # `aclose`: end quietly (Python 3.11's stream callback logs a cancelled handler)
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        auth = headers.get("authorization", "")
        grant = self.grants.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None
        if grant is None:
            message = "no valid token: evaluator models answer only the evaluation they were granted to"
            return 401, _error(message, "invalid_api_key")
        path = path.split("?")[0].rstrip("/")
        if method == "GET" and path == "/v1/models":
            data = [{"id": n, "object": "model", "created": 0, "owned_by": "evoengine"} for n in self.names]
            return 200, {"object": "list", "data": data}
        if method != "POST" or path != "/v1/chat/completions":
            return 404, _error(f"no route {method} {path}: the proxy serves /v1/chat/completions", "not_found")
        if self.refusing is not None:
            return 503, _error(f"the run is stopping ({self.refusing}): no more evaluator calls", "run_stopping")
        name, messages, temperature, max_tokens = self._parse_chat(body)
        token = current_proposal.set(grant.proposal)  # a replay answers with this candidate's calls
        try:
            call = await self.pool[name].chat(messages, temperature=temperature, max_tokens=max_tokens, purpose=PURPOSE)
        except ModelError as exc:  # a replay that diverged, or a refused key: no reply to give
            call = ModelCall(name, "", messages, None, error=str(exc), purpose=PURPOSE)
            if isinstance(exc, KeyRefused):  # no later call would pass either
                self.stop("key refused", f"evaluator_models: {exc}")
        finally:
            current_proposal.reset(token)
        grant.calls += 1
        grant.cost += call.cost
        self.record(grant.proposal, call)
        if call.error is not None or call.reply is None:
            grant.errors += 1
            where = self.pool[name].backend.where
            return 502, _error(f"evaluator model {name!r} ({where}): {call.error}", "evaluator_model_error")
        self._served += 1
        usage = {"prompt_tokens": call.tokens_in, "completion_tokens": call.tokens_out}
        usage["total_tokens"] = call.tokens_in + call.tokens_out
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": call.reply}}
        return 200, {
            "id": f"evalcall-{self._served}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [choice],
            "usage": usage,
        }

    def _parse_chat(self, body: bytes) -> tuple[str, list[dict[str, str]], float | None, int | None]:
        try:
            request = json.loads(body)
        except ValueError as exc:
            raise _BadRequest(400, f"the request body is not JSON: {exc}") from None
        if not isinstance(request, dict):
            raise _BadRequest(400, "the request body must be a JSON object")
        name = request.get("model")
        if name not in self.names:
            raise _BadRequest(404, f"no evaluator model named {name!r}; configured: {', '.join(self.names)}")
        messages = request.get("messages") if isinstance(request.get("messages"), list) else []
        plain = [{"role": m.get("role"), "content": m.get("content")} for m in messages if isinstance(m, dict)]
        if not plain or len(plain) != len(messages) or not all(isinstance(v, str) for m in plain for v in m.values()):
            raise _BadRequest(400, "`messages` must be a non-empty list of {role, content} with text content")
        if request.get("stream") or request.get("n", 1) != 1 or request.get("tools"):
            raise _BadRequest(400, "the evaluator model proxy answers one plain chat completion (no stream, n, tools)")
        temperature = request.get("temperature")
        max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
        if temperature is not None and not isinstance(temperature, (int, float)):
            raise _BadRequest(400, "`temperature` must be a number")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise _BadRequest(400, "`max_tokens` must be a positive integer")
        return name, plain, None if temperature is None else float(temperature), max_tokens


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    """One HTTP/1.1 request (None at the end of the connection)."""
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, f"not an HTTP request line: {line[:80]!r}")
    headers: dict[str, str] = {}
    while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
        key, _, value = header.decode("latin-1").partition(":")
        headers[key.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _BadRequest(400, "chunked request bodies are not supported; send Content-Length")
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        raise _BadRequest(400, "Content-Length is not a number") from None
    if length > MAX_BODY:
        raise _BadRequest(413, f"the request body exceeds {MAX_BODY // 2**20} MB")
    body = await reader.readexactly(length) if length else b""
    return parts[0].upper(), parts[1], headers, body


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": kind}}
