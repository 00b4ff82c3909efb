"""The sandbox: the limits a candidate runs under and the kernel mechanisms that enforce them.

`Limits` is what a run asks for (from the problem and the `evaluation` config section).
`Isolation` is what this machine can give, found once per worker by `probe`:

- PID namespace (root, or an unprivileged user namespace): each worker loop runs as the
  init of its own PID namespace. After every evaluation it sends one kill(-1), which reaches
  every other process in the namespace however it re-parented itself, and nothing outside;
  if the worker dies, the kernel kills the whole namespace. With `network: false` the same
  unshare makes a network namespace with no interface up: nothing can connect anywhere,
  not even to 127.0.0.1.
- Separate uid (root only): the evaluator drops to a uid of its own per slot, so
  RLIMIT_NPROC binds (it never binds for uid 0), files the run owns cannot be written, and
  the worker cannot be signalled. If that uid could not read the Python installation or the
  problem folder (a venv under /root, say), it keeps only CAP_DAC_READ_SEARCH: it may read
  any file but still write none that it does not own.
- Always: its own session, rlimits (address space, CPU, file size, processes, no core
  files), no_new_privs (setuid binaries do not raise privileges), non-dumpable (nothing it
  starts can ptrace it or write its memory). Without a PID namespace the worker is a child
  subreaper and sweeps /proc for every process below it. Without a network namespace,
  `network: false` is enforced by a seccomp filter refusing AF_INET/AF_INET6 sockets
  (x86-64 and aarch64).

docs/reliability.md lists which of these apply where and what they do not cover.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import platform
import resource
import stat
import struct
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ISOLATION_LEVELS = ("auto", "basic")

# One BLAS/OpenMP thread in workers: forking a process that has threads can deadlock.
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "BLIS_NUM_THREADS",
)

# Sandbox uids sit above systemd's container range (0x6FFFFFFF) and below 2**31.
SANDBOX_UID_BASE = 1_900_000_000

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Limits:
    """What one candidate evaluation may use. `isolation="basic"` skips namespaces (for tests)."""

    timeout_s: float = 60.0
    memory_mb: int = 2048
    max_processes: int = 64
    max_output_kb: int = 256
    max_file_mb: int = 64
    network: bool = False
    isolation: str = "auto"

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATION_LEVELS:
            raise ValueError(f"isolation must be one of {ISOLATION_LEVELS} (got {self.isolation!r})")

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
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Limits:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Isolation:
    """The mechanisms one worker found available; decided once by `probe`."""

    pid_namespace: bool = False
    user_namespace: bool = False
    net_namespace: bool = False
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
        return flags

    def describe(self) -> str:
        parts = []
        if self.pid_namespace:
            parts.append("PID namespace" + (" (user namespace)" if self.user_namespace else ""))
        else:
            parts.append("process group + subreaper sweep")
        if self.net_namespace:
            parts.append("no network (network namespace)")
        elif self.seccomp_network:
            parts.append("no network (seccomp)")
        if self.uid is not None:
            parts.append(f"uid {self.uid}" + (" + CAP_DAC_READ_SEARCH" if self.read_all_files else ""))
        else:
            parts.append(f"same uid as the engine ({os.getuid()})")
        return ", ".join(parts)


def sandbox_uid(slot: int, pool_pid: int) -> int:
    """A uid of its own for each slot of each pool, so RLIMIT_NPROC budgets are not shared."""
    return SANDBOX_UID_BASE + (pool_pid % 1_000_000) * 100 + slot % 100


# ---------------------------------------------------------------------------- probing


def probe(limits: Limits, uid: int, must_read: list[Path]) -> Isolation:
    """Find the strongest isolation this process can set up for its children (forks twice)."""
    root = os.geteuid() == 0
    flags = 0
    if limits.isolation == "auto":
        flags = CLONE_NEWPID | (0 if limits.network else CLONE_NEWNET)
        if not root:
            flags |= CLONE_NEWUSER
        if not _in_child(lambda: _unshare(flags)):
            log.info("no PID namespace available here; using process groups and a /proc sweep")
            flags = 0
    drop_uid = read_all = False
    if root:
        if _in_child(lambda: _check_reads_as(uid, must_read, keep_read=False)):
            drop_uid = True
        elif _in_child(lambda: _check_reads_as(uid, must_read, keep_read=True)):
            drop_uid = read_all = True
            log.info(
                "uid %d cannot read the Python installation or the problem; keeping "
                "CAP_DAC_READ_SEARCH (it may read any file, write none it does not own)",
                uid,
            )
        else:
            log.warning("cannot drop to a separate uid; candidates run as root")
    seccomp = not limits.network and not flags & CLONE_NEWNET and _seccomp_program() is not None
    return Isolation(
        pid_namespace=bool(flags & CLONE_NEWPID),
        user_namespace=bool(flags & CLONE_NEWUSER),
        net_namespace=bool(flags & CLONE_NEWNET),
        uid=uid if drop_uid else None,
        read_all_files=read_all,
        seccomp_network=seccomp,
        nproc_base=0 if drop_uid else _count_tasks_of(os.getuid()),
        vm_base_mb=_vm_size_mb(),
    )


def _in_child(check: Any) -> bool:
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
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 ").split()[0]) == uid:
            total += int(fields.get("Threads", "1").strip())
    return total


def _vm_size_mb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) // 1024
    return 0


# ---------------------------------------------------------------------------- confining


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option: int, arg: int = 0, arg3: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(arg3), 0, 0), f"prctl({option})")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def enter_namespaces(isolation: Isolation) -> None:
    """New PID (and network, user) namespaces for this process's next child.

    Raises OSError if unshare fails (then nothing changed). Inside a new user namespace our
    own uid is mapped to itself so files and getuid() look the same; if that mapping cannot
    be written we carry on unmapped (uid shows as 65534 inside, file access is unchanged).
    Must run while the process is still dumpable (else /proc/self/uid_map is root's).
    """
    uid, gid = os.getuid(), os.getgid()
    _unshare(isolation.clone_flags)
    if isolation.user_namespace:
        try:
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        except OSError as exc:
            log.warning("could not map uid %d into the user namespace: %s", uid, exc)


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


def drop_all_capabilities() -> None:
    """Inside a user namespace we hold every capability over it; give them up."""
    _set_capabilities(0)


def _set_capabilities(mask: int) -> None:
    header = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    data = struct.pack("6I", mask, mask, mask, 0, 0, 0)  # effective, permitted, inheritable x2
    hbuf, dbuf = ctypes.create_string_buffer(header), ctypes.create_string_buffer(data)
    _check(_libc.capset(hbuf, dbuf), "capset")


# seccomp: refuse AF_INET / AF_INET6 sockets and io_uring (which can open sockets itself).
_AUDIT_ARCH = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}  # arch, __NR_socket
_NR_IO_URING_SETUP = 425
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
_EACCES = 13


def _seccomp_program() -> bytes | None:
    arch = _AUDIT_ARCH.get(platform.machine())
    if arch is None or sys.byteorder != "little":
        return None
    audit_arch, nr_socket = arch
    allow, deny = 10, 11  # instruction indices below

    def jump(op: int, k: int, at: int, true: int, false: int) -> tuple:
        return (op, true - at - 1, false - at - 1, k)

    program = [
        (_BPF_LD_W_ABS, 0, 0, 4),  # 0: seccomp_data.arch
        jump(_BPF_JEQ_K, audit_arch, 1, 2, deny),  # 1: another ABI (i386 via int 0x80): refuse
        (_BPF_LD_W_ABS, 0, 0, 0),  # 2: seccomp_data.nr
        jump(_BPF_JGE_K, 0x40000000, 3, deny, 4),  # 3: x32 ABI calls: refuse
        jump(_BPF_JEQ_K, _NR_IO_URING_SETUP, 4, deny, 5),  # 4
        jump(_BPF_JEQ_K, nr_socket, 5, 6, allow),  # 5
        (_BPF_LD_W_ABS, 0, 0, 16),  # 6: args[0] (domain), low 32 bits
        jump(_BPF_JEQ_K, 2, 7, deny, 8),  # 7: AF_INET
        jump(_BPF_JEQ_K, 10, 8, deny, allow),  # 8: AF_INET6
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),  # 9 (unreached)
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),  # 10: allow
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | _EACCES),  # 11: deny
    ]
    return b"".join(struct.pack("HBBI", *ins) for ins in program)


def block_network_with_seccomp() -> None:
    """Install the socket filter (needs no_new_privs, which `confine` sets first)."""
    program = _seccomp_program()
    if program is None:
        raise OSError("seccomp network filter not available on this architecture")
    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HxxxxxxP", len(program) // 8, ctypes.addressof(buf))
    fbuf = ctypes.create_string_buffer(fprog)
    prctl(PR_SET_SECCOMP, 2, ctypes.addressof(fbuf))  # SECCOMP_MODE_FILTER


def confine(limits: Limits, isolation: Isolation) -> None:
    """Everything the evaluator process does to itself before running trusted+untrusted code."""
    set_limits(limits, isolation)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if isolation.uid is not None:
        drop_privileges(isolation.uid, keep_read=isolation.read_all_files)
    elif isolation.user_namespace:
        drop_all_capabilities()
    if isolation.seccomp_network:
        block_network_with_seccomp()
    prctl(PR_SET_DUMPABLE, 0)
