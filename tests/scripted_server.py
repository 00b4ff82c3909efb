"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for tests that go through the engine's
real model clients (and, for evaluator models, the `openai` client) and real HTTP.

It serves `/v1/chat/completions`, `/v1/models` and `/v1/embeddings`. Each model answers
with a fixed text or a rule (a callable taking the request JSON); faults are injected per
model and used up in order before the normal replies (HTTP statuses, or `FAULTS`: a reply
past the client's timeout, a body that is not JSON, no choices, no text, no text because
max_tokens ran out, no usage numbers):

    server = ScriptedServer().start()
    server.script("good", lambda request: "<<<<<<< SEARCH\\n...")
    server.inject("good", 429, 500, "timeout", "bad_json", "empty_choices", "no_content")
    model = server.model("good", price_in=1.0)      # an evoengine.config.Model for it
    ...
    server.log                                      # every request: path, model, body, status
    server.stop()                                   # or drop(): the endpoint dies, connections cut

Usage numbers in replies are word counts (prompt: the words of all messages; completion:
the words of the reply), also kept in the log, so tests can check costs exactly.

Fixtures: `scripted_server` (started for the test, stopped after it) and `dead_url`
(the base URL of a port nobody listens on). `ScriptedServer(latency_s=...)` simulates a
model of fixed latency: each chat reply leaves that long after its request arrived, the
server's own work included.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from evoengine.config import Model

Reply = str | Callable[[dict[str, Any]], Any]
FAULTS = ("timeout", "bad_json", "empty_choices", "no_content", "cut_off", "no_usage")


@dataclass
class Logged:
    """One request the server was asked."""

    path: str
    model: str | None
    body: dict[str, Any]
    status: int = 200
    fault: str | int | None = None
    reply: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    at: float = 0.0


