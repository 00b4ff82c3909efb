"""Run the candidate harness in a sealed child that sees nothing but its own file.

The evaluator holds the task data (the town register, the questions, their answers) in its
memory once it has started the child, so the child is forked *before* that data is loaded
(`start` refuses if it already is) and then cut off from everything else:

- new user, mount, PID, network and IPC namespaces;
- a new root on a small tmpfs holding only `/work/harness.py` (the candidate): no problem
  folder, no Python installation, no home, no run directory, no `/proc`, no network;
- the candidate runs in the namespace's first process, with no capabilities, no
  environment variables and no_new_privs, so it cannot undo any of this (a chrooted
  process cannot make a new user namespace, and with no capabilities it cannot mount).

Because the new root holds no Python library, the standard-library modules a harness may
use (`MODULES`) are imported before the root changes. The child talks to the evaluator
over its stdin and stdout only. `SealError` says why a child could not be sealed (the
kernel forbids unprivileged user namespaces, say); the caller must then refuse to run it.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from evoengine.evaluation.sandbox import (
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    drop_all_capabilities,
    prctl,
)

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x20000, 0x8000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
INSIDE_ID = 1000  # the candidate's uid and gid inside its namespace
ROOT = "/tmp"  # where the new root's tmpfs is mounted, in the child's own mount namespace
START_TIMEOUT_S = 10.0
# Imported before the root changes: all a harness may import.
MODULES = (
    "bisect collections copy importlib.util dataclasses difflib enum fractions functools hashlib heapq itertools json math "
    "operator random re statistics string textwrap time traceback typing unicodedata"
).split()

_libc = ctypes.CDLL(None, use_errno=True)


class SealError(Exception):
    """The sealed child could not be set up; the message says which step failed and why."""


@dataclass
class SealedChild:
    """The running child: write to `stdin`, read its lines from `stdout`."""

    pid: int
    stdin: int
    stdout: int

    def close(self) -> None:
        """Kill the child and everything in its namespace, reap it, close the pipes."""
        for fd in (self.stdin, self.stdout):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def make_undumpable() -> None:
    """No process of this uid may ptrace this one or read its memory (evoengine's sandbox does
    this for its evaluators too; done here so the problem does not depend on it)."""
    prctl(PR_SET_DUMPABLE, 0)


def start(candidate: Path, runner: str, secret_modules: tuple[str, ...]) -> SealedChild:
    """Fork the sealed child; in it, `exec(runner)` with the candidate at /work/harness.py.

    Raises SealError if any of `secret_modules` is loaded in this process (the child would
    get a copy of it) or if the child could not be sealed.
    """
    loaded = [name for name in secret_modules if name in sys.modules]
    if loaded:
        raise SealError(
            f"the task data ({', '.join(loaded)}) is already loaded in this process, so a child forked "
            "from it would hold a copy; evaluate each candidate in a fresh process (as evoengine's "
            "evaluation workers do)"
        )
    text = candidate.read_bytes()
    in_r, in_w = os.pipe()  # the child's stdin
    out_r, out_w = os.pipe()  # the child's stdout
    err_r, err_w = os.pipe()  # the child closes it once sealed; anything written is the reason it failed
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child always ends in os._exit
        try:
            os.close(in_w)
            os.close(out_r)
            os.close(err_r)
            _seal_and_run(text, runner, in_r, out_w, err_w)
        except BaseException as exc:
            try:
                os.write(err_w, (str(exc) or type(exc).__name__).encode()[:4000])
            except BaseException:
                pass
        finally:
            os._exit(70)
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    child = SealedChild(pid, in_w, out_r)
    error = _read_until_eof(err_r, time.monotonic() + START_TIMEOUT_S)
    if error is not None:
        child.close()
        raise SealError(error or f"the sealed child was not ready within {START_TIMEOUT_S:g} s")
    return child


def _read_until_eof(fd: int, deadline: float) -> str | None:
    """None at EOF with nothing written; else what was written ("" on a timeout)."""
    data = b""
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return ""
            chunk = os.read(fd, 4096)
            if not chunk:
                return data.decode(errors="replace") if data else None
            data += chunk
    finally:
        os.close(fd)


# ---------------------------------------------------------------- in the child


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _seal_and_run(text: bytes, runner: str, stdin: int, stdout: int, err_w: int) -> None:  # pragma: no cover
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    os.dup2(null, 2)
    sys.dont_write_bytecode = True
    for name in MODULES:
        importlib.import_module(name)
    uid, gid = os.geteuid(), os.getegid()
    _check(
        _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC),
        "unshare (new user, mount, PID, network and IPC namespaces)",
    )
    prctl(PR_SET_DUMPABLE, 1)  # else /proc/self/*_map belong to root; only for these writes
    for name, line in (("setgroups", "deny"), ("uid_map", f"{INSIDE_ID} {uid} 1"), ("gid_map", f"{INSIDE_ID} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(line)
    prctl(PR_SET_DUMPABLE, 0)  # this process holds a copy of the evaluator's memory
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making the mounts private")
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    _check(_libc.mount(b"tmpfs", ROOT.encode(), b"tmpfs", flags, b"size=8m,nr_inodes=256,mode=0755"), "mount tmpfs")
    os.mkdir(f"{ROOT}/work", 0o755)
    with open(f"{ROOT}/work/harness.py", "wb") as f:
        f.write(text)
    os.chdir(ROOT)
    os.chroot(".")
    os.chdir("/work")
    os.environ.clear()
    init = os.fork()  # the first process of the new PID namespace runs the candidate
    if init == 0:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        drop_all_capabilities()
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        os.close(err_w)  # sealed: tell the evaluator
        os.closerange(3, 1 << 16)
        code = 0
        try:
            exec(compile(runner, "<runner>", "exec"), {"__name__": "__runner__"})
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            code = 1
        finally:
            os._exit(code & 0xFF)
    os.close(err_w)
    for fd in (0, 1, 2):
        os.close(fd)
    _, status = os.waitpid(init, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
