"""Watching and ending child processes: wait with a deadline, kill whole trees, explain deaths.

Used by the worker and `call_candidate` (`run_child`, around each sandboxed evaluation and
each call into candidate code), and by the engine's side of its helper processes
(protocol.py: `kill_tree`). Everything here works from `/proc` and plain signals, so it is
the same on every Linux; the stronger guarantees (PID namespaces, a separate uid) are set
up in `sandbox.py` and only make the sweep here find less to do.
"""

from __future__ import annotations

import contextlib
import faulthandler
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


def describe_status(status: int | None) -> str:
    """'exited with code 3' / 'killed by signal SIGSEGV (segmentation fault: ...)' / 'vanished'
    (None: the child could not be collected)."""
    if status is None:
        return "vanished"
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


def proc_pids() -> list[int]:
    """Every pid /proc lists (as numbered by /proc's namespace)."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def proc_status(pid: int | str) -> dict[str, str]:
    """The fields of /proc/PID/status by name ({} if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return {}


def process_table() -> dict[int, Proc]:
    """Every process visible in /proc, keyed by pid (as numbered by /proc's namespace)."""
    table: dict[int, Proc] = {}
    for pid in proc_pids():
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue  # it exited while we looked
        fields = raw[raw.rfind(b")") + 2 :].split()
        # after "pid (comm) ": state ppid pgrp session ... starttime is field 22 overall
        table[pid] = Proc(pid, int(fields[1]), fields[0].decode(), int(fields[19]))
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
        return [int(x) for x in proc_status(proc_pid).get("NSpid", "").split()]
    except ValueError:
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
    for pid in proc_pids():
        ids = _nspids(pid)
        if len(ids) > level and ids[level] == local_pid:
            return pid
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
                if proc.ppid == me and (zombie := _local_pid(proc.pid, level)) is not None:
                    with contextlib.suppress(ChildProcessError):  # ours (or an orphan handed to us): reap it
                        os.waitpid(zombie, os.WNOHANG)
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


def reopen_stdio() -> None:
    """In a child after `sandbox.enter_child`: Python's streams on fds 0-2, line-buffered."""
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


# A reader gets each chunk read from its fd (b"" at end of file) and returns False to stop.
Reader = Callable[[bytes], bool]


@dataclass
class Finished:
    """What became of a child that `run_child` watched: why we stopped waiting, if we did
    ("timeout", or "result" or "output": that pipe got more than allowed), its wait status
    (None if it could not be collected) and what it wrote to its result pipe."""

    stopped: str | None
    status: int | None
    result: bytes


def run_child(
    body: Callable[[int, int | None], None],
    timeout_s: float,
    max_result_mb: int,
    failed: int,
    output: Reader | None = None,
) -> Finished:
    """Fork a child that runs `body(result_fd, output_fd)` and ends in os._exit (with `failed`
    if `body` returns or raises). `output_fd` is a pipe fed to `output`, if given, else None.
    Watch it until it exits or `timeout_s` passes, then SIGKILL it and its process group (it
    makes one with setsid) and reap it."""
    result = bytearray()

    def on_result(chunk: bytes) -> bool:
        result.extend(chunk)
        return len(result) <= max_result_mb * 2**20

    result_r, result_w = os.pipe()
    readers: dict[int, tuple[str, Reader]] = {result_r: ("result", on_result)}
    out_w = None
    if output is not None:
        out_r, out_w = os.pipe()
        readers[out_r] = ("output", output)
    flush_stdio()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child always ends in os._exit
        try:
            body(result_w, out_w)
        finally:
            os._exit(failed)
    os.close(result_w)
    if out_w is not None:
        os.close(out_w)
    try:
        stopped = _supervise(pid, time.monotonic() + timeout_s, readers)
    finally:
        status = _end_child(pid)
        for fd in readers:
            os.close(fd)
    return Finished(stopped, status, bytes(result))


def _supervise(pid: int, deadline: float, readers: dict[int, tuple[str, Reader]]) -> str | None:
    """Wait for child `pid` to exit (None) or `deadline` (time.monotonic) to pass ("timeout"),
    feeding `readers`; the name of a reader that refuses more data ends the wait too.

    Pipes are drained while waiting (so a child writing a large result never blocks) and once
    more after it exits. The child is not reaped here, so that its pid and process group
    cannot be reused before `_end_child` kills them.
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
            try:
                exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                exited = True
            if exited:  # read what is left (writers that survive are ignored)
                for fd in list(open_fds):
                    if refused := _read(fd, open_fds, drain=True):
                        return refused
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            watch = list(open_fds) + ([pidfd] if pidfd is not None else [])
            wait = remaining if pidfd is not None else min(remaining, 0.01)
            try:
                ready, _, _ = select.select(watch, [], [], wait)
            except InterruptedError:
                continue
            for fd in ready:
                if fd != pidfd and (refused := _read(fd, open_fds)):
                    return refused
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _end_child(pid: int) -> int | None:
    """SIGKILL a supervised child and its process group, then reap it (waiting up to 5 s);
    its wait status, or None if it could not be collected."""
    _kill_group(pid)
    stop = time.monotonic() + 5.0
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
