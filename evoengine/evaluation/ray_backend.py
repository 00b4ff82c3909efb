"""`RayPool`: evaluate candidates as Ray tasks, on this machine or across a Ray cluster.

The same interface as `EvaluatorPool` (`start`, `evaluate`, `close`), so the engine can swap
one for the other, and the same sandbox: each Ray task hands its candidate to a warm local
`EvaluatorPool` with one slot, kept alive inside the Ray worker process between tasks. The
timeouts, memory and process limits, process-group kill and output capping are therefore
those of the local pool, line for line; Ray only decides on which machine that happens.

Three processes are involved, and this module holds the code of all three:

    engine ── RayPool ──JSON lines──▶ driver (a subprocess running `driver_main`)
                                         └── ray.init(...) ──tasks──▶ Ray worker (any node)
                                                                        └── EvaluatorPool(1)
                                                                              └── sandbox

The Ray client lives in a driver subprocess, not in the engine, because Ray terminates the
whole process that holds its client about a minute after the cluster goes away. The engine
only sees the driver exit, and stops the run with an `EvoError` saying how to resume it.

What is sent where: the problem folder goes to every node as the job's `working_dir`, and
this copy of the `evoengine` package as a `py_modules` entry (both through Ray's object
store, cached per node); the candidate text travels with each task; results come back as
plain dicts. Nodes need the same Python packages the problem imports (numpy, scipy, ...).

Faults: a Ray worker process or node that dies mid-evaluation makes Ray run the task again
(at most `ray.max_retries` times); after that, `evaluate` returns an invalid result saying
so. Every `evaluate` call returns exactly one result, however many attempts Ray made.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import importlib.util
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import EvoError, ProblemError
from ..problem import EvalResult
from .pool import EvaluatorPool, PoolStats
from .sandbox import PR_SET_PDEATHSIG, Limits, prctl
from .view import THREAD_VARS

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # starting a local Ray takes ~30 s on 2 cores; a warm-up task more
CONNECT_CHECK_S = 5.0
MAX_SHIPPED_MB = 100  # Ray refuses packages over 512 MiB; a problem folder this big is a mistake
SHIP_EXCLUDES = ["__pycache__", "*.pyc", ".git", ".pytest_cache", "runs"]
# A private local Ray listens on loopback only. Not 127.0.0.1: Ray replaces that address with
# the machine's network address; any other address of 127.0.0.0/8 is loopback on Linux too.
LOCAL_RAY_IP = "127.0.0.2"
_SECRET_ENV = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL", re.IGNORECASE)
_RAY_AUTH_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")  # the driver needs these to connect
# Not `-m`: Ray must find `evaluate_on_node` under this module's name, not `__main__`.
_DRIVER_COMMAND = (
    "import sys; from evoengine.evaluation.ray_backend import driver_main; sys.exit(driver_main(sys.argv[1:]))"
)


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
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._reader: asyncio.Task | None = None
        self._stderr_task: asyncio.Task | None = None
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
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

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
            "num_cpus": self.ray_config.num_cpus,
            "num_gpus": self.ray_config.num_gpus,
            "memory_mb": self.ray_config.memory_mb,
            "max_retries": self.ray_config.max_retries,
            "slots": self.slots,
            "parent": os.getpid(),
        }
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _DRIVER_COMMAND,
            json.dumps(plan),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env=_driver_env(),
            limit=64 * 1024 * 1024,
        )
        self._stderr_task = asyncio.ensure_future(self._read_stderr())
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), START_TIMEOUT_S)
        except asyncio.TimeoutError:
            line = b""
            self._stderr_tail.append(f"(no answer within {START_TIMEOUT_S:g} s)")
        message = _parse(line)
        if not message.get("ready"):
            await self._kill_driver()
            tail = "\n".join(list(self._stderr_tail)[-15:])
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

    async def evaluate(self, text: str, *, label: str = "candidate", entry: str = "evaluate") -> EvalResult:
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
                self._send({"id": request_id, "text": text, "label": label, "entry": entry})
                reply = await future
            except asyncio.CancelledError:
                self._send({"cancel": request_id})
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
        proc = self._proc
        if proc is not None and proc.returncode is None and proc.stdin is not None:
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 60.0)
            except asyncio.TimeoutError:
                log.warning("ray backend: the driver did not stop within 60 s; killing it")
        await self._kill_driver()
        for task in (self._reader, self._stderr_task):
            if task is not None:
                task.cancel()
        self._slots = None

    async def __aenter__(self) -> RayPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ talking to the driver

    def _send(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(json.dumps(message).encode() + b"\n")

    async def _read_replies(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        reason = ""
        while line := await self._proc.stdout.readline():
            message = _parse(line)
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
            last = [t for t in self._stderr_tail if t.strip()][-1:] or ["no output"]
            reason = f"its driver process exited with status {self._proc.returncode}: {_gist(last[0])}"
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

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while line := await self._proc.stderr.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self._stderr_tail.append(text)
            log.debug("ray driver: %s", text)

    async def _kill_driver(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 10.0)

    def _interpret(self, reply: dict[str, Any]) -> EvalResult:
        if "result" in reply:
            self.stats.evaluations += 1
            self.stats.wall_s += float(reply.get("wall_s", 0.0))
            self.stats.cpu_s += float(reply.get("cpu_s", 0.0))
            self.stats.worker_restarts += int(reply.get("restarts", 0))
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
                f"down?): {_first_line(detail)}"
            )
        if kind == "oom":
            return EvalResult.invalid(
                f"Ray's memory monitor killed the evaluation because its node ran low on memory: {_first_line(detail)}"
            )
        if kind == "setup":
            if node not in self._setup_warned:
                self._setup_warned.add(node)
                log.warning("ray backend: evaluations cannot start on node %s: %s", node, detail)
            return EvalResult.invalid(f"the evaluation could not start on Ray node {node}: {detail}")
        return EvalResult.invalid(f"the Ray task failed: {detail[-2000:]}")


# ---------------------------------------------------------------------------- engine-side helpers


def _parse(line: bytes) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else "no details"


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


def _driver_env() -> dict[str, str]:
    """Our environment without secrets (a local Ray passes it on to its workers), except
    Ray's own authentication token, which the driver needs to connect."""
    env = {k: v for k, v in os.environ.items() if k in _RAY_AUTH_VARS or not _SECRET_ENV.search(k)}
    env.update({var: "1" for var in THREAD_VARS})
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


