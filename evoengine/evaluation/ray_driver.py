"""The Ray driver: the process that holds the Ray client for `RayPool` (ray_backend.py says why).

Started with a plan (JSON) as its one argument: it connects to (or starts) Ray, warms one
evaluation up, then turns request lines on stdin into Ray tasks (`ray_node.evaluate_on_node`)
and their outcomes into reply lines on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from .protocol import Channel, parse_reply
from .ray_node import evaluate_on_node

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # starting a local Ray takes ~30 s on 2 cores; a warm-up task more
SHIP_EXCLUDES = ["__pycache__", "*.pyc", ".git", ".pytest_cache", "runs"]
# A private local Ray listens on loopback only. Not 127.0.0.1: Ray replaces that address with
# the machine's network address; any other address of 127.0.0.0/8 is loopback on Linux too.
LOCAL_RAY_IP = "127.0.0.2"


def first_line(text: str) -> str:
    return text.splitlines()[0] if text else "no details"


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
        quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
        if plan["address"]:
            ray.init(address=plan["address"], runtime_env=runtime_env, **quiet)
        else:  # a private Ray on this machine (loopback only), never someone else's running one
            # Keep a warm Ray worker per slot (+1 for the warm-up) even with fractional
            # ray.num_cpus; Ray's default keeps one idle worker per CPU.
            soft_limit = max(int(plan["slots"]) + 1, os.cpu_count() or 1)
            ray.init(
                address="local",
                runtime_env=runtime_env,
                include_dashboard=False,
                object_store_memory=256 * 2**20,
                _node_ip_address=LOCAL_RAY_IP,
                _system_config={"num_workers_soft_limit": soft_limit},
                **quiet,
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
            message = parse_reply(raw)
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


def main(argv: list[str]) -> int:
    """The driver process (protocol.BOOT runs it): connect, warm up, serve."""
    plan = json.loads(argv[0])
    send = Channel("ray driver").send  # Ray's own prints go to stderr
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
        error = f"cannot connect to the Ray cluster at {address}: {type(exc).__name__}: {first_line(str(exc))}{hint}"
        send({"error": error, "kind": "connect"})
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
        where = f"the Ray cluster at {address} (node {warm.get('node', '?')})"
        send({"error": f"the problem cannot be evaluated on {where}: {warm.get('message', warm)}", "kind": "problem"})
        ray.shutdown()
        return 1
    send({"ready": True, "isolation": warm.get("isolation", ""), "missing": warm.get("missing", []), **ready})
    try:
        asyncio.run(driver.serve())
    finally:
        ray.shutdown()
    return 0
