"""The asynchronous search loop.

`Engine` keeps `concurrency.proposals` proposals and `concurrency.evaluations` evaluations
in flight, admits each finished candidate in one store transaction, and stops on a budget
(candidates, wall time, money) or on Ctrl-C / SIGTERM. Everything in memory (islands,
MAP-Elites, novelty index, bandit) is derived from the store: on resume it is rebuilt by
replaying the admitted candidates in order, so a run killed at any moment continues with
nothing admitted lost.

Each proposal draws its randomness from its own `random.Random(f"{seed}:{proposal id}")`,
so there is no RNG state to save and no two proposals share a stream.
"""

from __future__ import annotations

import ast
import asyncio
import collections
import hashlib
import json
import logging
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from . import __version__
from .archive import Archive
from .config import Config, load_config
from .errors import ConfigError, EvoError, ModelError, ProblemError, StoreError
from .evaluation import EvaluatorPool, Limits
from .llm.replay import current_proposal
from .novelty import Novelty
from .operators import Proposer
from .patches import PatchError, evolve_blocks
from .problem import EvalResult, LoadedProblem, load_problem
from .records import Candidate, ModelCall, Proposal, ProposalContext, ProposalFailed
from .store import RunStore

log = logging.getLogger(__name__)

STATE_EVERY_S = 2.0  # how often the status snapshot (archive/bandit/novelty stats) is rewritten


@dataclass
class RunSummary:
    run_dir: Path
    admitted: int
    valid: int
    seed_score: float | None
    best: Candidate | None
    stopped: str  # "budget", "wall time", "money", "interrupted", "failing"
    elapsed_s: float
    spend: float
    best_path: Path | None = None
    message: str = ""


@dataclass
class _Child:
    proposal: Proposal
    pid: int
    island: int
    parents: list[Candidate]
    timings: dict[str, float] = field(default_factory=dict)


