"""`RayPool`: evaluate candidates as Ray tasks, on this machine or across a Ray cluster.

The same interface as `EvaluatorPool` (`start`, `evaluate`, `close`), so the engine can swap
one for the other, and the same sandbox: each Ray task hands its candidate to a warm local
`EvaluatorPool` with one slot, kept alive inside the Ray worker process between tasks. The
timeouts, memory and process limits, process-group kill and output capping are therefore
those of the local pool, line for line; Ray only decides on which machine that happens.

Three processes are involved, each with its module:

    engine ── RayPool ──JSON lines──▶ driver (ray_driver.py, a subprocess)
              (this module)              └── ray.init(...) ──tasks──▶ Ray worker (any node)
                                                                        └── ray_node.py:
                                                                            EvaluatorPool(1)
                                                                              └── sandbox

The Ray client lives in a driver subprocess, not in the engine, because Ray terminates the
whole process that holds its client about a minute after the cluster goes away. The engine
only sees the driver exit, and stops the run with an `EvoError` saying how to resume it.

The problem folder goes to every node as the job's `working_dir`, and this copy of the
`evoengine` package as a `py_modules` entry (docs/ray.md: what is sent where). Nodes need
the same Python packages the problem imports (numpy, scipy, ...).

Faults: a Ray worker process or node that dies mid-evaluation makes Ray run the task again
(at most `ray.max_retries` times); after that, `evaluate` returns an invalid result saying
so. Every `evaluate` call returns exactly one result, however many attempts Ray made.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any

from ..errors import EvoError, ProblemError
from ..problem import EvalResult
from .helper import Helper
from .pool import PoolStats
from .protocol import boot_command, helper_env
from .ray_driver import SHIP_EXCLUDES, START_TIMEOUT_S, first_line
from .sandbox import Limits

log = logging.getLogger(__name__)

CONNECT_CHECK_S = 5.0
MAX_SHIPPED_MB = 100  # Ray refuses packages over 512 MiB; a problem folder this big is a mistake
_SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)
_RAY_AUTH_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")  # the driver needs these to connect


class RayPool:
    """Evaluates candidates of `problem_path` as Ray tasks, at most `slots` at once.

    `ray_config` is the `ray` config section (`evoengine.config.Ray`: address, num_cpus,
    num_gpus, memory_mb, max_retries). `run_dir` only makes the "cluster went away" message
    name the exact resume command.
    """

    def __init__(
        self, problem_path: Path, slots: int, limits: Limits, ray_config: Any, *, run_dir: Path | None = None
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1 (got {slots})")
        self.problem_path = Path(problem_path).resolve()
        self.slots = slots
        self.limits = limits
        self.ray_config = ray_config
        self.run_dir = run_dir
        self.stats = PoolStats()
        self.isolation = ""  # as the warm-up task's sandbox reported it
        self.cluster: dict[str, Any] = {}  # what the driver found: address, nodes, resources
        self._driver = Helper("ray driver")
        self._reader: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._slots: asyncio.Semaphore | None = None
        self._next_id = 0
        self._lost: str | None = None
        self._closing = False
        self._setup_warned: set[str] = set()

    @property
    def address(self) -> str:
        return self.ray_config.address or "local"

    def driver_pid(self) -> int | None:
        return self._driver.pid

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect to (or start) Ray and warm one evaluation up; raises EvoError if it cannot."""
        if importlib.util.find_spec("ray") is None:
            raise EvoError("evaluation.backend is 'ray' but Ray is not installed here: pip install 'evoengine[ray]'")
        if self.ray_config.address:
            reason = await asyncio.to_thread(_unreachable, self.ray_config.address)
            if reason:
                raise EvoError(
                    f"cannot reach a Ray cluster at {self.ray_config.address}: {reason}. "
                    "Start one with `ray start --head` (see docs/ray.md) or check the "
                    "address (ray.address / --ray)"
                )
        folder = self.problem_path.parent
        size_mb = _folder_mb(folder)
        if size_mb > MAX_SHIPPED_MB:
            raise EvoError(
                f"the problem folder {folder} holds {size_mb:.0f} MB; the ray backend "
                f"ships it to every node, so keep it under {MAX_SHIPPED_MB} MB "
                "(move data elsewhere or into a smaller folder)"
            )
        plan = {
            "address": self.ray_config.address,
            "problem_dir": str(folder),
            "problem_file": self.problem_path.name,
            "evoengine_dir": str(Path(__file__).resolve().parents[1]),
            "limits": self.limits.to_json(),
            **{k: getattr(self.ray_config, k) for k in ("num_cpus", "num_gpus", "memory_mb", "max_retries")},
            "slots": self.slots,
        }
        command = boot_command("evoengine.evaluation.ray_driver", json.dumps(plan))
        message = await self._driver.spawn(command, _driver_env(self.limits), START_TIMEOUT_S)
        if not message.get("ready"):
            await self._driver.stop(grace_s=0.0, wait_s=10.0)
            tail = self._driver.last_words(15)
            error = message.get("error") or (
                f"the ray backend could not start (Ray at {self.address})"
                + (f":\n{tail}" if tail else ": the driver process exited without output")
            )
            if message.get("kind") == "problem":
                raise ProblemError(error)
            raise EvoError(error)
        self.cluster = message.get("cluster", {})
        self.isolation = str(message.get("isolation", ""))
        self._slots = asyncio.Semaphore(self.slots)
        self._reader = asyncio.ensure_future(self._read_replies())
        log.info(
            "ray backend: %s, %s node(s), %s CPU(s); sandbox on the nodes: %s",
            self.cluster.get("address", self.address),
            self.cluster.get("nodes", "?"),
            self.cluster.get("cpus", "?"),
            self.isolation,
        )
        for warning in message.get("warnings", []):
            log.warning("ray backend: %s", warning)
        if message.get("missing"):
            log.warning("sandbox on the Ray nodes: these protections are off: %s", "; ".join(message["missing"]))

    async def evaluate(
        self, text: str, *, label: str = "candidate", entry: str = "evaluate", proposal: int | None = None
    ) -> EvalResult:
        """Score one candidate on the cluster with the problem's function `entry` (as the
        local pool does). Never raises for anything the candidate does; raises EvoError only
        when the cluster itself is gone (the run must stop)."""
        if self._slots is None:
            raise RuntimeError("RayPool.start() must be awaited before evaluate()")
        async with self._slots:
            if self._lost is not None:
                raise EvoError(self._lost)
            self._next_id += 1
            request_id = self._next_id
            future: asyncio.Future = asyncio.get_running_loop().create_future()
            self._pending[request_id] = future
            try:
                self._driver.send({"id": request_id, "text": text, "label": label, "entry": entry})
                reply = await future
            except asyncio.CancelledError:
                self._driver.send({"cancel": request_id})
                raise
            finally:
                self._pending.pop(request_id, None)
        return self._interpret(reply)

    async def close(self) -> None:
        """Cancel what is in flight, disconnect (a local Ray is shut down). Safe to call twice."""
        self._closing = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(EvoError("the ray backend was closed during the evaluation"))
        await self._driver.stop(grace_s=60.0, wait_s=10.0)
        if self._reader is not None:
            self._reader.cancel()
        self._slots = None

    async def __aenter__(self) -> RayPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ talking to the driver

    async def _read_replies(self) -> None:
        reason = ""
        while (message := await self._driver.receive()) is not None:
            if "lost" in message:
                reason = str(message["lost"])
                break
            future = self._pending.get(message.get("id", -1))
            if future is not None and not future.done():
                future.set_result(message)
        if self._closing:
            return
        await asyncio.sleep(0.05)  # let the exit status arrive
        if not reason:
            last = [t for t in self._driver.stderr_tail if t.strip()][-1:] or ["no output"]
            reason = f"its driver process exited with status {self._driver.proc.returncode}: {_gist(last[0])}"
        self._cluster_lost(reason)

    def _cluster_lost(self, reason: str) -> None:
        where = str(self.run_dir) if self.run_dir else "RUN_DIR"
        self._lost = (
            f"the Ray cluster at {self.address} went away ({reason}); the run is stopped; "
            f"resume with `evoengine resume {where}` once the cluster is back, or with "
            f"`evoengine resume {where} --set evaluation.backend=local` to go on on this machine"
        )
        log.warning("ray backend: lost the cluster at %s (%s)", self.address, reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(EvoError(self._lost))

    def _interpret(self, reply: dict[str, Any]) -> EvalResult:
        if "result" in reply:
            self.stats.add(reply)
            return EvalResult.coerce(reply["result"])
        node = reply.get("node") or "?"
        detail = str(reply.get("message", "")).strip()
        kind = reply.get("failed")
        if kind == "died":
            retries = self.ray_config.max_retries
            return EvalResult.invalid(
                f"the Ray worker process or node evaluating this candidate died "
                f"{retries + 1} time(s) (ray.max_retries={retries}); the candidate runs in a "
                f"sandbox below that process, so look at the node (killed, out of memory, shut "
                f"down?): {first_line(detail)}"
            )
        if kind == "oom":
            return EvalResult.invalid(
                f"Ray's memory monitor killed the evaluation because its node ran low on memory: {first_line(detail)}"
            )
        if kind == "setup":
            if node not in self._setup_warned:
                self._setup_warned.add(node)
                log.warning("ray backend: evaluations cannot start on node %s: %s", node, detail)
            return EvalResult.invalid(f"the evaluation could not start on Ray node {node}: {detail}")
        return EvalResult.invalid(f"the Ray task failed: {detail[-2000:]}")


# ---------------------------------------------------------------------------- engine-side helpers


def _gist(log_line: str) -> str:
    """The message of one of Ray's C++ log lines, without its prefix and its advice."""
    text = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", log_line.strip())
    return text.split(". ")[0][:300]


def _unreachable(address: str) -> str:
    """Why nothing answers at a `host:port` or `ray://host:port` address ('' if something
    does, or if the address names no port, like 'auto', which Ray resolves itself)."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return ""
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_CHECK_S):
            return ""
    except TimeoutError:
        return f"no answer within {CONNECT_CHECK_S:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def _folder_mb(folder: Path) -> float:
    total = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in SHIP_EXCLUDES]
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total / 2**20


def _driver_env(limits: Limits) -> dict[str, str]:
    """Our environment without secrets (a local Ray passes it on to its workers), except
    Ray's own authentication token, which the driver needs to connect, and the variables
    the problem declares. (The sandbox's own workers start from an allow-list: view.py.)"""
    keep = (*_RAY_AUTH_VARS, *limits.env)
    env = {k: v for k, v in os.environ.items() if k in keep or not _SECRET_ENV.search(k)}
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return helper_env(env)
