"""The engine's helper processes (evaluation workers, the Ray driver) and the JSON lines they talk in.

`Helper` is the engine's side of one: it starts it in a session of its own, writes requests
to its stdin, reads replies from its stdout, keeps the last lines of its stderr for error
messages, and stops it with everything below it. `Channel` is the helper's side. A message
is one JSON object on one line.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from . import processes
from .view import THREAD_VARS

log = logging.getLogger(__name__)

# How a helper starts: before anything else (imports take a second or more), it asks for a
# signal when its parent dies (the engine's process; under bubblewrap, bwrap's, which itself
# dies with the engine), and exits if the engine is already gone. Then it runs its module's
# main(); not with `-m`, so that Ray finds the driver's task function under its module's name.
BOOT = """import ctypes, importlib, os, select, sys
bwrap = "--bwrap" in sys.argv
ctypes.CDLL(None).prctl(1, 9 if bwrap else 15, 0, 0, 0)  # PR_SET_PDEATHSIG: SIGKILL / SIGTERM
stdout = select.poll()
stdout.register(1, 0)  # reports only an error: nobody reads our output any more
if stdout.poll(0) or (not bwrap and os.getppid() != int(sys.argv[sys.argv.index("--parent") + 1])):
    os._exit(1)  # the engine died before we could ask to die with it
sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))
"""


def boot_command(module: str, *args: str) -> list[str]:
    """The command line of a helper that runs `module`'s main(args) (--parent <engine pid> added)."""
    return [sys.executable, "-c", BOOT, module, *args, "--parent", str(os.getpid())]


def frame(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def write_message(fd: int, message: dict[str, Any]) -> None:
    """Write one message to `fd` whole (TypeError or ValueError, and nothing written, if it is not JSON)."""
    processes.write_all(fd, frame(message))


def parse_reply(line: bytes | str) -> dict[str, Any]:
    """One JSON object from a protocol line ({} if it is not one)."""
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def one_message(data: bytes) -> dict[str, Any] | None:
    """The one JSON object a child wrote to its result pipe, or None if there is not exactly one."""
    lines = data.splitlines()
    return (parse_reply(lines[0]) or None) if len(lines) == 1 else None


def helper_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with one BLAS/OpenMP thread (forking a threaded process can deadlock) and this
    very copy of evoengine first on PYTHONPATH (the helper must run the engine's code)."""
    env.update(dict.fromkeys(THREAD_VARS, "1"))
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


class Helper:
    """One helper process, as the engine sees it; `name` tags its lines in the log."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None
        self.stopped = False  # set as soon as we stop it, before its exit status arrives
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._stderr_task: asyncio.Task | None = None

    @property
    def pid(self) -> int | None:
        """Its pid while it runs and we have not begun to stop it."""
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None and not self.stopped else None

    async def spawn(self, command: list[str], env: dict[str, str], timeout_s: float, **options: Any) -> dict[str, Any]:
        """Start it; its first message ({} if it sent none within `timeout_s`)."""
        starting = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=env,
                limit=64 * 2**20,
                **options,
            )
        )
        try:  # cancelled half-way, asyncio would kill only the first process (bwrap's, say)
            self.proc = await asyncio.shield(starting)
        except asyncio.CancelledError:
            self.proc = await starting
            await self.stop(grace_s=0.0)
            raise
        self.stopped = False
        self.stderr_tail.clear()
        self._stderr_task = asyncio.ensure_future(self._read_stderr(self.proc.stderr))
        try:
            return await self.receive(timeout_s) or {}
        except asyncio.TimeoutError:
            self.stderr_tail.append(f"(no answer within {timeout_s:g} s)")
            return {}

    def send(self, message: dict[str, Any]) -> None:
        """Write one message to its stdin (nothing if it is gone: `receive` will tell)."""
        stdin = self.proc.stdin if self.proc is not None else None
        if stdin is not None and not stdin.is_closing():
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stdin.write(frame(message))

    async def receive(self, timeout_s: float | None = None) -> dict[str, Any] | None:
        """Its next message ({} for a line that is not one), None once its stdout is closed;
        asyncio.TimeoutError if none comes within `timeout_s`."""
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        return parse_reply(line) if line else None

    def last_words(self, lines: int) -> str:
        """The last `lines` lines it wrote to stderr."""
        return "\n".join(list(self.stderr_tail)[-lines:])

    def kill_now(self) -> None:
        """Freeze it, kill everything below it, then it (not waiting for its exit status)."""
        if self.proc is not None and self.proc.returncode is None:
            self.stopped = True
            processes.kill_tree(self.proc.pid)

    async def stop(self, grace_s: float, wait_s: float = 5.0) -> None:
        """Close its stdin, which asks it to finish (sweeping its own children), give it
        `grace_s`, then kill it and everything below it."""
        proc = self.proc
        if proc is None:
            return
        self.stopped = True
        if proc.returncode is None and proc.stdin is not None and grace_s > 0:
            proc.stdin.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), grace_s)
        if proc.returncode is None:
            processes.kill_tree(proc.pid)
        try:
            await asyncio.wait_for(proc.wait(), wait_s)
        except asyncio.TimeoutError:
            log.warning("%s: process %d did not die", self.name, proc.pid)
        if self._stderr_task is not None:  # let it read the last words (a traceback, say)
            try:
                await asyncio.wait_for(self._stderr_task, 1.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._stderr_task.cancel()

    async def _read_stderr(self, stream: asyncio.StreamReader | None) -> None:
        while stream is not None and (line := await stream.readline()):
            self.stderr_tail.append(line.decode("utf-8", "replace").rstrip())
            log.debug("%s: %s", self.name, self.stderr_tail[-1])


class Channel:
    """A helper's side: its log goes to stderr, tagged `name`; its messages go out on what was
    its stdout (`fd`), and fd 1 becomes stderr, so that stray prints cannot corrupt them."""

    def __init__(self, name: str) -> None:
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO, format=f"{name} %(process)d: %(levelname)s %(message)s"
        )
        self.fd = os.dup(1)
        os.dup2(2, 1)

    def send(self, message: dict[str, Any]) -> None:
        write_message(self.fd, message)
