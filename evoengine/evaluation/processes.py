"""Watching and ending child processes: wait with a deadline, kill whole trees, explain deaths.

Used by the worker (around each sandboxed evaluation), by `call_candidate` (around each
call into candidate code), and by the pool and the Ray backend (`stop_process`, the one way
they end the helper processes they start). Everything here works from `/proc` and plain signals, so it is
the same on every Linux; the stronger guarantees (PID namespaces, a separate uid) are set
up in `sandbox.py` and only make the sweep here find less to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import fcntl
import io
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_SIGNAL_HINTS = {
    signal.SIGSEGV: "segmentation fault: a crash in native code or a too-deep recursion",
    signal.SIGBUS: "bus error: a crash in native code",
    signal.SIGKILL: "out of memory, the CPU-time limit, or killed by another process",
    signal.SIGXCPU: "CPU-time limit",
    signal.SIGXFSZ: "wrote a file larger than the file-size limit",
    signal.SIGABRT: "aborted",
    signal.SIGFPE: "arithmetic error in native code",
}


def describe_status(status: int) -> str:
    """'exited with code 3' / 'killed by signal SIGSEGV (segmentation fault: ...)'."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = _SIGNAL_HINTS.get(sig)
        return f"killed by signal {name}" + (f" ({hint})" if hint else "")
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    return f"ended with wait status {status}"


@dataclass(frozen=True)
class Proc:
    """One line of the process table: enough to walk trees and to tell a reused pid apart."""

    pid: int
    ppid: int
    state: str
    start: int  # start time in clock ticks since boot; (pid, start) names a process uniquely


def process_table() -> dict[int, Proc]:
    """Every process visible in /proc, keyed by pid (as numbered by /proc's namespace)."""
    table: dict[int, Proc] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue  # it exited while we looked
        fields = raw[raw.rfind(b")") + 2 :].split()
        # after "pid (comm) ": state ppid pgrp session ... starttime is field 22 overall
        table[int(name)] = Proc(int(name), int(fields[1]), fields[0].decode(), int(fields[19]))
    return table


def descendants(root: int, table: dict[int, Proc]) -> list[Proc]:
    """All processes below `root` in `table`, parents before children."""
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child in children.get(pid, ()):
            found.append(child)
            frontier.append(child.pid)
    return found


def own_proc_pid() -> int:
    """This process's pid as /proc numbers it (differs from os.getpid() inside a PID namespace)."""
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return os.getpid()


def _nspids(proc_pid: int | str) -> list[int]:
    """The NSpid line of a process: its pid in /proc's namespace, then in each nested one."""
    try:
        with open(f"/proc/{proc_pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return [int(x) for x in line.split()[1:]]
    except (OSError, ValueError):
        return []
    return []


def _ns_level() -> int:
    """How many PID namespaces we sit below /proc's (0: /proc numbers pids as we do)."""
    if own_proc_pid() == os.getpid():
        return 0
    return max(0, len(_nspids("self")) - 1)


def _local_pid(proc_pid: int, level: int) -> int | None:
    """The pid to pass to kill()/waitpid() for a /proc pid, seen from our namespace."""
    if level == 0:
        return proc_pid
    ids = _nspids(proc_pid)
    return ids[level] if len(ids) > level else None


def local_pid(proc_pid: int) -> int | None:
    """The pid to signal for a process /proc lists as `proc_pid` (None if not in our view)."""
    return _local_pid(proc_pid, _ns_level())


def proc_pid(local_pid: int) -> int | None:
    """The /proc pid of a process we know by its pid in our namespace (None if gone)."""
    level = _ns_level()
    if level == 0:
        return local_pid
    for name in os.listdir("/proc"):
        if name.isdigit():
            ids = _nspids(name)
            if len(ids) > level and ids[level] == local_pid:
                return int(name)
    return None


def has_children() -> bool:
    """Whether this process has any child at all, alive or not (one cheap syscall, no reaping)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def snapshot_descendants() -> frozenset[tuple[int, int]]:
    """(pid, start) of every process currently below this one; `kill_descendants` spares them."""
    me = own_proc_pid()
    return frozenset((p.pid, p.start) for p in descendants(me, process_table()))


def kill_descendants(
    spare: Iterable[tuple[int, int]] = (), *, root: int | None = None, deadline_s: float = 5.0
) -> None:
    """SIGKILL every process below this one, or below `root` (a /proc pid), except `spare`,
    until none is left; reap the ones that are our own children.

    Processes that re-parented themselves (double fork, setsid) are still found because the
    worker and the sandboxed evaluator are child subreapers (or a PID namespace's init), so
    orphans land back under them. A fork bomb racing the sweep loses: a killed process cannot
    fork, and each round re-reads the table.
    """
    spare, me, level = frozenset(spare), own_proc_pid(), _ns_level()
    stop = time.monotonic() + deadline_s
    for _ in range(500):
        live = []
        for proc in descendants(me if root is None else root, process_table()):
            if (proc.pid, proc.start) in spare:
                continue
            if proc.state in ("Z", "X"):
                if proc.ppid == me:  # our zombie (or an orphan handed to us): reap it
                    _reap(_local_pid(proc.pid, level))
                continue
            live.append(_local_pid(proc.pid, level))
        if not live:
            return
        for pid in live:
            if pid is not None and pid > 1:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if time.monotonic() > stop:
            return
        time.sleep(0.001)


def kill_tree(pid: int) -> None:
    """Freeze process `pid`, SIGKILL everything below it and its process group, then it.

    Frozen first, so it cannot start anything new while its descendants are found in /proc.
    Not reaped: the caller waits for its own child."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return
    root = proc_pid(pid)
    if root is not None:
        kill_descendants(root=root, deadline_s=2.0)
    _kill_group(pid)


def _kill_group(pid: int) -> None:
    """SIGKILL process `pid` and its process group (each made one with setsid)."""
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(target, signal.SIGKILL)


async def stop_process(proc: asyncio.subprocess.Process, grace_s: float, wait_s: float = 5.0) -> bool:
    """End a helper process we started (a worker, the Ray driver): close its stdin, which asks
    it to finish, give it `grace_s`, then `kill_tree` it. True if it is gone after `wait_s`."""
    if proc.returncode is None and proc.stdin is not None and grace_s > 0:
        proc.stdin.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), grace_s)
    if proc.returncode is None:
        kill_tree(proc.pid)
    try:
        await asyncio.wait_for(proc.wait(), wait_s)
    except asyncio.TimeoutError:
        return False
    return True


