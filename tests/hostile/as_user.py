"""Runs a command as `nobody`, the way a normal user runs evoengine (run as root).

    python as_user.py HOME -- COMMAND...

In a private mount namespace, the root user's home becomes an empty folder that holds only
the Python installation (when it lives there, as a pyenv does), readable the way a user's
own Python is; then the command runs as nobody/nogroup, without capabilities, with
HOME=HOME. Exits 77 if the kernel or the tools refuse (the caller skips with the message).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys

CLONE_NEWNS, MS_BIND, MS_REC, MS_PRIVATE = 0x00020000, 0x1000, 0x4000, 0x40000


def _mount(libc, source, target, fstype, flags, data=None):
    args = [s.encode() if s is not None else None for s in (source, target, fstype, data)]
    if libc.mount(args[0], args[1], args[2], flags, args[3]) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target}")


def main() -> None:
    home, command = sys.argv[1], sys.argv[sys.argv.index("--") + 1 :]
    libc = ctypes.CDLL(None, use_errno=True)
    root_home = os.path.realpath(os.path.expanduser("~root"))
    keep = sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix) if p.startswith(root_home + "/")})
    try:
        if shutil.which("setpriv") is None:
            raise OSError("setpriv is not installed")
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
        sources = {path: os.open(path, os.O_PATH) for path in keep}
        _mount(libc, "tmpfs", root_home, "tmpfs", 0, "mode=0755,size=1m")
        for path, fd in sources.items():
            os.makedirs(path, mode=0o755)
            _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
    except OSError as exc:
        print(f"cannot set up a normal user's view: {exc}", file=sys.stderr)
        sys.exit(77)
    os.environ.update(HOME=home, USER="nobody", LOGNAME="nobody")
    os.execvp("setpriv", ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command])


if __name__ == "__main__":
    main()