# ---------------------------------------------------------------------------- in Ray workers

# The warm one-slot pool of this Ray worker process: "key", "pool", "loop" (empty elsewhere).
_warm: dict[str, Any] = {}


def evaluate_on_node(
    problem_file: str, limits_json: str, text: str | None, label: str, entry: str = "evaluate"
) -> dict[str, Any]:
    """The Ray task: evaluate `text` with this worker's warm one-slot pool (`None`: only warm
    it up). The problem folder is the worker's current directory (the job's working_dir)."""
    node = _node_ip()
    # A reused Ray worker may be handed other GPUs than last time: a warm evaluation worker
    # started with another CUDA_VISIBLE_DEVICES must not serve this task.
    key = (problem_file, limits_json, os.environ.get("CUDA_VISIBLE_DEVICES"))
    fresh = _warm.get("key") != key
    if fresh:
        _close_warm()
        loop = asyncio.new_event_loop()
        pool = EvaluatorPool(Path(problem_file).resolve(), 1, Limits.from_json(limits_json))
        try:
            loop.run_until_complete(pool.start())
        except Exception as exc:  # the problem does not import on this node
            loop.run_until_complete(pool.close())
            loop.close()
            return {"failed": "setup", "node": node, "message": str(exc)}
        _warm.update(key=key, pool=pool, loop=loop)
    pool, loop = _warm["pool"], _warm["loop"]
    if text is None:
        return {"ready": True, "node": node, "isolation": pool.isolation}
    before = (pool.stats.wall_s, pool.stats.cpu_s, pool.stats.worker_restarts)
    result = loop.run_until_complete(pool.evaluate(text, label=label, entry=entry))
    return {
        "result": result.to_dict(),
        "node": node,
        "pid": os.getpid(),
        "wall_s": pool.stats.wall_s - before[0],
        "cpu_s": pool.stats.cpu_s - before[1],
        "restarts": pool.stats.worker_restarts - before[2] + int(fresh),
    }


def _node_ip() -> str:
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:
        return socket.gethostname()