class ScriptedServer:
    def __init__(
        self,
        *,
        require_key: str | None = None,
        timeout_sleep_s: float = 2.0,
        embedding_dim: int = 16,
        latency_s: float = 0.0,
    ):
        self.require_key = require_key
        self.latency_s = latency_s  # a chat reply leaves this long after its request arrived
        self.timeout_sleep_s = timeout_sleep_s
        self.embedding_dim = embedding_dim
        self.replies: dict[str, Reply] = {}
        self.faults: dict[str, deque[str | int]] = defaultdict(deque)
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # ------------------------------------------------------------ scripting

    def script(self, model: str, reply: Reply) -> ScriptedServer:
        """`model` answers with `reply`: a text, or a callable(request JSON) -> text or fault."""
        self.replies[model] = reply
        return self

    def inject(self, model: str, *faults: str | int) -> ScriptedServer:
        """Faults answered before the normal replies: HTTP statuses (429, 500) or one of FAULTS."""
        for fault in faults:
            if not isinstance(fault, int) and fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; use an HTTP status or one of {FAULTS}")
            self.faults[model].append(fault)
        return self

    def model(self, name: str, **overrides: Any) -> Model:
        """An `evoengine.config.Model` pointing at this server (short timeouts, no key)."""
        settings: dict[str, Any] = {
            "name": name,
            "base_url": self.url,
            "api_key_env": None,
            "timeout_s": 1.0,
            "max_retries": 3,
        }
        settings.update(overrides)
        return Model(**settings)

    def calls(self, model: str | None = None, path: str = "/v1/chat/completions") -> list[Logged]:
        with self._lock:
            return [e for e in self.log if e.path == path and (model is None or e.model == model)]

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ScriptedServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do

            def setup(self) -> None:
                super().setup()  # headers and body leave in separate writes: don't let Nagle wait
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with server._lock:
                    server._connections.add(self.connection)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def parse_request(self) -> bool:  # the request line is in: the request has arrived
                self.arrived = time.monotonic()
                return super().parse_request()

            def do_GET(self) -> None:  # noqa: N802
                server._handle(self, None, self.arrived)

            def do_POST(self) -> None:  # noqa: N802
                arrived = self.arrived
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                server._handle(self, body, arrived)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), daemon=True, name="scripted-openai-server"
        )
        self._thread.start()
        return self

    def drop(self) -> None:
        """The endpoint dies: stop listening and cut every open connection (kept-alive ones too)."""
        self.stop()
        with self._lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------ answering

    def _handle(self, handler: BaseHTTPRequestHandler, body: dict[str, Any] | None, arrived: float) -> None:
        path = handler.path.split("?")[0].rstrip("/")
        entry = Logged(path, (body or {}).get("model"), body or {}, at=arrived)
        with self._lock:
            self.log.append(entry)
        if self.require_key is not None:
            auth = handler.headers.get("Authorization", "")
            if auth != f"Bearer {self.require_key}":
                entry.status = 401
                return self._send(handler, 401, _error("Incorrect API key provided", "invalid_api_key"))
        if path == "/v1/models" and body is None:
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "scripted"} for m in self.replies]
            return self._send(handler, 200, {"object": "list", "data": data})
        if path == "/v1/chat/completions" and body is not None:
            return self._chat(handler, body, entry)
        if path == "/v1/embeddings" and body is not None:
            return self._embeddings(handler, body, entry)
        entry.status = 404
        return self._send(handler, 404, _error(f"no route {handler.command} {path}", "not_found"))

    def _next_fault(self, model: str) -> str | int | None:
        with self._lock:
            queue = self.faults.get(model)
            return queue.popleft() if queue else None

    def _chat(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], entry: Logged) -> None:
        model = str(body.get("model"))
        if model not in self.replies:
            entry.status = 404
            return self._send(handler, 404, _error(f"The model `{model}` does not exist", "model_not_found"))
        fault = self._next_fault(model)
        reply = self.replies[model]
        if not isinstance(fault, int):
            produced = reply(body) if callable(reply) else reply
            if fault is None and (isinstance(produced, int) or produced in FAULTS):
                fault = produced
            else:
                entry.reply = str(produced)
        entry.fault = fault
        if isinstance(fault, int):
            entry.status = fault
            headers = {"retry-after-ms": "0"} if fault == 429 else {}
            return self._send(handler, fault, _error(f"injected {fault}", "injected"), headers)
        if fault == "timeout":
            self._stopping.wait(self.timeout_sleep_s)
        if fault == "bad_json":
            return self._send_raw(handler, 200, b'{"id": "x", "choices": [', "application/json")
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        text = entry.reply if fault not in ("no_content", "cut_off") else None
        usage = {"prompt_tokens": prompt_words, "completion_tokens": len((text or "").split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        entry.usage = usage
        choices = (
            []
            if fault == "empty_choices"
            else [
                {
                    "index": 0,
                    "finish_reason": "length" if fault == "cut_off" else "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ]
        )
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{len(self.log)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
        }
        if fault != "no_usage":
            payload["usage"] = usage
        data = json.dumps(payload).encode()
        self._stopping.wait(max(0.0, entry.at + self.latency_s - time.monotonic()))
        return self._send_raw(handler, 200, data, "application/json")

    def _embeddings(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], entry: Logged) -> None:
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        data = []
        for i, text in enumerate(texts):
            digest = hashlib.sha256(str(text).encode()).digest()
            vector = [(digest[j % len(digest)] - 127.5) / 127.5 for j in range(self.embedding_dim)]
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(len(str(t).split()) for t in texts)
        entry.usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return self._send(
            handler, 200, {"object": "list", "data": data, "model": body.get("model"), "usage": entry.usage}
        )

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send_raw(handler, status, json.dumps(payload).encode(), "application/json", headers)

    @staticmethod
    def _send_raw(
        handler: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client gave up (an injected timeout): nothing to answer
            pass


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A started `ScriptedServer`, stopped at the end of the test."""
    server = ScriptedServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dead_url() -> str:
    """The base URL of a local port nobody listens on."""
    return f"http://127.0.0.1:{free_port()}/v1"