def new_run_dir(root: Path, problem_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}-{problem_name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    return path


def build_proposer(config: Config, loaded: LoadedProblem, harness: Any = None) -> Proposer:
    """Models (with the offline operators as an arm if asked), or the offline operators alone;
    either way under the harness's policy (`harness`, or the one the config names)."""
    from .harness import load_harness
    from .operators.offline import OfflineProposer
    from .operators.text import TextProposer

    harness = harness if harness is not None else load_harness(config)
    if loaded.problem.language == "python":
        offline: Proposer = OfflineProposer(policy=getattr(harness, "offline", None))
    else:  # prompts and other text: line operators (the harness's offline policy is Python-only)
        offline = TextProposer()
    if not config.models and not config.replay:
        return offline
    from .operators.llm import ModelProposer

    return ModelProposer(
        config, loaded.problem, offline=offline if config.operators.offline_arm else None, harness=harness
    )


def make_pool(loaded: LoadedProblem, config: Config, run_dir: Path | None = None):
    """The evaluator pool the config asks for: local sandboxes, or Ray tasks (same contract)."""
    limits = Limits.from_config(loaded.problem, config.evaluation)
    if config.evaluation.backend == "ray":
        from .evaluation.ray_backend import RayPool

        return RayPool(loaded.path, config.concurrency.evaluations, limits, config.ray, run_dir=run_dir)
    return EvaluatorPool(loaded.path, config.concurrency.evaluations, limits)


JUDGE_SYSTEM = (
    "You compare two candidate programs. Answer NOVEL if the new one does something meaningfully "
    "different from the existing one (another algorithm, structure or idea), or NOT_NOVEL if it is "
    "essentially the same with cosmetic or trivial changes. Answer with that one word."
)


def judge_says_novel(reply: str) -> bool:
    """Read a judge's verdict however it is spelled (NOT_NOVEL, not novel, Not-Novel...)."""
    words = " ".join(reply.upper().replace("_", " ").replace("-", " ").split())
    return "NOVEL" in words and "NOT NOVEL" not in words


def improvement_reward(
    child: Candidate, parent_score: float | None, seed_score: float | None, best_score: float | None
) -> float:
    """The child's improvement over its parent, scaled by the run's progress so far, in [0, 1]."""
    if not child.valid or child.score is None:
        return 0.0
    if parent_score is None:
        return 1.0
    spread = abs((best_score if best_score is not None else parent_score) - (seed_score or 0.0))
    spread = max(spread, 1e-9 * max(1.0, abs(parent_score)))
    return float(min(1.0, max(0.0, (child.score - parent_score) / spread)))


class Engine:
    """One run: its store, problem, archive, proposer and evaluators."""

    def __init__(
        self,
        run_dir: Path,
        config: Config,
        loaded: LoadedProblem,
        store: RunStore,
        *,
        progress: bool = False,
        imports: list[Candidate] | None = None,
        harness: Any = None,
    ):
        self.run_dir = run_dir
        self.config = config
        self.loaded = loaded
        self.problem = loaded.problem
        self.store = store
        self.progress = progress
        self.imports = imports or []
        self.archive = Archive(config, self.problem)
        self.harness = harness
        self.proposer: Proposer = None  # type: ignore[assignment]  # built at start-up (`_prepare`)
        self.novelty: Novelty | None = None
        self.offline_only = not config.models and not config.replay
        self.pool = make_pool(loaded, config, run_dir)
        self.admitted = 0
        self.valid = 0
        self.spend = 0.0
        self.seed_score: float | None = None
        self.best: Candidate | None = None
        self.novelty_rejections = 0
        self.seen: set[bytes] = set()  # digests of every evaluated text
        self.failed_in_a_row = 0
        self.failures: dict[int, collections.deque[str]] = collections.defaultdict(lambda: collections.deque(maxlen=5))
        self._stop: str | None = None
        self._elapsed_before = float(store.get_state("elapsed_s", 0.0))
        self._started_at = time.monotonic()
        self._last_state = 0.0
        self._bar: tqdm | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closed = 0  # proposals closed (admitted or failed), seeds included: the schedule's clock
        self._schedule: dict[int, Any] | None = None  # a recorded run's schedule, when replaying one
        self._next_pid = 0  # the id the next proposal gets (kept while replaying a schedule)
        self._at_start = 0  # pipelines not yet given their first proposal id (replaying a schedule)
        self._proposing = 0  # pipelines in their proposing phase
        self._queued = 0  # children waiting for an evaluation slot
        self._changed: asyncio.Future | None = None  # resolved when a pipeline moves on (`_notify`)
        self._replaying = False
        self._gate_scores: dict[int, asyncio.Future[float | None]] = {}  # minibatch scores by id

    # ------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        problem: str | Path,
        config: Config,
        *,
        run_dir: Path | None = None,
        from_run: Path | None = None,
        progress: bool = False,
        harness: Any = None,
    ) -> Engine:
        loaded = load_problem(problem)
        try:
            evolve_blocks(loaded.problem.seed_text(), loaded.problem.comment)
        except PatchError as exc:
            raise ProblemError(f"{loaded.problem.initial_path}: {exc}") from exc
        imports = _imports_from(Path(from_run), config.islands.count) if from_run else []
        run_dir = Path(run_dir) if run_dir else new_run_dir(Path("runs"), loaded.problem.name)
        if (run_dir / "archive.sqlite").exists():
            raise StoreError(
                f"{run_dir} already holds a run: resume it with `evoengine resume {run_dir}` or pick a new --run-dir"
            )
        try:  # the config first: a store without its config could not be resumed
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(run_dir / "config.yaml", yaml.safe_dump(config.dump(), sort_keys=False))
        except OSError as exc:
            raise StoreError(f"cannot write to run directory {run_dir}: {exc}; choose another with --run-dir") from exc
        store = RunStore.create(
            run_dir,
            {
                "problem": loaded.problem.name,
                "problem_path": str(loaded.path),
                "evoengine_version": __version__,
                "from_run": str(from_run) if from_run else None,
            },
        )
        return cls(run_dir, config, loaded, store, progress=progress, imports=imports, harness=harness)

    @classmethod
    def reopen(
        cls, run_dir: Path, *, budget: int | None = None, overrides: tuple[str, ...] = (), progress: bool = False
    ) -> Engine:
        run_dir = Path(run_dir)
        store = RunStore.open(run_dir)
        meta = store.meta()
        config_path = run_dir / "config.yaml"
        try:
            saved = yaml.safe_load(config_path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"{config_path} cannot be read: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
        extra = [*overrides, *([f"budget.candidates={budget}"] if budget else [])]
        config = load_config(None, extra, base=saved, base_source=str(config_path))
        try:
            loaded = load_problem(meta["problem_path"])
        except ProblemError as exc:
            raise ProblemError(f"this run's problem (recorded as {meta['problem_path']}): {exc}") from exc
        if extra:
            _write_atomic(run_dir / "config.yaml", yaml.safe_dump(config.dump(), sort_keys=False))
        return cls(run_dir, config, loaded, store, progress=progress)

    # ------------------------------------------------------------ the run

    async def run(self) -> RunSummary:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop, "interrupted")
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        message = ""
        try:
            await self._start_up()
            self._open_bar()
            await self._search()
        except EvoError as exc:
            if self._stop != "failing":
                raise
            message = str(exc)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
            await self._shutdown()
        return self._summary(message)

    async def _start_up(self) -> None:
        """Everything before the search, overlapped: the first evaluation worker boots in its
        own process while this one builds the proposer in a thread (importing the model client
        is most of a second), and scores the seeds as soon as the worker is up; the seeds are
        admitted only once the models have passed their pre-flight check."""
        fresh = self.store.counts()["evaluated"] == 0
        steps: list[asyncio.Future] = []

        def begin(work: Any) -> asyncio.Future:
            steps.append(asyncio.ensure_future(work))
            return steps[-1]

        try:
            booting = begin(self.pool.start())
            preparing = begin(asyncio.to_thread(self._prepare, self.problem.seed_text() if fresh else None))
            await booting
            scoring = begin(self._score_seeds()) if fresh else None
            await preparing
            start = getattr(self.proposer, "start", None)
            if start is not None:
                await start()  # a refused key or a dead endpoint stops the run here
            abandoned = self.store.abandon_pending()
            if abandoned:
                log.info("%d proposals that were in flight when the run stopped will be made again", abandoned)
            self._replay()
            if self.best is not None:  # a kill may have come between admission and best/
                self._write_best()
            if scoring is not None and self.admitted == 0:
                self._admit_seeds(await scoring)
            if self.config.replay:
                self._schedule = recorded_schedule(Path(self.config.replay))
                self._next_pid = self.store.next_id()
        except BaseException:
            pending = [step for step in steps if not step.done()]
            for step in pending:
                step.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise

    def _prepare(self, seed_text: str | None) -> None:
        """The CPU-bound part of start-up (run in a thread): proposer, novelty filter, and for a
        new run the MAP-Elites cells, which depend only on the seed's text."""
        self.proposer = build_proposer(self.config, self.loaded, self.harness)
        if self.config.novelty.enabled:
            self.novelty = Novelty(self.config.novelty, judge=self._judge())
        if seed_text is not None:
            self.archive.anchor(seed_text)

    def request_stop(self, reason: str) -> None:
        if self._stop is None:
            self._stop = reason
            log.info("stopping: %s", reason)
        for task in self._tasks:
            task.cancel()

    async def _search(self) -> None:
        """Start a pipeline (propose, evaluate, admit) whenever too few are proposing to keep the
        model slots busy, never waiting on evaluations; children waiting for an evaluation slot
        hold new proposals back once `concurrency.evaluations` of them queue (evaluation is then
        the bottleneck). Deterministic runs have one pipeline at a time."""
        self._eval_slots = asyncio.Semaphore(self.config.concurrency.evaluations)
        while True:
            self._check_budgets()
            while self._stop is None and self._room() > 0 and self._may_start():
                self._proposing += 1
                self._at_start += self._schedule is not None
                self._tasks.add(asyncio.create_task(self._pipeline()))
            if not self._tasks:
                if self._stop is None:
                    self._stop = "budget"
                return
            done, _ = await asyncio.wait(
                {*self._tasks, self._next_change()}, timeout=self._wake_in(), return_when=asyncio.FIRST_COMPLETED
            )
            for task in done & self._tasks:
                self._tasks.discard(task)
                if not task.cancelled() and task.exception() is not None:
                    self.request_stop("error")
                    await asyncio.gather(*self._tasks, return_exceptions=True)
                    raise task.exception()

    def _may_start(self) -> bool:
        conc = self.config.concurrency
        if self._schedule is not None:  # the recorded schedule says when each proposal starts
            return self._at_start == 0 and self._next_pid in self._schedule
        if conc.deterministic:
            return not self._tasks
        # One proposal more than there are model slots (the model pool caps requests out at
        # `proposals`): its prompt is ready when a slot frees, so the slot is taken at once.
        return self._proposing < conc.proposals + 1 and self._queued < conc.evaluations

    def _notify(self) -> None:
        """A pipeline moved on (changed phase, or a proposal started or closed): the search
        loop and whoever waits for the schedule look again."""
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    def _next_change(self) -> asyncio.Future:
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def _room(self) -> int:
        cap = self.config.budget.candidates
        if cap is None:
            return 1
        return cap - self.admitted - (0 if self._schedule is not None else len(self._tasks))

    def _wake_in(self) -> float | None:
        wall = self.config.budget.wall_time_s
        return None if wall is None else max(0.05, wall - self.elapsed())

    def elapsed(self) -> float:
        return self._elapsed_before + time.monotonic() - self._started_at

    def _check_budgets(self) -> None:
        budget = self.config.budget
        if self._stop:
            return
        if budget.wall_time_s is not None and self.elapsed() >= budget.wall_time_s:
            self.request_stop("wall time")
        elif budget.cost_usd is not None and self.spend >= budget.cost_usd:
            self.request_stop("money")

    # ------------------------------------------------------------ one candidate's way

    async def _pipeline(self) -> None:
        try:
            child = await self._propose()
        finally:
            self._proposing -= 1
            self._notify()
        if child is None:
            return
        self._queued += 1
        try:
            await self._eval_slots.acquire()
        finally:
            self._queued -= 1
            self._notify()
        try:
            gated = await self._gate(child)
            t0 = time.monotonic()
            result = gated or await self.pool.evaluate(child.proposal.text, label=f"candidate {child.pid}")
            child.timings["eval_s"] = time.monotonic() - t0
            if gated is None and "gate_score" in child.proposal.meta:
                result.metrics.setdefault("gate_score", child.proposal.meta["gate_score"])
        finally:
            self._eval_slots.release()
        await self._closing_turn(child.pid)
        self._admit(child, result)

    async def _gate(self, child: _Child) -> EvalResult | None:
        """The cheap minibatch gate, for problems that define `minibatch(candidate_path)` (and
        `evaluation.gate` on): the child is scored by `minibatch` first and, unless it beats its
        parent's minibatch score, gets this invalid result instead of the full evaluation.
        None: passed (its score goes to `proposal.meta["gate_score"]`, then its metrics).
        Minibatch scores are cached in memory by candidate id, so a parent is scored once."""
        if not self.config.evaluation.gate or not callable(getattr(self.loaded.module, "minibatch", None)):
            return None
        cache = self._gate_scores

        async def minibatch(text: str, label: str) -> EvalResult:
            return await self.pool.evaluate(text, label=f"{label} (minibatch)", entry="minibatch")

        async def score(text: str, label: str) -> float | None:
            result = await minibatch(text, label)
            return result.score if result.valid else None

        def resolved(value: float | None) -> asyncio.Future[float | None]:
            future = asyncio.get_running_loop().create_future()
            future.set_result(value)
            return future

        parent = child.parents[0]
        if parent.id not in cache:  # the seed's, or after a resume; a passed child's is known
            known = parent.metrics.get("gate_score")
            cache[parent.id] = (
                resolved(known)
                if known is not None
                else asyncio.ensure_future(score(parent.text, f"parent {parent.id}"))
            )
        t0 = time.monotonic()
        result = await minibatch(child.proposal.text, f"candidate {child.pid}")
        mine = result.score if result.valid else None
        theirs = await asyncio.shield(cache[parent.id])
        child.timings["gate_s"] = time.monotonic() - t0
        if mine is not None and (theirs is None or mine > theirs):
            cache[child.pid] = resolved(mine)
            child.proposal.meta["gate_score"] = mine
            return None
        metrics = {k: v for k, v in (("gate_score", mine), ("parent_gate_score", theirs)) if v is not None}
        said = f"scored {mine:.6g}" if mine is not None else "was invalid"
        why = "" if result.valid else f"\n{result.feedback}"
        return EvalResult(
            score=None,
            valid=False,
            metrics=metrics,
            feedback=(
                f"gate: {said} on the minibatch, not above its parent's "
                f"{'(invalid)' if theirs is None else format(theirs, '.6g')}; not evaluated in full{why}"
            ),
        )

    def _record_call(self, pid: int | None, call: ModelCall) -> None:
        self.store.record_call(pid, call)
        self.spend += call.cost
        budget = self.config.budget.cost_usd
        if budget is not None and self.spend >= budget:
            self.request_stop("money")

    # ------------------------------------------------------------ the schedule

    def _close_one(self) -> int:
        """Count one more closed proposal; its number in the closing order."""
        self._closed += 1
        self._notify()
        return self._closed

    async def _until(self, ready: Any) -> None:
        """Wait until `ready()`, re-checked whenever a proposal starts or closes."""
        limits = getattr(self.pool, "limits", None)
        patience = (limits.timeout_s if limits is not None else 600.0) + 60.0
        while not ready():
            try:
                await asyncio.wait_for(asyncio.shield(self._next_change()), patience)
            except asyncio.TimeoutError:
                pid = self._next_pid
                record = self._schedule.get(pid) if self._schedule is not None else None
                raise ModelError(
                    self._diverged(
                        f"nothing moved for {patience:g} s ({self._closed} proposals closed; proposal {pid} "
                        f"started there after {record['basis'] if record else '-'})"
                    )
                ) from None

    def _diverged(self, what: str) -> str:
        return (
            f"replay of {self.config.replay}: {what}; the replayed run has diverged from the recorded "
            f"one: use the same problem, config and seed, or drop `replay:` to call the endpoint"
        )

    async def _start_turn(self, attempt: int) -> int | None:
        """A new proposal id. Replaying a recorded schedule, wait until as many proposals are
        closed as were when the recorded run started this one (a retry after a novelty
        rejection takes the id recorded for that retry); None when it started no more."""
        if self._schedule is None:
            return self.store.start_proposal(0, basis=self._closed, attempt=attempt)
        try:
            while True:
                pid = self._next_pid
                record = self._schedule.get(pid)
                if record is None:
                    return None
                basis = record["basis"]
                if basis < self._closed:
                    raise ModelError(
                        self._diverged(
                            f"proposal {pid} started after {basis} proposals were closed there, "
                            f"after {self._closed} here"
                        )
                    )
                if basis == self._closed and (
                    record["status"] in ("pending", "abandoned") or record["attempt"] == attempt
                ):
                    self.store.start_proposal(0, basis=basis, attempt=record["attempt"])
                    self._next_pid += 1
                    self._notify()
                    if record["status"] not in ("pending", "abandoned"):
                        return pid
                    # cut short there: left pending here too (abandoned when the run ends)
                elif basis > self._closed:
                    await self._until(lambda b=basis, i=pid: self._closed >= b or self._next_pid != i)
                else:  # its turn, but it is another proposal's retry
                    await self._until(lambda i=pid: self._next_pid != i)
        finally:
            if attempt == 0:  # the pipeline is past its start (counted when it was started)
                self._at_start -= 1
                self._notify()  # the search loop may start the next one

    async def _closing_turn(self, pid: int) -> None:
        """Replaying a recorded schedule, wait until proposal `pid` is the next to close there."""
        if self._schedule is None:
            return
        closed = self._schedule[pid]["closed"]
        if closed is None:
            raise ModelError(self._diverged(f"proposal {pid} was never finished there"))

        def started_all_before() -> bool:  # proposals started at this count start before it moves on
            record = self._schedule.get(self._next_pid)
            return record is None or record["basis"] > self._closed

        await self._until(lambda: self._closed + 1 >= closed and started_all_before())
        if self._closed + 1 != closed:
            raise ModelError(self._diverged(f"proposal {pid} closed {closed}th there"))

    async def _propose(self) -> _Child | None:
        """Select, propose and screen one child; a rejected near-duplicate is asked for again."""
        retries = self.config.novelty.max_retries if self.novelty else 0
        for attempt in range(retries + 1):
            pid = await self._start_turn(attempt)
            if pid is None:  # replaying: the recorded run made no more proposals
                return None
            current_proposal.set(pid)  # this task's model calls, when replayed, get pid's replies
            rng = random.Random(f"{self.config.seed}:{pid}")
            sel = self.archive.select(rng)
            ctx = ProposalContext(
                problem=self.problem,
                parent=sel.parent,
                inspirations=list(sel.inspirations),
                failures=list(self.failures[sel.island]),
                rng=rng,
                island=sel.island,
                record_call=lambda call, pid=pid: self._record_call(pid, call),
                attempt=attempt,
            )
            t0 = time.monotonic()
            try:
                proposal = await self.proposer.propose(ctx)
            except ProposalFailed as fail:
                await self._closing_turn(pid)
                self._fail(
                    pid, sel.island, fail.reason, fail.operator, fail.model, fail.parents or (sel.parent.id,), fail.cost
                )
                return None
            rejection = await self._screen(proposal, sel.island, pid)
            if rejection is not None:
                await self._closing_turn(pid)
                self.novelty_rejections += 1
                self.store.fail(
                    pid,
                    reason=f"novelty: {rejection}",
                    operator=proposal.operator,
                    model=proposal.model,
                    parents=proposal.parents,
                    cost=proposal.cost,
                    reward=0.0 if proposal.model else None,
                    island=sel.island,
                    closed=self._close_one(),
                )
                if proposal.model is not None:
                    self.proposer.observe(proposal.model, 0.0, proposal.cost)
                self._count_failure(f"novelty: {rejection}")
                continue
            parents = [sel.parent] + [c for c in sel.inspirations if c.id in proposal.parents[1:]]
            elapsed = time.monotonic() - t0
            return _Child(proposal, pid, sel.island, parents, {"propose_s": elapsed})
        return None

    async def _screen(self, proposal: Proposal, island: int, pid: int) -> str | None:
        """Why a child should not be evaluated, or None: it is the same program as one already
        evaluated (up to formatting and comments), or the novelty filter finds it too close
        to what its island has. Replaying a schedule, the recorded verdict: it depended on
        what had been admitted by the moment the original run screened the child."""
        if self._schedule is not None:
            record = self._schedule[pid]
            reason = record["reason"] or ""
            return reason.removeprefix("novelty: ") if reason.startswith("novelty: ") else None
        if self._normal_digest(proposal.text) in self.seen:
            return "the same program as an already evaluated candidate (up to formatting and comments)"
        if self.novelty is None:
            return None
        verdict = await self.novelty.check(proposal.text, island)
        return None if verdict.novel else verdict.reason

    def _normal_digest(self, text: str) -> bytes:
        if self.problem.language == "python":
            try:
                text = ast.dump(ast.parse(text))
            except (SyntaxError, ValueError, RecursionError):
                pass
        else:
            text = " ".join(text.split())
        return hashlib.blake2b(text.encode(), digest_size=16).digest()

    def _judge(self):
        """The novelty judge: the model `novelty.judge` names, asked whether a child that looks
        like a near-duplicate is really new. Its calls are recorded and paid like any other."""
        name = self.config.novelty.judge
        pool = getattr(self.proposer, "pool", None)
        if not name or pool is None:
            return None

        async def judge(child: str, nearest: str) -> bool:
            call = await pool[name].chat(
                [
                    {"role": "system", "content": JUDGE_SYSTEM},
                    {"role": "user", "content": f"Existing candidate:\n{nearest}\n\nNew candidate:\n{child}"},
                ],
                temperature=0.0,
                max_tokens=16,
                purpose="judge",
            )
            self._record_call(None, call)
            if call.error:
                raise ModelError(f"novelty judge {name}: {call.error}")
            return judge_says_novel(call.reply or "")

        return judge

    def _fail(
        self,
        pid: int,
        island: int,
        reason: str,
        operator: str,
        model: str | None,
        parents: tuple[int, ...],
        cost: float,
    ) -> None:
        self.store.fail(
            pid,
            reason=reason,
            operator=operator,
            model=model,
            parents=parents,
            cost=cost,
            reward=0.0 if model else None,
            island=island,
            closed=self._close_one(),
        )
        if model is not None:  # a model whose replies fail must look bad to the bandit
            self.proposer.observe(model, 0.0, cost)
        self.failures[island].append(f"{operator}: {reason}")
        self._count_failure(reason)

    def _count_failure(self, reason: str) -> None:
        """Stop a run whose proposals keep failing instead of spinning (or spending) forever."""
        self.failed_in_a_row += 1
        limit = max(25, 5 * (self.config.concurrency.proposals + self.config.concurrency.evaluations))
        if self.failed_in_a_row >= limit and self._stop is None:
            self.request_stop("failing")
            raise EvoError(
                f"the last {self.failed_in_a_row} proposals all failed; the latest: {reason}. "
                f"Every admitted candidate is kept; fix the cause and `evoengine resume {self.run_dir}`."
            )

    def _admit(self, child: _Child, result: EvalResult) -> None:
        p = child.proposal
        main = child.parents[0]
        candidate = Candidate(
            id=child.pid,
            text=p.text,
            parents=p.parents,
            island=child.island,
            generation=1 + max(c.generation for c in child.parents),
            operator=p.operator,
            model=p.model,
            score=result.score,
            valid=result.valid,
            metrics=result.metrics,
            features=result.features,
            feedback=result.feedback,
            artifacts=result.artifacts,
            instances=result.instances,
            timings=child.timings,
            cost=p.cost,
            change=p.change,
            created=time.time(),
        )
        reward = improvement_reward(
            candidate, main.score if main.valid else None, self.seed_score, self.best.score if self.best else None
        )
        self._commit(candidate, reward)
        if p.model is not None:
            self.proposer.observe(p.model, reward, p.cost)
        self.failed_in_a_row = 0
        if not candidate.valid:
            self.failures[candidate.island].append(f"candidate {candidate.id} invalid: {candidate.feedback[:300]}")

    def _commit(self, candidate: Candidate, reward: float | None) -> None:
        """Admit one evaluated candidate: store (one transaction), archive, novelty, best file."""
        events = [(e.kind, e.data) for e in self.archive.admit(candidate)]
        state: dict[str, Any] = {"elapsed_s": self.elapsed()}
        if time.monotonic() - self._last_state > STATE_EVERY_S:
            state.update(self._snapshot())
            self._last_state = time.monotonic()
        self.store.admit(candidate, reward=reward, events=events, state=state, closed=self._closed + 1)
        self._close_one()
        self._account(candidate)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(self._postfix(), refresh=False)

    def _account(self, candidate: Candidate) -> None:
        self.admitted += 1
        self.seen.add(self._normal_digest(candidate.text))
        if candidate.valid:
            self.valid += 1
            if self.novelty is not None:
                self.novelty.add(candidate)
            if self.best is None or candidate.fitness() > self.best.fitness():
                self.best = candidate
                if not self._replaying:
                    self._write_best()

    # ------------------------------------------------------------ seeds and replay

    def _seed_texts(self) -> list[tuple[str, str, str | None]]:
        """(text, operator, origin) of the seed and of the candidates imported with --from."""
        return [(self.problem.seed_text(), "seed", None)] + [(c.text, "import", c.origin) for c in self.imports]

    async def _score_seeds(self) -> list[tuple[EvalResult, float]]:
        async def score(text: str, label: str) -> tuple[EvalResult, float]:
            t0 = time.monotonic()
            result = await self.pool.evaluate(text, label=label)
            return result, time.monotonic() - t0

        return await asyncio.gather(
            *(
                score(text, f"{operator} {i}" if i else "seed")
                for i, (text, operator, _) in enumerate(self._seed_texts())
            )
        )

    def _admit_seeds(self, results: list[tuple[EvalResult, float]]) -> None:
        for index, ((text, operator, origin), (result, eval_s)) in enumerate(
            zip(self._seed_texts(), results, strict=True)
        ):
            pid = self.store.start_proposal(0, basis=self._closed)
            if index == 0 and not result.valid:
                raise ProblemError(
                    f"{self.problem.initial_path}: the seed scores invalid, so there is nothing to evolve "
                    f"from. Evaluator feedback:\n{result.feedback}\n"
                    f"Fix the seed (or the evaluator), then `evoengine resume {self.run_dir}`."
                )
            candidate = Candidate(
                id=pid,
                text=text,
                island=(index - 1) % self.config.islands.count if index else 0,
                operator=operator,
                score=result.score,
                valid=result.valid,
                metrics=result.metrics,
                features=result.features,
                feedback=result.feedback,
                artifacts=result.artifacts,
                instances=result.instances,
                timings={"eval_s": eval_s},
                origin=origin,
                created=time.time(),
            )
            if index == 0:
                self.seed_score = candidate.score
            self._commit(candidate, None)

    def _replay(self) -> None:
        """Rebuild archive, novelty index, bandit and counters from the store."""
        self._replaying = True
        try:
            for candidate in self.store.candidates():
                if self.admitted == 0:
                    self.seed_score = candidate.score
                self.archive.admit(candidate)
                self._account(candidate)
            for arm, reward, cost in self.store.rewards():
                if arm is not None and reward is not None:
                    self.proposer.observe(arm, reward, cost)
            for row in self.store.setbacks():  # the prompts' recent failures, as a live run has them
                self.failures[row["island"]].append(
                    f"{row['operator']}: {row['reason']}"
                    if row["status"] == "failed"
                    else f"candidate {row['id']} invalid: {(row['feedback'] or '')[:300]}"
                )
        finally:
            self._replaying = False
        self._closed = self.store.closed_count()
        self.spend = self.store.spend()
        self.novelty_rejections = self.store.count_failed("novelty:")

    # ------------------------------------------------------------ reporting

    def _snapshot(self) -> dict[str, Any]:
        bandit = self.proposer.stats() if self.proposer is not None else {}
        snap: dict[str, Any] = {"archive": self.archive.stats(), "bandit": bandit}
        snap["elites"] = self.archive.elite_map()
        if self.novelty is not None:
            snap["novelty"] = {**self.novelty.stats(), "rejections": self.novelty_rejections}
        return snap

    def _write_best(self) -> None:
        best = self.best
        assert best is not None
        folder = self.run_dir / "best"
        folder.mkdir(exist_ok=True)
        path = folder / f"{self.problem.name}{self.problem.suffix}"
        _write_atomic(path, best.text)
        _write_atomic(
            folder / "best.json",
            json.dumps({"id": best.id, "score": best.score, "metrics": best.metrics, "file": path.name}, indent=2),
        )

    def best_path(self) -> Path | None:
        path = self.run_dir / "best" / f"{self.problem.name}{self.problem.suffix}"
        return path if path.exists() else None

    def _open_bar(self) -> None:
        if not self.progress:
            return
        self._bar = tqdm(
            total=self.config.budget.candidates,
            initial=self.admitted,
            unit="cand",
            dynamic_ncols=True,
            file=sys.stderr,
            desc=self.problem.name,
        )
        self._bar.set_postfix_str(self._postfix())

    def _postfix(self) -> str:
        best = f"{self.best.score:.6g}" if self.best and self.best.score is not None else "-"
        rate = 100.0 * self.valid / max(1, self.admitted)
        parts = [f"best={best}", f"valid={rate:.0f}%"]
        if not self.offline_only:
            parts.append(f"spend=${self.spend:.4f}")
        return " ".join(parts)

    async def _shutdown(self) -> None:
        if self._tasks:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
        await self.pool.close()
        if self.proposer is not None:
            await self.proposer.aclose()
        if self._bar is not None:
            self._bar.close()
        try:
            self.store.abandon_pending()
            self.store.put_state({"elapsed_s": self.elapsed(), **self._snapshot()})
        except Exception as exc:  # the store must never be the reason a stop fails
            log.warning("could not write the final state snapshot: %s", exc)

    def _summary(self, message: str) -> RunSummary:
        return RunSummary(
            run_dir=self.run_dir,
            admitted=self.admitted,
            valid=self.valid,
            seed_score=self.seed_score,
            best=self.best,
            stopped=self._stop or "budget",
            elapsed_s=self.elapsed(),
            spend=self.spend,
            best_path=self.best_path(),
            message=message,
        )


def recorded_schedule(run_dir: Path) -> dict[int, Any] | None:
    """When each proposal of an earlier run started and closed, for replaying it exactly;
    None for a run recorded before schedules were kept (its replies are replayed by request)."""
    store = RunStore.open(run_dir, readonly=True)
    try:
        schedule = store.schedule()
    finally:
        store.close()
    if schedule is None:
        log.info("replay: %s kept no schedule; replies are matched by request only", run_dir)
    return schedule


def _imports_from(run_dir: Path, n: int) -> list[Candidate]:
    """The best distinct candidates of an earlier run, to seed a new one."""
    store = RunStore.open(run_dir, readonly=True)
    try:
        out, seen = [], set()
        for c in store.best(n * 4):
            if c.text not in seen:
                seen.add(c.text)
                out.append(Candidate(id=c.id, text=c.text, score=c.score, origin=f"{run_dir}#{c.id}"))
            if len(out) == n:
                break
        return out
    finally:
        store.close()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
