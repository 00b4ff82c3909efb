"""What an evaluation can see: the files it needs (read-only), and an allow-listed environment.

`plan_view` lists, from this interpreter, the host paths an evaluation of a problem needs:
the system's programs and libraries (/usr and its top-level links, /sys, a short list of
/etc entries), the Python installation and every folder on `sys.path`, the evoengine
package and the problem folder. Each is bound read-only at its own path on an empty root;
everything else (the user's home, /root, /home, /run, /var, /opt, run directories, other
runs, the rest of /tmp) is not there at all. A folder on `sys.path` that holds the user's
home or the current directory (where `runs/` lives by default) is left out, and `runs`
folders and other `hide` paths that fall inside a bound path are covered by an empty tmpfs.

Two builders give the same view: `bwrap_command` starts the worker under bubblewrap (it
works unprivileged wherever user namespaces are allowed), and `mounts.enter` builds it from
inside the worker's own namespaces (root, or unprivileged user namespaces).

`sandbox_env` is the environment a worker starts with: names from an allow-list, plus the
ones the problem declares (`Problem.env`); everything else (API keys, database URLs,
tokens under any name) stays with the engine.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from . import processes

log = logging.getLogger(__name__)

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/sys")
ETC_ENTRIES = (  # what programs commonly read from /etc; not shadow, sudoers, ssh keys, ...
    "alternatives ca-certificates ca-certificates.conf fonts gai.conf group host.conf hosts ld.so.cache ld.so.conf "
    "ld.so.conf.d localtime mime.types nsswitch.conf os-release passwd protocols resolv.conf services ssl timezone"
).split()
# One BLAS/OpenMP thread in workers: forking a process that has threads can deadlock.
THREAD_VARS = tuple(
    "OMP_NUM_THREADS OPENBLAS_NUM_THREADS MKL_NUM_THREADS NUMEXPR_NUM_THREADS VECLIB_MAXIMUM_THREADS "
    "BLIS_NUM_THREADS".split()
)
SCRATCH_PATHS = ("/tmp", "/var/tmp", "/dev/shm")  # private to each evaluation
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
GPU_DEVICES = ("nvidia*", "dri", "kfd")
WORKER_TMP_MB = 16  # the worker's own /tmp, beyond the captured output

ENV_NAMES = frozenset(
    "PATH LANG LANGUAGE TZ TERM PYTHONPATH PYTHONHASHSEED PYTHONIOENCODING PYTHONUTF8 PYTHONWARNINGS "
    "PYTHONDONTWRITEBYTECODE CUDA_VISIBLE_DEVICES HIP_VISIBLE_DEVICES ROCR_VISIBLE_DEVICES "
    "NVIDIA_VISIBLE_DEVICES".split()
) | set(THREAD_VARS)


def sandbox_env(declared: Iterable[str] = ()) -> dict[str, str]:
    """This process's environment reduced to the allow-list (LC_* included) and `declared`."""
    names = ENV_NAMES | set(declared)
    return {k: v for k, v in os.environ.items() if k in names or k.startswith("LC_")}