def _close_warm() -> None:
    if _warm:
        with contextlib.suppress(Exception):
            _warm["loop"].run_until_complete(_warm["pool"].close())
            _warm["loop"].close()
    _warm.clear()


atexit.register(_close_warm)


# ---------------------------------------------------------------------------- the driver


class _Driver:
    """Holds the Ray connection; turns request lines into tasks and task outcomes into replies."""

    def __init__(self, plan: dict[str, Any], send: Any) -> None:
        self.plan = plan
        self.send = send
        self.refs: dict[int, Any] = {}
        self.task: Any = None

    def connect(self) -> dict[str, Any]:
        import ray

        plan = self.plan
        runtime_env = {
            "working_dir": plan["problem_dir"],
            "py_modules": [plan["evoengine_dir"]],
            "excludes": SHIP_EXCLUDES,
        }
        if plan["address"]:
            ray.init(
                address=plan["address"], runtime_env=runtime_env, logging_level=logging.WARNING, log_to_driver=False
            )
        else:  # a private Ray on this machine (loopback only), never someone else's running one
            # Keep a warm Ray worker per slot (+1 for the warm-up) even with fractional
            # ray.num_cpus; Ray's default keeps one idle worker per CPU.
            soft_limit = max(int(plan["slots"]) + 1, os.cpu_count() or 1)
            ray.init(
                address="local",
                runtime_env=runtime_env,
                include_dashboard=False,
                object_store_memory=256 * 2**20,
                logging_level=logging.WARNING,
                log_to_driver=False,
                _node_ip_address=LOCAL_RAY_IP,
                _system_config={"num_workers_soft_limit": soft_limit},
            )
        options: dict[str, Any] = {
            "num_cpus": plan["num_cpus"],
            "num_gpus": plan["num_gpus"],
            "max_retries": plan["max_retries"],
            "retry_exceptions": False,
            # Ray's default for GPU tasks is a fresh worker per task, to free GPU memory; ours
            # never touch a GPU themselves (the sandboxed evaluations below them do, and exit).
            "max_calls": 0,
        }
        if plan["memory_mb"]:
            options["memory"] = int(plan["memory_mb"]) * 2**20
        self.task = ray.remote(**options)(evaluate_on_node)
        return self.describe(ray)

    def describe(self, ray: Any) -> dict[str, Any]:
        """The cluster in a few numbers, and a warning if no node can run an evaluation."""
        try:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            total = ray.cluster_resources()
        except Exception as exc:  # some client modes cannot list nodes; not worth failing for
            log.info("cannot list the cluster's nodes: %s", exc)
            return {"cluster": {"address": self.plan["address"]}, "warnings": []}
        cluster = {
            "address": self.plan["address"] or ray.get_runtime_context().gcs_address,
            "nodes": len(nodes),
            "cpus": total.get("CPU", 0),
            "gpus": total.get("GPU", 0),
            "ray_version": ray.__version__,
        }
        need = {
            "CPU": self.plan["num_cpus"],
            "GPU": self.plan["num_gpus"],
            "memory": (self.plan["memory_mb"] or 0) * 2**20,
        }
        fits = [n for n in nodes if all(n.get("Resources", {}).get(k, 0) >= v for k, v in need.items() if v)]
        warnings = []
        if not fits:
            wanted = ", ".join(f"{k}={v:g}" for k, v in need.items() if v)
            warnings.append(
                f"no node of the cluster now has the resources one evaluation asks "
                f"for ({wanted}); evaluations wait until such a node joins "
                "(see ray.num_cpus / ray.num_gpus / ray.memory_mb)"
            )
        return {"cluster": cluster, "warnings": warnings}

    def submit(self, request_id: int | None, text: str | None, label: str, entry: str = "evaluate") -> Any:
        ref = self.task.options(name=f"evoengine {label}"[:100]).remote(
            self.plan["problem_file"], self.plan["limits"], text, label, entry
        )
        if request_id is not None:
            self.refs[request_id] = ref
        return ref

    async def finish(self, request_id: int, ref: Any) -> None:
        reply = await self.outcome(ref)
        self.refs.pop(request_id, None)
        if reply.get("failed") == "lost":
            self.send({"lost": reply["message"]})
            os._exit(3)  # the cluster is gone: Ray would end this process within a minute anyway
        if reply.get("failed") != "cancelled":
            self.send({"id": request_id, **reply})

    async def outcome(self, ref: Any) -> dict[str, Any]:
        """What became of one task, as a reply: the task's own dict, or why it failed."""
        from ray import exceptions as rex

        try:
            return await ref
        except rex.TaskCancelledError:
            return {"failed": "cancelled"}
        except (rex.LocalRayletDiedError, ConnectionError) as exc:  # our node, or the Ray
            # Client's connection (ray://), is gone: so is the cluster, as far as we can tell
            return {"failed": "lost", "message": f"{type(exc).__name__}: {exc}"}
        except rex.OutOfMemoryError as exc:
            return {"failed": "oom", "message": str(exc)}
        except (rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError) as exc:
            return {"failed": "died", "message": f"{type(exc).__name__}: {exc}"}
        except rex.RuntimeEnvSetupError as exc:
            return {"failed": "setup", "message": str(exc)[-2000:]}
        except Exception as exc:  # RayTaskError and the like: a fault of the node, not the candidate
            return {"failed": "error", "message": f"{type(exc).__name__}: {exc}"}

    def cancel(self, request_id: int) -> None:
        import ray

        ref = self.refs.pop(request_id, None)
        if ref is not None:  # force: kill the Ray worker (and with it the sandbox below it)
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[bytes | None] = asyncio.Queue()

        def read_stdin() -> None:
            for raw in sys.stdin.buffer:
                loop.call_soon_threadsafe(lines.put_nowait, raw)
            loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=read_stdin, daemon=True).start()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, lines.put_nowait, None)
        running: set[asyncio.Task] = set()
        while (raw := await lines.get()) is not None:
            message = _parse(raw)
            if "cancel" in message:
                self.cancel(int(message["cancel"]))
            elif "id" in message:
                ref = self.submit(
                    int(message["id"]),
                    str(message["text"]),
                    str(message.get("label", "candidate")),
                    str(message.get("entry", "evaluate")),
                )
                task = asyncio.ensure_future(self.finish(int(message["id"]), ref))
                running.add(task)
                task.add_done_callback(running.discard)
        for request_id in list(self.refs):
            self.cancel(request_id)


