"""The read-only local viewer: the report page, refreshed while a run is going.

`serve(run_dir)` blocks until Ctrl-C; `start_viewer(run_dir)` runs the same server in a
background thread and returns its URL (for tests and notebooks). Routes:

    GET /                      the report page (its script polls the summary)
    GET /api/summary?since=V   the run summary, or {"unchanged": true} if still at version V
    GET /api/details?after=T   proposals finished after T in full, as the page's gzip chunks
    GET /api/candidate/<id>    one proposal in full (text, feedback, reason, model calls)

Each request opens the store read-only (`mode=ro`) and reads inside one short read
transaction, so the run's single writer is never blocked (WAL mode). It binds 127.0.0.1
unless told otherwise, and on loopback it answers only requests addressed to a loopback
name (a page elsewhere cannot reach it by DNS rebinding).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..errors import EvoError, StoreError
from ..store import RunReader
from .data import detail_chunks, run_summary
from .html import content_security_policy, render_page, script_json

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, run_dir: Path, host: str, port: int):
        self.run_dir = Path(run_dir)
        self.host = host
        RunReader.open(self.run_dir).close()  # fail now, with the store's message
        try:
            super().__init__((host, port), ViewerHandler)
        except OSError as exc:
            raise EvoError(
                f"cannot serve on {host}:{port}: {exc.strerror or exc}. Another program may hold the port: "
                "choose another with --port (0 picks a free one)"
            ) from exc

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"


class ViewerHandler(BaseHTTPRequestHandler):
    server: ViewerServer
    server_version = "evoengine-viewer"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
        for key, value in {**headers, "Referrer-Policy": "no-referrer", **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: object, status: int = HTTPStatus.OK) -> None:
        self._send(status, script_json(data).encode(), "application/json; charset=utf-8")

    def _host_allowed(self) -> bool:
        if self.server.host not in LOOPBACK:
            return True  # the user chose to expose it
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]", 1)[0]
        return name in LOOPBACK

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_allowed():
            self._json({"error": "this viewer only answers requests to 127.0.0.1/localhost"}, HTTPStatus.FORBIDDEN)
            return
        url = urlsplit(self.path)
        try:
            if url.path in ("/", "/index.html"):
                self._page()
            elif url.path == "/api/summary":
                self._summary(parse_qs(url.query).get("since", [None])[0])
            elif url.path == "/api/details":
                self._details(parse_qs(url.query).get("after", [None])[0])
            elif m := re.fullmatch(r"/api/candidate/(\d+)", url.path):
                self._candidate(int(m.group(1)))
            elif url.path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            else:
                self._json({"error": f"no such page: {url.path}"}, HTTPStatus.NOT_FOUND)
        except StoreError as exc:
            self._json({"error": str(exc)}, HTTPStatus.NOT_FOUND)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _page(self) -> None:
        with RunReader.open(self.server.run_dir) as store:
            summary = run_summary(store, self.server.run_dir, live=True)
        body = render_page(summary, summary["run"]["name"], live=True).encode("utf-8")
        csp = {"Content-Security-Policy": content_security_policy(live=True)}
        self._send(HTTPStatus.OK, body, "text/html; charset=utf-8", csp)

    def _summary(self, since: str | None) -> None:
        with RunReader.open(self.server.run_dir) as store:
            if since is not None:
                with store.snapshot():
                    current = store.version()
                if current == since:
                    self._json({"unchanged": True, "version": current})
                    return
            summary = run_summary(store, self.server.run_dir, live=True)
        self._json(summary)

    def _details(self, after: str | None) -> None:
        try:
            since = float(after) if after else None
        except ValueError:
            since = None
        with RunReader.open(self.server.run_dir) as store:
            self._json(detail_chunks(store, finished_after=since))

    def _candidate(self, candidate_id: int) -> None:
        with RunReader.open(self.server.run_dir) as store:
            detail = store.proposal(candidate_id)
            if detail is None:
                raise StoreError(f"no proposal with id {candidate_id} in {store.path}")
            detail["calls"] = store.calls([candidate_id]).get(candidate_id, [])
        self._json(detail)


@dataclass
class Viewer:
    """A viewer running in a background thread; `close()` stops it."""

    server: ViewerServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Viewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_viewer(run_dir: str | Path, host: str = "127.0.0.1", port: int = 0) -> Viewer:
    """Start the viewer in a daemon thread (port 0: any free port) and return it."""
    server = ViewerServer(Path(run_dir), host, port)
    thread = threading.Thread(target=server.serve_forever, name="evoengine-viewer", daemon=True)
    thread.start()
    log.info("viewer for %s at %s", run_dir, server.url)
    return Viewer(server, thread)


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8765, announce: bool = False) -> None:
    """Serve the live viewer of `run_dir` until Ctrl-C; `announce` prints its URL as JSON first."""
    server = ViewerServer(Path(run_dir), host, port)
    if host not in LOOPBACK:
        log.warning(
            "the viewer is reachable from other machines at %s: it shows all code and data of the run", server.url
        )
    log.info("viewer for %s at %s (Ctrl-C to stop)", run_dir, server.url)
    if announce:
        print(json.dumps({"url": server.url}), flush=True)  # noqa: T201 (a command's output)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    """`python -m evoengine.report.server RUN_DIR [--host H] [--port P]`: prints the URL, serves."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    serve(args.run_dir, args.host, args.port, announce=True)


if __name__ == "__main__":
    main()