@dataclass(frozen=True)
class View:
    """A filesystem view: what is bound (read-only, at the same path), linked and hidden."""

    binds: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (path, target)
    masks: tuple[str, ...] = ()  # folders inside a bound path, covered by an empty tmpfs
    devices: tuple[str, ...] = ()  # /dev entries bound as they are
    tmp_mb: int = WORKER_TMP_MB

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> View:
        data = json.loads(text)
        data["links"] = [tuple(pair) for pair in data["links"]]
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def plan_view(problem_dir: Path, hide: Iterable[Path] = (), output_mb: int = 64, reads: Iterable[str] = ()) -> View:
    """The view an evaluation of the problem in `problem_dir` (and the paths it `reads`) needs,
    from this interpreter; the worker's own /tmp holds up to `output_mb` of captured output."""
    home, cwd = os.path.realpath(os.path.expanduser("~")), os.path.realpath(os.getcwd())
    package = Path(__file__).resolve().parents[1]
    wanted = [*SYSTEM_PATHS, *(f"/etc/{name}" for name in ETC_ENTRIES)]
    wanted += [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, sys.executable]
    wanted += [str(package), str(problem_dir), *reads]
    # A folder on sys.path that holds one of these would show all of it: the package alone
    # stands in for its parent, and the others are left out.
    shared = [home, cwd, tempfile.gettempdir(), *SCRATCH_PATHS]
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if real and real != str(package.parent) and not any(inside(os.path.realpath(s), real) for s in shared):
            wanted.append(entry)
    binds: set[str] = set()
    links: dict[str, str] = {}
    for path in map(os.path.abspath, wanted):
        if not os.path.exists(path):
            continue
        real = os.path.realpath(path)
        binds.add(real)
        if real != path:
            links[path] = real
    binds = {p for p in binds if not any(inside(p, other) and p != other for other in binds)}
    links = {p: t for p, t in links.items() if not any(inside(p, b) for b in binds)}
    hidden = [home, os.path.join(cwd, "runs"), str(Path(problem_dir) / "runs"), *map(str, hide)]
    masks = {os.path.realpath(p) for p in hidden if os.path.isdir(p)}
    devices = [os.path.basename(p) for pattern in GPU_DEVICES for p in glob.glob(f"/dev/{pattern}")]
    return View(
        binds=tuple(sorted(binds)),
        links=tuple(sorted(links.items())),
        masks=tuple(sorted(m for m in masks if any(inside(m, b) for b in binds))),
        devices=tuple(d for d in (*DEVICES, *devices) if os.path.exists(f"/dev/{d}")),
        tmp_mb=output_mb + WORKER_TMP_MB,
    )


def bwrap_command(view: View, *, network: bool, user_namespace: bool) -> list[str]:
    """bubblewrap's arguments for a worker in `view`: the init of its own PID (and network,
    user) namespace, holding every capability there (it mounts each candidate's scratch and
    drops them in the evaluator), killed with its parent."""
    uid, gid = os.getuid(), os.getgid()
    args = ["bwrap", "--die-with-parent", "--as-pid-1", "--new-session", "--unshare-pid", "--unshare-ipc"]
    args += [] if network else ["--unshare-net"]
    args += ["--unshare-user", "--uid", str(uid), "--gid", str(gid)] if user_namespace else []
    args += ["--cap-add", "ALL", "--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "01777", "--size", str(view.tmp_mb * 2**20), "--tmpfs", "/tmp"]
    made = {"/tmp", "/dev", "/proc"}
    args += [*_folders("/var/tmp", made), "--perms", "01777", "--dir", "/var/tmp"]
    for path in view.binds:
        args += [*_folders(path, made), "--ro-bind", path, path]
    for name in view.devices:
        if name not in DEVICES:  # bwrap's --dev has the standard ones
            args += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
    for path, target in view.links:
        args += [*_folders(path, made), "--symlink", target, path]
    for path in view.masks:
        args += ["--size", "4096", "--tmpfs", path, "--remount-ro", path]
    return [*args, "--remount-ro", "/", "--chdir", "/tmp"]


def _folders(path: str, made: set[str]) -> list[str]:
    """bwrap arguments making the folders above `path` that are not there yet, readable by all
    (bwrap makes them 0700 by itself, which a candidate's own uid could not pass)."""
    args = []
    for parent in map(str, reversed(Path(path).parents)):
        if parent != "/" and parent not in made:
            made.add(parent)
            args += ["--perms", "0755", "--dir", parent]
    return args


def inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies below it."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def bubblewrap_command(view: View, network: bool) -> list[str]:
    """bubblewrap's command line for the workers, if it is installed ([] if not): as root
    without a user namespace, else with one."""
    if shutil.which("bwrap") is None:
        return []
    return bwrap_command(view, network=network, user_namespace=os.geteuid() != 0)


async def bubblewrap_works(command: list[str]) -> bool:
    """Whether bubblewrap's `command` starts Python here."""
    import asyncio  # here: the workers import this module, and never need asyncio

    proc = await asyncio.create_subprocess_exec(
        *command,
        *(sys.executable, "-S", "-c", ""),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=sandbox_env(),
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30.0)
    except asyncio.TimeoutError:
        processes.kill_tree(proc.pid)
        await proc.wait()
        err = b"(no answer within 30 s)"
    if proc.returncode == 0:
        return True
    log.info(
        "bubblewrap does not work here (%s); the workers set up their namespaces themselves",
        err.decode(errors="replace").strip(),
    )
    return False