def set_child_fds(out_fd: int, channel_fd: int, keep: int | None = None) -> None:
    """In a fresh child: 0 = /dev/null, 1 and 2 = `out_fd`, 3 = `channel_fd`, 4 = `keep` if
    given, nothing else open."""
    null = os.open(os.devnull, os.O_RDONLY)
    wanted = (null, out_fd, channel_fd) if keep is None else (null, out_fd, channel_fd, keep)
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in wanted]
    os.dup2(high[0], 0)
    os.dup2(high[1], 1)
    os.dup2(high[1], 2)
    os.dup2(high[2], 3)
    if keep is not None:
        os.dup2(high[3], 4)
    os.closerange(4 if keep is None else 5, 1 << 20)


def reopen_stdio() -> None:
    """In a child after `set_child_fds`: Python's streams on fds 0-2, line-buffered."""
    sys.stdin = open(os.devnull)
    sys.stdout, sys.stderr = (
        io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), line_buffering=True, errors="backslashreplace")
        for fd in (1, 2)
    )
    if faulthandler.is_enabled():  # it may hold a descriptor number that is now the channel
        faulthandler.enable(file=sys.stderr)


def flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a replaced or closed stream must not stop us
            stream.flush()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _reap(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def reap_all_children(wait_s: float = 0.0) -> None:
    """Collect exited children (only for processes that own all their children: the worker).

    With `wait_s`, keep collecting until there are no children left at all or time is up
    (after a kill(-1): every process is dying, and we wait for the last one).
    """
    stop = time.monotonic() + wait_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= stop:
                return
            time.sleep(0.0005)


@dataclass
class Ending:
    """How watching a child ended: it exited, or we stopped waiting ("timeout", or the name
    of a reader that refused more data). Either way it is not reaped yet: see `end_child`."""

    exited: bool
    stopped: str | None = None


# A reader gets each chunk read from its fd (b"" at end of file) and returns False to stop.
Reader = Callable[[bytes], bool]


def supervise(pid: int, deadline: float, readers: dict[int, tuple[str, Reader]]) -> Ending:
    """Wait for child `pid` to exit or `deadline` (time.monotonic) to pass, feeding `readers`.

    Pipes are drained while waiting (so a child writing a large result never blocks) and once
    more after it exits. The child is not reaped (so its pid and process group cannot be
    reused while the caller kills them) and not killed: call `end_child` next.
    """
    for fd in readers:
        os.set_blocking(fd, False)
    open_fds = dict(readers)
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            if _exited(pid):
                return Ending(True, _drain(open_fds))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Ending(False, "timeout")
            watch = list(open_fds) + ([pidfd] if pidfd is not None else [])
            wait = remaining if pidfd is not None else min(remaining, 0.01)
            try:
                ready, _, _ = select.select(watch, [], [], wait)
            except InterruptedError:
                continue
            for fd in ready:
                if fd != pidfd and (refused := _read(fd, open_fds)):
                    return Ending(False, refused)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def end_child(pid: int) -> int | None:
    """SIGKILL a child we supervised and its process group (it made one with setsid), then
    reap it. Returns its wait status (None if it could not be collected)."""
    _kill_group(pid)
    return reap(pid)


def _exited(pid: int) -> bool:
    """Whether child `pid` has ended, without reaping it."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _read(fd: int, open_fds: dict[int, tuple[str, Reader]], drain: bool = False) -> str | None:
    """Feed what `fd` holds to its reader (with `drain`, until nothing is left without
    blocking); the reader's name if it refused more data."""
    name, reader = open_fds[fd]
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return None
        if not chunk:
            del open_fds[fd]
            reader(b"")
            return None
        if not reader(chunk):
            return name
        if not drain:
            return None


def _drain(open_fds: dict[int, tuple[str, Reader]]) -> str | None:
    """Read what is left in every pipe without blocking (writers that survive are ignored)."""
    for fd in list(open_fds):
        if refused := _read(fd, open_fds, drain=True):
            return refused
    return None


def reap(pid: int, timeout_s: float = 5.0) -> int | None:
    """Wait (briefly) for a child that has been killed; returns its status if collected."""
    stop = time.monotonic() + timeout_s
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return status
        if time.monotonic() > stop:
            return None
        time.sleep(0.001)