def driver_main(argv: list[str]) -> int:
    """The driver process (`python -c _DRIVER_COMMAND PLAN_JSON`): connect, warm up, serve."""
    plan = json.loads(argv[0])
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # Ray's own prints must not corrupt the protocol
    lock = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with lock:
            protocol.write(json.dumps(message) + "\n")

    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="ray driver %(process)d: %(levelname)s %(message)s"
    )
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != plan["parent"]:
        return 1
    address = plan["address"] or "a new local Ray"
    driver = _Driver(plan, send)
    try:
        ready = driver.connect()
    except BaseException as exc:  # ConnectionError, AuthenticationError, runtime_env packing...
        hint = ""
        if "auth" in f"{type(exc).__name__} {exc}".lower():
            hint = (
                " (this cluster uses token authentication: set RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH for evoengine; see docs/ray.md)"
            )
        send(
            {
                "error": f"cannot connect to the Ray cluster at {address}: "
                f"{type(exc).__name__}: {_first_line(str(exc))}{hint}",
                "kind": "connect",
            }
        )
        return 1
    import ray

    warm: dict[str, Any] = {"ready": True}
    if not ready["warnings"]:  # else no node can run it yet: it would wait, not tell
        try:  # warm one evaluation up: a problem that cannot start on a node fails here
            t0 = time.monotonic()
            warm = ray.get(driver.submit(None, None, "warm-up"), timeout=START_TIMEOUT_S - 30)
            log.info("warm-up on node %s took %.1f s", warm.get("node"), time.monotonic() - t0)
        except Exception as exc:
            warm = {"failed": "setup", "message": f"{type(exc).__name__}: {exc}"}
    if not warm.get("ready"):
        send(
            {
                "error": f"the problem cannot be evaluated on the Ray cluster at {address} "
                f"(node {warm.get('node', '?')}): {warm.get('message', warm)}",
                "kind": "problem",
            }
        )
        ray.shutdown()
        return 1
    send({"ready": True, "isolation": warm.get("isolation", ""), **ready})
    try:
        asyncio.run(driver.serve())
    finally:
        ray.shutdown()
    return 0
