"""The sandbox: the limits a candidate runs under and the kernel mechanisms that enforce them.

`Limits` is what a run asks for (from the problem and the `evaluation` config section).
`Isolation` is what this machine can give, found once per worker by `namespaces.probe`
(before the worker enters them) and `probe_uid` (after):

- Namespaces (root, or unprivileged user namespaces; or bubblewrap, which the pool starts
  the worker under where it works): each worker loop is the init of its own PID namespace
  and, after every evaluation, ends every other process in it with one kill(-1) (worker.py);
  with `network: false`, a network namespace with no interface up (not even 127.0.0.1);
  a mount namespace with the filesystem view (view.py, mounts.py) and, per evaluation, a
  private tmpfs of `disk_mb` for its folder, /tmp, /dev/shm and /var/tmp.
- Separate uid (root only): the evaluator drops to a uid of its own per slot, so
  RLIMIT_NPROC binds (it never binds for uid 0), nothing of the engine's can be written and
  the worker cannot be signalled. Only where there is no view and that uid cannot read the
  Python installation (a pyenv under /root, say) does it keep CAP_DAC_READ_SEARCH.
- Always: its own session, rlimits, no capabilities, no_new_privs (setuid binaries do not
  raise privileges), non-dumpable (nothing it starts can ptrace it or write its memory).
  Without a PID namespace the worker is a child subreaper that sweeps /proc for every
  process below it; without a network namespace a seccomp filter (seccomp.py) enforces
  `network: false`.

`Isolation.missing` names what is off (the pool logs it at start-up); docs/reliability.md
says which of these apply where and what they do not cover.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import json
import logging
import os
import resource
import signal
import stat
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import mounts, seccomp
from .mounts import check_syscall, libc
from .processes import proc_pids, proc_status

log = logging.getLogger(__name__)

# auto: bubblewrap where it works, else namespaces the worker makes itself (unshare);
# basic: none of them (process groups, rlimits, uid; for tests and odd kernels).
ISOLATION_LEVELS = ("auto", "unshare", "basic")

# Sandbox uids sit above systemd's container range (0x6FFFFFFF) and below 2**31.
SANDBOX_UID_BASE = 1_900_000_000

CLONE_NEWNS = mounts.CLONE_NEWNS
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
BUBBLEWRAP = "bubblewrap"
MOUNT_NAMESPACE = "mount namespace"


@dataclass(frozen=True)
class Limits:
    """What one candidate evaluation may use, and how it is isolated (ISOLATION_LEVELS).

    `disk_mb` bounds everything an evaluation writes (its folder, /tmp, /dev/shm and /var/tmp
    together) where there is a filesystem view; `env` names environment variables passed
    through to evaluations besides the allow-list of view.py; `reads` names paths outside the
    problem's folder that the view shows read-only."""

    timeout_s: float = 60.0
    memory_mb: int = 2048
    max_processes: int = 64
    max_output_kb: int = 256
    max_file_mb: int = 64
    network: bool = False
    isolation: str = "auto"
    disk_mb: int = 512
    env: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATION_LEVELS:
            raise ValueError(f"isolation must be one of {ISOLATION_LEVELS} (got {self.isolation!r})")
        object.__setattr__(self, "env", tuple(self.env))
        object.__setattr__(self, "reads", tuple(self.reads))

    @classmethod
    def from_config(cls, problem: Any, evaluation: Any) -> Limits:
        """Config values where set, else the problem's own `timeout_s` / `memory_mb`."""
        return cls(
            timeout_s=float(evaluation.timeout_s or problem.timeout_s),
            memory_mb=int(evaluation.memory_mb or problem.memory_mb),
            max_processes=int(evaluation.max_processes),
            max_output_kb=int(evaluation.max_output_kb),
            max_file_mb=int(evaluation.max_file_mb),
            network=bool(evaluation.network),
            disk_mb=int(evaluation.disk_mb),
            env=tuple(problem.env),
            reads=tuple(str(Path(problem.root) / path) for path in problem.reads),
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Limits:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Isolation:
    """The mechanisms one worker found available; decided once by the probes."""

    pid_namespace: bool = False
    user_namespace: bool = False
    net_namespace: bool = False
    view: str = ""  # how the filesystem view was built: BUBBLEWRAP, MOUNT_NAMESPACE, or "" (none)
    uid: int | None = None  # the uid the evaluator drops to (root only)
    read_all_files: bool = False  # kept CAP_DAC_READ_SEARCH because `uid` could not read Python
    seccomp_network: bool = False  # network refused by seccomp (no network namespace)
    nproc_base: int = 0  # processes the evaluator's uid already had (counted by RLIMIT_NPROC)
    vm_base_mb: int = 0  # address space the warm worker already maps

    @property
    def clone_flags(self) -> int:
        flags = CLONE_NEWPID if self.pid_namespace else 0
        flags |= CLONE_NEWUSER if self.user_namespace else 0
        flags |= CLONE_NEWNET if self.net_namespace else 0
        flags |= CLONE_NEWNS if self.view == MOUNT_NAMESPACE else 0
        return flags

    def describe(self) -> str:
        user = " (user namespace)" if self.user_namespace else ""
        parts = [f"PID namespace{user}" if self.pid_namespace else "process group + subreaper sweep"]
        if self.view:
            parts.append(f"filesystem view and private /tmp with a quota ({self.view})")
        if self.net_namespace:
            parts.append("no network (network namespace)")
        elif self.seccomp_network:
            parts.append("no network (seccomp)")
        read = " + CAP_DAC_READ_SEARCH" if self.read_all_files else ""
        parts.append(f"uid {self.uid}{read}" if self.uid is not None else f"same uid as the engine ({os.getuid()})")
        return ", ".join(parts)

    def missing(self, network: bool) -> list[str]:
        """The protections that are off here, each with what that lets a candidate do."""
        off = []
        if not self.view:
            off.append(
                "filesystem view (candidates can read what the engine's user can, run directories "
                "included, and write to /tmp, /dev/shm and /var/tmp without a disk quota)"
            )
        if not self.pid_namespace:
            off.append("PID namespace (candidates see every process and its command line)")
        if not network and not self.net_namespace and not self.seccomp_network:
            off.append("network block (candidates can connect anywhere)")
        if self.read_all_files:
            off.append("dropping CAP_DAC_READ_SEARCH (candidates may read any file)")
        if self.uid is None and not self.user_namespace and os.geteuid() == 0:
            off.append("separate uid (candidates run as root, without capabilities)")
        return off


def sandbox_uid(slot: int, pool_pid: int) -> int:
    """A uid of its own for each slot of each pool, so RLIMIT_NPROC budgets are not shared."""
    return SANDBOX_UID_BASE + (pool_pid % 1_000_000) * 100 + slot % 100


# ---------------------------------------------------------------------------- probing


def probe_uid(isolation: Isolation, uid: int, must_read: list[Path]) -> Isolation:
    """As root (not in a user namespace): whether evaluators can drop to `uid` and still read
    `must_read` (the Python installation, the problem); without a filesystem view, with
    CAP_DAC_READ_SEARCH if need be."""
    drop_uid = read_all = False
    if os.geteuid() == 0 and not isolation.user_namespace:
        if in_child(lambda: _check_reads_as(uid, must_read, keep_read=False)):
            drop_uid = True
        elif not isolation.view and in_child(lambda: _check_reads_as(uid, must_read, keep_read=True)):
            drop_uid = read_all = True
            log.info(
                "uid %d cannot read the Python installation or the problem; keeping "
                "CAP_DAC_READ_SEARCH (it may read any file, write none it does not own)",
                uid,
            )
        else:
            log.warning("cannot drop to a separate uid; candidates run as root without capabilities")
    return dataclasses.replace(
        isolation,
        uid=uid if drop_uid else None,
        read_all_files=read_all,
        nproc_base=0 if drop_uid else _count_tasks_of(os.getuid()) + 1,
        vm_base_mb=_vm_size_mb(),
    )


def in_child(check: Any) -> bool:
    """Run `check()` in a forked child; True if it returned without raising."""
    pid = os.fork()
    if pid == 0:
        try:
            check()
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _check_reads_as(uid: int, paths: list[Path], keep_read: bool) -> None:
    drop_privileges(uid, keep_read=keep_read)
    for path in paths:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(mode):
            os.listdir(path)
        else:
            with open(path, "rb"):
                pass


def _count_tasks_of(uid: int) -> int:
    """Threads+processes of `uid` now (RLIMIT_NPROC counts them all)."""
    total = 0
    for fields in map(proc_status, proc_pids()):
        if int(fields.get("Uid", "-1 ").split()[0]) == uid:
            total += int(fields.get("Threads", "1").strip())
    return total


def _vm_size_mb() -> int:
    return int(proc_status("self").get("VmSize", "0 kB").split()[0]) // 1024


# ---------------------------------------------------------------------------- confining


def prctl(option: int, arg: int = 0, arg3: int = 0) -> None:
    check_syscall(libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), 0, 0), f"prctl({option})")


