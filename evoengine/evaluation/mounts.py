"""Mounts, done by the worker itself: its filesystem view, and each candidate's private scratch.

`enter` replaces the root of a fresh mount namespace by a `View` (see view.py): a tmpfs
becomes the root (pivot_root, the old root kept at /.oldroot for a moment), each bound path
is bound read-only at its own place from under /.oldroot, and the old root is detached. It
runs in the init of the worker's namespaces, which owns them (root, or the root of a new
user namespace, who can bind only what the engine's user can reach).

`private_scratch` runs in each forked evaluator: a mount namespace of its own and one fresh
tmpfs of `disk_mb` that holds /tmp, /dev/shm, /var/tmp and the candidate's folder (one
quota for all four), freed by the kernel when the evaluation's last process is gone.
"""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

from .view import View, inside

CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 2
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
OLD = "/.oldroot"

libc = ctypes.CDLL(None, use_errno=True)


def check_syscall(result: int, what: str) -> None:
    """Raise OSError (with errno) if a libc call returned non-zero."""
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    args = [s.encode() if s is not None else None for s in (source, target, fstype)]
    check_syscall(libc.mount(*args, flags, data.encode() if data else None), f"mount {target}")


def bind(source: str, target: str, read_only: bool = True, recursive: bool = False) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if read_only:  # a bind mount takes its own flags only on a second, remounting call
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def enter(view: View) -> None:
    """Make `view` this mount namespace's whole filesystem (see the module docstring)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we do here reaches the host
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")  # the new root
    os.mkdir("/tmp" + OLD)
    _pivot_root("/tmp", "/tmp" + OLD)
    os.mkdir("/tmp", 0o1777)
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={view.tmp_mb}m")
    _populate(view, OLD, "/")
    os.mkdir("/dev")
    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=0755,size=64k")
    for name in view.devices:
        _bind_at(f"{OLD}/dev/{name}", f"/dev/{name}", read_only=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "fd/0"), ("stdout", "fd/1"), ("stderr", "fd/2")):
        os.symlink(target, f"/dev/{name}")
    for path in ("/dev/shm", "/var/tmp", "/proc"):
        _mkdirs(path)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    check_syscall(libc.umount2(OLD.encode(), MNT_DETACH), "detach the old root")
    os.rmdir(OLD)
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    mount(None, "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID)
    os.chdir("/tmp")


def private_scratch(view: View, disk_mb: int, owner: int | None) -> Path:
    """In a forked evaluator: one new tmpfs for /tmp, /dev/shm, /var/tmp and the candidate's
    folder (returned, owned by `owner`). What the view has under /tmp is bound onto it too."""
    check_syscall(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    stage = "/var/tmp"  # the new tmpfs is put together here, then shown at its three places
    mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0755,size={disk_mb}m")
    for name in ("tmp", "shm", "var"):
        os.mkdir(f"{stage}/{name}", 0o1777)
        os.chmod(f"{stage}/{name}", 0o1777)
    shown = [p for p in (*view.binds, *view.masks) if inside(p, "/tmp") and p != "/tmp"]
    for path in sorted(shown):  # bound again onto the new tmpfs, with what lies inside them
        if not any(inside(path, other) and path != other for other in shown):
            _bind_at(path, f"{stage}{path}")
    for path, target in view.links:
        if inside(path, "/tmp"):
            _mkdirs(os.path.dirname(f"{stage}{path}"))
            os.symlink(target, f"{stage}{path}")
    bind(f"{stage}/shm", "/dev/shm", read_only=False)
    bind(f"{stage}/tmp", "/tmp", read_only=False, recursive=True)  # with what was bound inside it
    bind(f"{stage}/var", stage, read_only=False)
    workdir = Path("/tmp/candidate")
    workdir.mkdir(mode=0o700)
    if owner is not None:
        os.chown(workdir, owner, owner)
    return workdir


def _populate(view: View, source_root: str, folder: str) -> None:
    """Bind (from under `source_root`), link and mask the view's paths inside `folder`."""
    for path in view.binds:  # sorted: a folder comes before anything bound inside it
        if inside(path, folder):
            _bind_at(source_root + path, path)
    for path, target in view.links:
        if inside(path, folder):
            _mkdirs(os.path.dirname(path))
            os.symlink(target, path)
    for path in view.masks:
        if inside(path, folder):
            mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0755")


def _bind_at(source: str, target: str, read_only: bool = True) -> None:
    """Bind `source` (with what is mounted below it: a user namespace may not split that off)
    at `target`, making a folder or an empty file there first."""
    if os.path.isdir(source):
        _mkdirs(target)
    else:
        _mkdirs(os.path.dirname(target))
        Path(target).touch()
    bind(source, target, read_only, recursive=True)


def _pivot_root(new: str, put_old: str) -> None:
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unknown system call number on {platform.machine()}")
    check_syscall(libc.syscall(number, new.encode(), put_old.encode()), "pivot_root")
    os.chdir("/")


def _mkdirs(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)
