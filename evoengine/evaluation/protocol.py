"""The engine's helper processes (evaluation workers, the Ray driver): how they start and the
JSON lines they talk in.

A message is one JSON object on one line. `Channel` is the helper's side; the engine's side
is `helper.Helper`, kept apart so that a helper never imports asyncio (a worker's boot is on
the path to a run's first evaluation).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from . import processes
from .view import THREAD_VARS

# How a helper starts: before anything else (imports take a second or more), it asks for a
# signal when its parent dies (the engine's process; under bubblewrap, bwrap's, which itself
# dies with the engine), and exits if the engine is already gone. Then it runs its module's
# main(); not with `-m`, so that Ray finds the driver's task function under its module's name.
BOOT = """import ctypes, importlib, os, select, sys
bwrap = "--bwrap" in sys.argv
ctypes.CDLL(None).prctl(1, 9 if bwrap else 15, 0, 0, 0)  # PR_SET_PDEATHSIG: SIGKILL / SIGTERM
stdout = select.poll()
stdout.register(1, 0)  # reports only an error: nobody reads our output any more
if stdout.poll(0) or (not bwrap and os.getppid() != int(sys.argv[sys.argv.index("--parent") + 1])):
    os._exit(1)  # the engine died before we could ask to die with it
sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))
"""


def boot_command(module: str, *args: str) -> list[str]:
    """The command line of a helper that runs `module`'s main(args) (--parent <engine pid> added)."""
    return [sys.executable, "-c", BOOT, module, *args, "--parent", str(os.getpid())]


def frame(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def write_message(fd: int, message: dict[str, Any]) -> None:
    """Write one message to `fd` whole (TypeError or ValueError, and nothing written, if it is not JSON)."""
    processes.write_all(fd, frame(message))


def parse_reply(line: bytes | str) -> dict[str, Any]:
    """One JSON object from a protocol line ({} if it is not one)."""
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def one_message(data: bytes) -> dict[str, Any] | None:
    """The one JSON object a child wrote to its result pipe, or None if there is not exactly one."""
    lines = data.splitlines()
    return (parse_reply(lines[0]) or None) if len(lines) == 1 else None


def helper_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with one BLAS/OpenMP thread (forking a threaded process can deadlock) and this
    very copy of evoengine first on PYTHONPATH (the helper must run the engine's code)."""
    env.update(dict.fromkeys(THREAD_VARS, "1"))
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


class Channel:
    """A helper's side: its log goes to stderr, tagged `name`; its messages go out on what was
    its stdout (`fd`), and fd 1 becomes stderr, so that stray prints cannot corrupt them."""

    def __init__(self, name: str) -> None:
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO, format=f"{name} %(process)d: %(levelname)s %(message)s"
        )
        self.fd = os.dup(1)
        os.dup2(2, 1)

    def send(self, message: dict[str, Any]) -> None:
        write_message(self.fd, message)