def die_with_parent(parent: int, code: int) -> None:
    """SIGKILL on the parent's death; exit with `code` now if `parent` is already gone."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(code)


def enter_child(parent: int, code: int, out_fd: int, channel_fd: int, keep: int | None = None) -> None:
    """The start of a forked evaluator or candidate call: a session of its own, default signal
    handling, death with `parent` (`die_with_parent`), and no descriptor open but 0 = /dev/null,
    1 and 2 = `out_fd`, 3 = `channel_fd` and 4 = `keep`, if given."""
    os.setsid()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    die_with_parent(parent, code)
    wanted = [os.open(os.devnull, os.O_RDONLY), out_fd, out_fd, channel_fd, *([] if keep is None else [keep])]
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in wanted]  # out of the way of 0-4 first
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(len(high), 1 << 20)


def set_limits(limits: Limits, isolation: Isolation) -> None:
    """rlimits for the evaluator and everything it starts (each process gets its own copy)."""
    mb = 1024 * 1024
    cpu = int(limits.timeout_s) + 2  # the wall-clock timeout always fires first
    plan = {
        resource.RLIMIT_AS: (isolation.vm_base_mb + limits.memory_mb) * mb,
        resource.RLIMIT_CPU: cpu,
        resource.RLIMIT_FSIZE: limits.max_file_mb * mb,
        resource.RLIMIT_NPROC: isolation.nproc_base + limits.max_processes,
        resource.RLIMIT_CORE: 0,
    }
    for which, value in plan.items():
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def drop_privileges(uid: int, keep_read: bool) -> None:
    """Become `uid`/`uid` with no groups; optionally keep only CAP_DAC_READ_SEARCH."""
    if keep_read:
        prctl(PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if keep_read:
        _set_capabilities(1 << CAP_DAC_READ_SEARCH)
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH)  # survive exec too


def _set_capabilities(mask: int) -> None:
    header = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    data = struct.pack("6I", mask, mask, mask, 0, 0, 0)  # effective, permitted, inheritable x2
    hbuf, dbuf = ctypes.create_string_buffer(header), ctypes.create_string_buffer(data)
    check_syscall(libc.capset(hbuf, dbuf), "capset")


def confine(limits: Limits, isolation: Isolation) -> None:
    """Everything the evaluator process does to itself before running trusted+untrusted code."""
    set_limits(limits, isolation)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if isolation.uid is not None:
        drop_privileges(isolation.uid, keep_read=isolation.read_all_files)
    else:  # every capability goes (inside a user namespace we hold all of them over it)
        _set_capabilities(0)
    if isolation.seccomp_network:
        seccomp.block_network()
    prctl(PR_SET_DUMPABLE, 0)
