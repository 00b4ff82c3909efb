"""Run the candidate harness in a sealed process that sees nothing but its own file.

`start` runs this file as a fresh interpreter (`python -s -S sealed.py ...`, standard library
only, hash seed 0 so that a harness's sets and dicts iterate the same way every time): it
shares no memory with the evaluator, which holds the task data. Before running any
candidate code the new process

- reads the candidate and the protocol client, and imports the standard-library modules a
  harness may use (`MODULES`: the new root holds no Python library);
- enters new user, mount, PID, network and IPC namespaces;
- mounts a small tmpfs holding only `/work/harness.py` and chroots into it: no problem
  folder, no Python installation, no home, no run directory, no `/proc`, no network;
- forks the namespace's first process, which drops every capability, sets no_new_privs,
  clears the environment and runs the client, which imports the candidate. A chrooted
  process cannot make a new user namespace and, with no capabilities, cannot mount, so
  the candidate cannot undo any of this.

The process talks to the evaluator over its stdin and stdout only. `SealError` says why it
could not be sealed (the kernel forbids unprivileged user namespaces, say): the caller
must then refuse to run the candidate.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import select
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x20000, 0x8000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
CAPABILITY_VERSION_3 = 0x20080522
INSIDE_ID = 1000  # the candidate's uid and gid inside its namespace
ROOT = "/tmp"  # where the new root's tmpfs is mounted, in the process's own mount namespace
START_TIMEOUT_S = 10.0
# Imported before the root changes: all a harness may import.
MODULES = (
    "bisect collections copy dataclasses difflib enum fractions functools hashlib heapq importlib.util "
    "itertools json math operator random re statistics string textwrap time traceback typing unicodedata"
).split()


class SealError(Exception):
    """The sealed process could not be set up; the message says which step failed and why."""


@dataclass
class SealedChild:
    """The running process: write to `stdin`, read its lines from `stdout`."""

    proc: subprocess.Popen

    @property
    def stdin(self) -> int:
        return self.proc.stdin.fileno()  # type: ignore[union-attr]

    @property
    def stdout(self) -> int:
        return self.proc.stdout.fileno()  # type: ignore[union-attr]

    def close(self) -> None:
        """Kill the process and everything in its namespace, reap it, close the pipes."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass


def start(candidate: Path, client: Path) -> SealedChild:
    """Start the sealed process running `client` (which imports /work/harness.py, the candidate)."""
    err_r, err_w = os.pipe()  # the process closes it once sealed; anything written is why it failed
    proc = subprocess.Popen(
        [sys.executable, "-s", "-S", "-B", __file__, str(candidate), str(client), str(err_w)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        pass_fds=(err_w,),
        env={"PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"},
        start_new_session=True,
    )
    os.close(err_w)
    child = SealedChild(proc)
    error = _read_until_eof(err_r, time.monotonic() + START_TIMEOUT_S)
    if error is not None:
        child.close()
        raise SealError(error or f"the sealed process was not ready within {START_TIMEOUT_S:g} s")
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


# ---------------------------------------------------------------- in the sealed process

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl({option})")


def _seal(candidate: str, client: str, err_w: int) -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    text = Path(candidate).read_bytes()
    code = compile(Path(client).read_text(), "<client>", "exec")
    for name in MODULES:
        importlib.import_module(name)
    uid, gid = os.geteuid(), os.getegid()
    _check(
        _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC),
        "unshare (new user, mount, PID, network and IPC namespaces)",
    )
    _prctl(PR_SET_DUMPABLE, 1)  # else /proc/self/*_map belong to root (the sandbox made us non-dumpable)
    for name, line in (("setgroups", "deny"), ("uid_map", f"{INSIDE_ID} {uid} 1"), ("gid_map", f"{INSIDE_ID} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(line)
    _prctl(PR_SET_DUMPABLE, 0)
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making the mounts private")
    options = b"size=8m,nr_inodes=256,mode=0755"
    _check(_libc.mount(b"tmpfs", ROOT.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options), "mount tmpfs")
    os.mkdir(f"{ROOT}/work", 0o755)
    Path(f"{ROOT}/work/harness.py").write_bytes(text)
    os.chdir(ROOT)
    os.chroot(".")
    os.chdir("/work")
    os.environ.clear()
    init = os.fork()  # the first process of the new PID namespace runs the candidate
    if init == 0:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        header = struct.pack("Ii", CAPABILITY_VERSION_3, 0)
        _check(_libc.capset(header, bytes(24)), "capset (dropping every capability)")
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        os.close(err_w)  # sealed: tell the evaluator
        status = 0
        try:
            exec(code, {"__name__": "__client__"})
        except BaseException:  # the client reports what it can; the evaluator sees the pipe close
            status = 1
        os._exit(status)
    os.close(err_w)
    for fd in (0, 1):
        os.close(fd)
    _, status = os.waitpid(init, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


if __name__ == "__main__":
    try:
        _seal(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    except BaseException as exc:
        os.write(int(sys.argv[3]), (str(exc) or type(exc).__name__).encode()[:4000])
        os._exit(70)
