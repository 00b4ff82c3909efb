"""`EvaluatorPool`: a fixed number of warm worker processes that score candidates concurrently.

The engine awaits `pool.evaluate(text)` from as many tasks as it likes; each call waits for an
idle slot, hands the text to that slot's worker (see `worker.py`) and returns its
`EvalResult`. Nothing a candidate does makes `evaluate` raise: the worker turns crashes,
timeouts and kills into invalid results, and if the worker itself dies or stops answering
(its own timeout plus a grace period), the pool kills it and everything below it, returns an
invalid result, and starts a fresh worker for the next candidate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import EvoError, ProblemError
from ..files import remove_stale_folders
from ..problem import EvalResult
from .helper import Helper
from .protocol import boot_command, helper_env
from .sandbox import Limits, sandbox_uid
from .view import View, bubblewrap_command, bubblewrap_works, plan_view, sandbox_env

if TYPE_CHECKING:
    from .early import EarlyWorker

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
_TMP_PREFIX = "evoengine-eval-"  # + the pool's pid + "-" + random


@dataclass
class PoolStats:
    """Counters for benchmarks and the run log. `cpu_s` counts workers and their children."""

    evaluations: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    worker_restarts: int = 0

    def add(self, reply: dict[str, Any]) -> None:
        """Count one evaluation's reply (its `wall_s`, `cpu_s`; a Ray task's `restarts`)."""
        self.evaluations += 1
        self.wall_s += float(reply.get("wall_s", 0.0))
        self.cpu_s += float(reply.get("cpu_s", 0.0))
        self.worker_restarts += int(reply.get("restarts", 0))


class _WorkerLost(Exception):
    """The worker died, hung, or broke the protocol; it must be killed and replaced."""


@dataclass(frozen=True)
class Launch:
    """What is fixed once a worker process runs: its command line (its sandbox, when bubblewrap
    makes it), environment, folder and inherited descriptors. The rest of its arguments (the
    pool's `job`) go to it on stdin, so it can start before they are known (early.py)."""

    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    pass_fds: tuple[int, ...] = ()


def launch_spec(slot_dir: Path, env_names: Iterable[str], bwrap: list[str], models_fd: int | None) -> Launch:
    """How the worker of the slot in `slot_dir` starts: under `bwrap` if not [], with the
    environment's allow-list and `env_names`, holding `models_fd` if the run has the proxy."""
    mode = ["--bwrap", "root" if "--unshare-user" not in bwrap else "user"] if bwrap else []
    env = helper_env({**sandbox_env(env_names), "HOME": str(slot_dir)})
    fds = (models_fd,) if models_fd is not None else ()
    command = (*bwrap, *boot_command("evoengine.evaluation.worker", *mode))
    return Launch(command, tuple(sorted(env.items())), str(slot_dir), fds)


def new_folder() -> Path:
    """A pool's temporary folder (its slots' folders go in it)."""
    root = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-"))
    root.chmod(0o711)
    return root


def slot_folder(root: Path, index: int) -> Path:
    """Slot `index`'s folder in `root`, empty."""
    folder = root / f"slot-{index}"
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    folder.chmod(0o711)
    return folder


class _Slot(Helper):
    """One worker process and its private temporary folder."""

    def __init__(self, pool: EvaluatorPool, index: int) -> None:
        super().__init__(f"slot {index}")
        self.pool = pool
        self.index = index
        self.dir = pool._tmp_root / f"slot-{index}"
        self.isolation = ""
        self.missing: list[str] = []  # protections the worker could not set up

    async def start(self, first: Helper | None = None) -> None:
        """Start its worker (or take `first`, launched as this slot's would be) and hand it its job."""
        pool = self.pool
        if first is not None:
            self.take_over(first)
        else:
            spec = pool.launch(self)
            slot_folder(pool._tmp_root, self.index)
            await self.launch(list(spec.command), dict(spec.env), cwd=spec.cwd, pass_fds=spec.pass_fds)
        self.send(pool.job(self))
        message = await self.first_message(START_TIMEOUT_S)
        if message.get("ready"):
            self.isolation = str(message.get("isolation", ""))
            self.missing = [str(m) for m in message.get("missing", [])]
            return
        await self.stop(grace_s=0.0)
        if message.get("kind") == "problem":
            raise ProblemError(str(message["error"]))
        if pool.bwrap:  # bubblewrap ran, but the worker could not work inside it: do without
            log.info("slot %d: the worker cannot run under bubblewrap here (%s); trying without", self.index, message)
            pool.bwrap = []
            return await self.start()
        tail = self.last_words(40)
        raise ProblemError(
            f"{pool.problem_path}: the evaluation worker failed to start" + (f":\n{tail}" if tail else " (no output)")
        )

    async def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(message)
        try:
            reply = await self.receive(timeout)
        except asyncio.TimeoutError:
            raise _WorkerLost(f"did not answer within {timeout:g} s") from None
        if reply is None:
            await asyncio.sleep(0.05)  # let the exit status arrive
            raise _WorkerLost(f"exited unexpectedly (status {self.proc.returncode})")
        if reply.get("id") != message["id"] or not isinstance(reply.get("result"), dict):
            raise _WorkerLost("sent a malformed reply")
        return reply


class ModelAccess(Protocol):
    """The engine's evaluator model proxy as the pool sees it (llm/proxy.py: `ModelProxy`)."""

    fd: int  # a descriptor of the proxy's folder, handed to every worker
    names: list[str]

    def grant(self, proposal: int | None, label: str) -> str: ...

    def revoke(self, token: str) -> Any: ...


class EvaluatorPool:
    """`slots` warm workers for the problem file `problem_path`, each enforcing `limits`.

    `hide` names folders (the run directory, say) that evaluations must not see even if they
    lie inside a path the view binds (the problem folder, a folder on sys.path); `models`
    is the evaluator models' proxy, reachable by each evaluation with a token of its own;
    `early` a first worker started before the pool (early.py), taken if it was launched as
    the pool would launch it."""

    def __init__(
        self,
        problem_path: Path,
        slots: int,
        limits: Limits,
        *,
        hide: Iterable[Path] = (),
        models: ModelAccess | None = None,
        early: EarlyWorker | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1 (got {slots})")
        self.problem_path = Path(problem_path).resolve()
        self.slots = slots
        self.limits = limits
        self.hide = tuple(hide)
        self.models = models
        self.early = early  # a first worker launched before the run was known (early.py), to take if it fits
        self.view: View | None = None  # the filesystem view (None: isolation "basic")
        self.bwrap: list[str] = []  # bubblewrap's command line, where it works
        self.stats = PoolStats()
        # How long past its own timeout a worker may take to answer before it is replaced.
        self.backstop_s = 5.0 + 0.1 * limits.timeout_s
        self._tmp_root = Path(".")
        self._slots: list[_Slot] = []
        self._idle: asyncio.Queue[_Slot] | None = None
        self._booting: asyncio.Future | None = None  # the workers after the first, starting
        self._next_id = 0

    @property
    def isolation(self) -> str:
        """What the sandbox could set up on this machine (as the first worker reported it)."""
        return self._slots[0].isolation if self._slots else ""

    @property
    def missing(self) -> list[str]:
        """The protections the sandbox could not set up on this machine (see `Isolation.missing`)."""
        return self._slots[0].missing if self._slots else []

    def launch(self, slot: _Slot) -> Launch:
        """How `slot`'s worker is started (under bubblewrap where it works)."""
        return launch_spec(slot.dir, self.limits.env, self.bwrap, self.models.fd if self.models is not None else None)

    def job(self, slot: _Slot) -> list[str]:
        """The rest of `slot`'s worker's arguments, sent once it runs."""
        args = ["--problem", str(self.problem_path), "--limits", self.limits.to_json()]
        args += ["--slot-dir", str(slot.dir), "--uid", str(sandbox_uid(slot.index, os.getpid()))]
        if self.view is not None:
            args += ["--view", self.view.to_json()]
        if self.models is not None:
            args += ["--models-fd", str(self.models.fd)]
        return args

    def worker_pids(self) -> list[int]:
        return [s.pid for s in self._slots if s.pid is not None]

    async def start(self) -> None:
        """Start the first worker (ProblemError if the problem cannot be imported in it); the
        others boot in the background, as many at a time as there are spare cores, and join
        the pool as each is ready: evaluations can begin after one interpreter's start-up."""
        remove_stale_folders(_TMP_PREFIX)
        early, self.early = self.early, None
        self._tmp_root = early.hand_over_folder() if early is not None else new_folder()
        self._slots = [_Slot(self, i) for i in range(self.slots)]
        if self.limits.isolation != "basic":
            self.view = plan_view(self.problem_path.parent, self.hide, self.limits.max_file_mb, self.limits.reads)
        if self.view is not None and self.limits.isolation == "auto":
            self.bwrap = bubblewrap_command(self.view, self.limits.network)
        # The early worker if it was launched exactly as ours would be (it then also tells
        # whether bubblewrap works here); else it is killed and bubblewrap is tried first.
        first = await early.take(self.launch(self._slots[0])) if early is not None else None
        if first is None and self.bwrap and not await bubblewrap_works(self.bwrap):
            self.bwrap = []
        try:
            await self._slots[0].start(first)
        except BaseException as exc:
            await self.close()
            if isinstance(exc, (EvoError, asyncio.CancelledError)):
                raise
            raise EvoError(f"{self.problem_path}: the evaluation worker failed to start: {exc}") from exc
        self._idle = asyncio.Queue()
        self._idle.put_nowait(self._slots[0])
        self._booting = asyncio.ensure_future(self._boot(self._slots[1:]))
        log.info("evaluation pool: %d workers, sandbox: %s", self.slots, self.isolation)
        if self.missing:
            log.warning("sandbox: these protections are off on this machine: %s", "; ".join(self.missing))

    async def _boot(self, slots: list[_Slot]) -> None:
        spare_cores = asyncio.Semaphore(max(1, (os.cpu_count() or 2) - 1))  # one is the engine's

        async def boot(slot: _Slot) -> None:
            async with spare_cores:
                try:
                    await slot.start()
                except Exception as exc:  # noqa: BLE001 - evaluate() starts it again, and reports
                    log.warning(
                        "slot %d: the evaluation worker failed to start (%s); trying again at its first evaluation",
                        slot.index,
                        exc,
                    )
            if self._idle is not None:
                self._idle.put_nowait(slot)

        await asyncio.gather(*(boot(slot) for slot in slots))

    async def evaluate(
        self, text: str, *, label: str = "candidate", entry: str = "evaluate", proposal: int | None = None
    ) -> EvalResult:
        """Score one candidate text with the problem's function `entry` (`evaluate`, or another
        such as `minibatch`); its evaluator model calls are recorded for `proposal`. Never
        raises for anything the candidate does."""
        idle = self._idle
        if idle is None:
            raise RuntimeError("EvaluatorPool.start() must be awaited before evaluate()")
        slot = await idle.get()
        token = self.models.grant(proposal, label) if self.models is not None else None
        try:
            if slot.pid is None:
                await slot.start()
                self.stats.worker_restarts += 1
            self._next_id += 1
            message = {"id": self._next_id, "text": text, "label": label, "entry": entry}
            if token is not None:
                message["models"] = {"token": token, "names": self.models.names}
            try:
                reply = await slot.request(message, self.limits.timeout_s + self.backstop_s)
            except _WorkerLost as exc:
                tail = slot.last_words(10)
                log.warning(
                    "slot %d: worker %s while evaluating %s; restarting it%s",
                    slot.index,
                    exc,
                    label,
                    f"\n{tail}" if tail else "",
                )
                await slot.stop(grace_s=0.0)
                return EvalResult.invalid(f"the evaluation worker {exc}; it and everything it started were killed")
            except BaseException:  # cancelled mid-evaluation: the worker's state is unknown
                slot.kill_now()
                raise
            self.stats.add(reply)
            return EvalResult.coerce(reply["result"])
        finally:
            if token is not None:  # the evaluation is over: so is its right to ask
                self.models.revoke(token)
            idle.put_nowait(slot)

    async def close(self) -> None:
        """Stop every worker and remove every temporary folder. Safe to call twice."""
        if self.early is not None:  # never started
            await self.early.close()
            self.early = None
        if self._booting is not None:
            self._booting.cancel()
            await asyncio.gather(self._booting, return_exceptions=True)
        await asyncio.gather(*(s.stop(grace_s=2.0) for s in self._slots), return_exceptions=True)
        self._idle = None
        if self._tmp_root != Path("."):
            shutil.rmtree(self._tmp_root, ignore_errors=True)

    async def __aenter__(self) -> EvaluatorPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
