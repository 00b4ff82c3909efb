"""The seccomp filter that enforces `network: false` where no network namespace can be made.

It refuses `socket(AF_INET / AF_INET6)` and `io_uring_setup` (which can open sockets
itself) with EACCES, and every system call of another ABI (i386 via int 0x80, x32), on
x86-64 and aarch64. It needs no_new_privs, which `sandbox.confine` sets first.
"""

from __future__ import annotations

import ctypes
import platform
import struct
import sys

from .mounts import check_syscall, libc

PR_SET_SECCOMP = 22

_AUDIT_ARCH = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}  # arch, __NR_socket
_NR_IO_URING_SETUP = 425
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
_EACCES = 13


def program() -> bytes | None:
    """The filter as BPF, or None on an architecture it does not know."""
    arch = _AUDIT_ARCH.get(platform.machine())
    if arch is None or sys.byteorder != "little":
        return None
    audit_arch, nr_socket = arch
    allow, deny = 9, 10  # instruction indices below

    def jump(op: int, k: int, at: int, true: int, false: int) -> tuple:
        return (op, true - at - 1, false - at - 1, k)

    instructions = [
        (_BPF_LD_W_ABS, 0, 0, 4),  # 0: seccomp_data.arch
        jump(_BPF_JEQ_K, audit_arch, 1, 2, deny),  # 1: another ABI (i386 via int 0x80): refuse
        (_BPF_LD_W_ABS, 0, 0, 0),  # 2: seccomp_data.nr
        jump(_BPF_JGE_K, 0x40000000, 3, deny, 4),  # 3: x32 ABI calls: refuse
        jump(_BPF_JEQ_K, _NR_IO_URING_SETUP, 4, deny, 5),  # 4
        jump(_BPF_JEQ_K, nr_socket, 5, 6, allow),  # 5
        (_BPF_LD_W_ABS, 0, 0, 16),  # 6: args[0] (domain), low 32 bits
        jump(_BPF_JEQ_K, 2, 7, deny, 8),  # 7: AF_INET
        jump(_BPF_JEQ_K, 10, 8, deny, allow),  # 8: AF_INET6
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),  # 9: allow
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | _EACCES),  # 10: deny
    ]
    return b"".join(struct.pack("HBBI", *ins) for ins in instructions)


def block_network() -> None:
    """Install the filter in this process (and so in everything it starts)."""
    code = program()
    if code is None:
        raise OSError("seccomp network filter not available on this architecture")
    buf = ctypes.create_string_buffer(code)
    fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxP", len(code) // 8, ctypes.addressof(buf)))
    address = ctypes.c_ulong(ctypes.addressof(fprog))
    mode = ctypes.c_ulong(2)  # SECCOMP_MODE_FILTER
    check_syscall(libc.prctl(PR_SET_SECCOMP, mode, address, 0, 0), "prctl(PR_SET_SECCOMP)")
