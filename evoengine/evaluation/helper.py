"""`Helper`: the engine's side of one helper process (an evaluation worker, the Ray driver).

It starts the helper in a session of its own, writes requests to its stdin, reads replies
from its stdout, keeps the last lines of its stderr for error messages, and stops it with
everything below it. The messages are protocol.py's.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

from . import processes
from .protocol import frame, parse_reply

log = logging.getLogger(__name__)


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
        await self.launch(command, env, **options)
        return await self.first_message(timeout_s)

    async def launch(self, command: list[str], env: dict[str, str], **options: Any) -> None:
        """Start it (`first_message` waits for it to say it is up)."""
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

    async def first_message(self, timeout_s: float) -> dict[str, Any]:
        """Its next message ({} if none came within `timeout_s`, or it ended)."""
        try:
            return await self.receive(timeout_s) or {}
        except asyncio.TimeoutError:
            self.stderr_tail.append(f"(no answer within {timeout_s:g} s)")
            return {}

    def take_over(self, other: Helper) -> None:
        """Become the handle of `other`'s process (launched before this handle existed)."""
        self.proc, self.stopped, self.stderr_tail = other.proc, other.stopped, other.stderr_tail
        self._stderr_task, other.proc, other._stderr_task = other._stderr_task, None, None

    def send(self, message: Any) -> None:
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
