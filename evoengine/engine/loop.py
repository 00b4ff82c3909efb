"""The search loop.

    start up (workers boot, the proposer is built and its models pass their pre-flight,
      the seed is scored; a resumed run rebuilds its state from the store)
    while the budget allows:
        start proposals as turns allow
        await the next change
    each proposal: select a parent, propose, screen, gate, evaluate, then admit or fail

Admissions and failures go through the ledger (one writer); when proposals start and close
is the turns' business (live, or a recorded run's schedule); screening and the gate decide
what is evaluated. They return what happened; the loop alone acts on it (stops, writes the
best file, updates the progress line). Each proposal draws its randomness from its own
`random.Random(f"{seed}:{proposal id}")`, so there is no RNG state to save.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..archive import Archive
from ..config import Config
from ..errors import KeyRefused, ModelError
from ..llm.replay import current_proposal
from ..problem import EvalResult, LoadedProblem
from ..records import Candidate, Child, ModelCall, ProposalContext, ProposalFailed
from ..trackers import open_trackers
from .build import build_model_proxy, build_novelty, build_proposer, make_pool
from .clocks import Clocks
from .gate import Gate
from .ledger import Closed, Ledger
from .progress import Progress, RunSummary
from .recheck import rechecked
from .rundir import RunDir, recorded_schedule
from .screening import Screen
from .turns import Flow, LiveTurns, RecordedTurns, Signal

log = logging.getLogger(__name__)
ENDED = "holds no more proposals"  # a replay that ran out of recorded proposals


class Engine:
    """One run: its directory, problem, archive, proposer and evaluators."""

    def __init__(
        self,
        run: RunDir,
        config: Config,
        loaded: LoadedProblem,
        *,
        progress: bool = False,
        imports: list[Candidate] | None = None,
        harness: Any = None,
        pool: Any = None,
        proposer: Any = None,
        early: Any = None,
    ):
        """`pool`, `proposer`: the config's by default (tests pass their own); `early`: evaluation/early.py."""
        self.rundir, self.run_dir, self.config, self.loaded = run, run.path, config, loaded
        self.problem = loaded.problem
        self.seeds = [Candidate(0, loaded.problem.seed_text())] + [
            Candidate(0, c.text, operator="import", origin=c.origin) for c in imports or []
        ]
        self.harness = harness
        self.archive = Archive(config, self.problem)
        self.ledger = Ledger(run.store, config, self.problem, self.archive, clock=lambda: self.clocks.elapsed())
        self.evaluator_models = build_model_proxy(config, loaded.problem)  # their loopback proxy, if any
        self.pool = pool or make_pool(loaded, config, run.path, self.evaluator_models, early)
        self.proposer: Any = proposer  # else built at start-up, in a thread (`_prepare`)
        self.offline_only = not config.models and not config.replay
        self.signal, self.flow, self.turns = Signal(), Flow(), LiveTurns(config, self.ledger)
        self.screen: Screen | None = None
        gated = config.evaluation.gate and callable(getattr(loaded.module, "minibatch", None))
        self.gate = Gate(self.pool, config.evaluation.gate_strict) if gated else None
        self.rechecks = loaded.problem.rechecks if config.evaluation.rechecks is None else config.evaluation.rechecks
        self.tasks: set[asyncio.Task] = set()
        self.booting: asyncio.Future | None = None  # the pool's start, once under way
        self.stop, self.message = None, ""  # why the run stops, and what to tell the user
        self.done_before = run.store.evaluated_count()
        self.clocks = Clocks(config, float(run.store.get_state("elapsed_s", 0.0)))
        spends = not self.offline_only or bool(config.evaluator_models)
        self.progress = Progress(progress, config.budget.candidates, self.problem.name, spends)

    def remaining(self) -> int | None:
        cap = self.config.budget.candidates
        return None if cap is None else max(0, cap - self.done_before)

    # ------------------------------------------------------------ the run

    async def run(self) -> RunSummary:
        if self.remaining() == 0 and self.done_before:
            best = self.rundir.store.best(1)
            self.rundir.close()
            await _aclose(self.evaluator_models)
            said = f"nothing to do: the run already has {self.done_before} candidates and a budget of "
            said += f"{self.config.budget.candidates}; resume with a larger --budget"
            return self._summary("budget", said, best[0] if best else None)
        self.trackers = open_trackers(self.config, self.run_dir, {"problem": self.problem.name})
        with _stopped_by_signals(self.request_stop):
            try:
                await self._start_up()
                await self._search()
            except KeyRefused as exc:  # an endpoint refused its key: no later call would pass
                self.request_stop("key refused", str(exc))
            except Exception as exc:
                self.request_stop("error", str(exc))  # kept in the store for `status`
                raise
            finally:
                await self._shutdown()
        return self._summary(self.stop or "budget", self.message)

    async def _start_up(self) -> None:
        """Everything before the search, overlapped: the first worker boots and scores the seeds
        while the proposer is built in a thread (the model client's import is most of a second);
        its models' pre-flight comes next, and a failure there stops everything, leaving nothing
        behind. Seeds are admitted once the models passed; a resume waits for no worker."""
        fresh = self.done_before == 0
        seed = self.problem.seed_text() if fresh else None
        preparing = asyncio.ensure_future(asyncio.to_thread(self._prepare, seed))
        booting = asyncio.ensure_future(_boot(self.pool, self.seeds if fresh else None))
        try:
            await preparing
            try:
                await self.proposer.start()  # a refused key or a dead endpoint stops the run here
                if self.evaluator_models is not None:  # the same for the evaluator's; then it serves
                    await self.evaluator_models.start()
            except ModelError:
                if self.rundir.new:
                    booting.cancel()
                    await asyncio.gather(booting, return_exceptions=True)
                    await self.pool.close()
                    self.rundir.discard()
                raise
            self.ledger.rebuild()  # while the first worker boots
            seeds = await booting if fresh else None
            self.booting = booting
        except BaseException:
            for step in (preparing, booting):
                step.cancel()
            await asyncio.gather(preparing, booting, return_exceptions=True)
            raise
        if self.ledger.best is not None:  # a kill may have come between admission and best/
            self.rundir.write_best(self.ledger.best, self.problem)
        if seeds is not None:
            for closed in self.ledger.admit_seeds(self.seeds, seeds, self.run_dir):
                self._close(closed)
        schedule = recorded_schedule(Path(self.config.replay)) if self.config.replay else None
        if schedule is not None:
            patience = self.pool.limits.timeout_s + 60.0
            self.turns = RecordedTurns(schedule, self.ledger, self.signal, source=self.config.replay, patience=patience)
        elif self.config.replay:
            log.info("replay: %s kept no schedule; replies are matched by request only", self.config.replay)
        copies = self.ledger.evaluated if self.config.novelty.enabled else None  # refused unless novelty is off
        self.screen = Screen(self.problem.language, copies, self.ledger.novelty, schedule, folder=self.problem.folder)

    def _prepare(self, seed_text: str | None) -> None:
        """The CPU-bound part of start-up (run in a thread): proposer, novelty filter, and for a
        new run the MAP-Elites cells, which depend only on the seed's text."""
        self.proposer = self.proposer or build_proposer(self.config, self.loaded, self.harness)
        self.ledger.attach(self.proposer)
        if self.evaluator_models is not None:  # its calls share the proposals' model slots
            slots = getattr(getattr(self.proposer, "pool", None), "slots", None)
            self.evaluator_models.prepare(self._record_call, slots, self.request_stop)
        self.ledger.novelty = build_novelty(
            self.config, self.problem, self.proposer, lambda call: self._record_call(None, call)
        )
        if seed_text is not None:
            self.archive.anchor(seed_text)

    # ------------------------------------------------------------ the search

    async def _search(self) -> None:
        """Start a pipeline (propose, evaluate, admit) whenever the turns allow, and wait for the
        next change: a pipeline moving on, ending, or a clock running out."""
        self.eval_slots = asyncio.Semaphore(self.config.concurrency.evaluations)
        while True:
            ended = self.clocks.check(self.flow.proposing > 0) if self.stop is None else None
            if ended is not None:
                self.request_stop(*ended)
            while self.stop is None and self._room() > 0 and self.turns.may_start(self.flow):
                if self.flow.proposing == 0:
                    self.clocks.heard()  # the silence clock runs only while proposals wait
                self.flow.running += 1
                self.flow.proposing += 1
                self.turns.started()
                self.tasks.add(asyncio.create_task(self._pipeline()))
            if not self.tasks:
                if self.stop is None and self.turns.ended() and self._room() > 0:
                    self.stop, self.message = "recording ended", f"the recording in {self.config.replay} {ENDED}"
                elif self.stop is None:
                    self.stop = "budget"
                return
            done, _ = await asyncio.wait(
                {*self.tasks, self.signal.next()},
                timeout=self.clocks.wake_in(self.flow.proposing > 0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done & self.tasks:
                self.tasks.discard(task)
                self.flow.running -= 1
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # (`run` stops on it)

    def _room(self) -> int:
        cap = self.config.budget.candidates
        return 1 if cap is None else cap - self.ledger.admitted - (0 if self.turns.recorded else len(self.tasks))

    def request_stop(self, reason: str, message: str = "") -> None:
        if self.stop is None:
            self.stop, self.message = reason, message
            log.info("stopping: %s", reason)
        if self.evaluator_models is not None:  # an evaluation still running spends no more
            self.evaluator_models.refuse(self.stop)
        for task in self.tasks:
            task.cancel()

    # ------------------------------------------------------------ one candidate's way

    async def _pipeline(self) -> None:
        try:
            child = await self._propose()
        finally:
            self.flow.proposing -= 1
            self.signal.notify()
        if child is None:
            return
        self.flow.queued += 1
        try:
            await self.eval_slots.acquire()
        finally:
            self.flow.queued -= 1
            self.signal.notify()
        try:
            await asyncio.shield(self.booting)  # a resume proposes before its first worker is up
            gated = await self.gate.check(child) if self.gate is not None else None
            t0 = time.monotonic()
            text, label = child.proposal.text, f"candidate {child.pid}"
            result = gated or await self.pool.evaluate(text, label=label, proposal=child.pid)
            incumbent, again = self.ledger.best, None
            if gated is None and self.ledger.copy_of(result) is None:  # a noisy evaluator's would-be best is
                # scored again, and the best too (`rechecks`); a copy's score goes into its original's mean
                result, again = await rechecked(self.pool, text, label, child.pid, result, self.rechecks, incumbent)
            child.timings["eval_s"] = time.monotonic() - t0
            if gated is None and "gate_score" in child.proposal.meta:
                result.metrics.setdefault("gate_score", child.proposal.meta["gate_score"])
        finally:
            self.eval_slots.release()
        await self.turns.closing(child.pid)
        moved = self.ledger.rescore(incumbent, again)  # the best this child challenged, if it was scored again
        candidate = child.admitted(result)
        kind = None if result.valid else "gate" if gated is not None else "evaluation"
        self._close(self.ledger.admit(candidate, kind=kind, parent=child.parents[0]), best_moved=moved)

    async def _propose(self) -> Child | None:
        """Select, propose and screen one child; a rejected near-duplicate is asked for again."""
        retries = self.config.novelty.max_retries if self.ledger.novelty else 0
        for attempt in range(retries + 1):
            pid = await self.turns.start(attempt)
            if pid is None:  # replaying: the recorded run made no more proposals
                return None
            current_proposal.set(pid)  # this task's model calls, when replayed, get pid's replies
            rng = random.Random(f"{self.config.seed}:{pid}")
            sel = self.archive.select(rng)
            ctx = ProposalContext(
                problem=self.problem,
                parent=sel.parent,
                inspirations=list(sel.inspirations),
                failures=list(self.ledger.failures[sel.island]),
                rng=rng,
                island=sel.island,
                record_call=lambda call, pid=pid: self._record_call(pid, call),
                attempt=attempt,
            )
            t0 = time.monotonic()
            try:
                proposal = await self.proposer.propose(ctx)
                self.clocks.heard()
                failure = await self.screen.check(proposal, sel.island, pid)
            except ProposalFailed as failed:
                failure = failed
                failure.parents = failure.parents or (sel.parent.id,)
            if failure is None:
                parents = [sel.parent] + [c for c in sel.inspirations if c.id in proposal.parents[1:]]
                return Child(proposal, pid, sel.island, parents, {"propose_s": time.monotonic() - t0})
            await self.turns.closing(pid)
            self._close(self.ledger.fail(pid, sel.island, failure))
            if failure.kind != "novelty":
                return None
            if failure.copy_in_flight:  # the same prompt would bring a deterministic model's same reply
                await self.flow.hold(self.signal, self.ledger)
        return None

    def _record_call(self, pid: int | None, call: ModelCall) -> None:
        if call.reply is not None:
            self.clocks.heard()
        stop = self.ledger.record_call(pid, call)
        if stop is not None:
            self.request_stop(stop)

    def _close(self, closed: Closed, best_moved: bool = False) -> None:
        """Act on what closing a proposal changed (`best_moved`: a rescore before it moved the best)."""
        self.signal.notify()
        if closed.best_changed or best_moved:
            self.rundir.write_best(self.ledger.best, self.problem)
        if closed.stop is not None:
            self.request_stop(closed.stop, closed.message)
        if closed.admitted is not None:
            ledger = self.ledger
            self.trackers.admitted(closed.admitted, ledger.best, ledger.spend, ledger.admitted)
            self.progress.update(ledger.admitted, ledger.valid, ledger.best, ledger.spend)

    # ------------------------------------------------------------ the end

    async def _shutdown(self) -> None:
        while self.tasks:  # cancelled again until they end: an await may swallow one cancellation
            for task in self.tasks:
                task.cancel()
            done, _ = await asyncio.wait(self.tasks, timeout=0.5)
            self.tasks -= done
            await asyncio.gather(*done, return_exceptions=True)  # their errors read, none logged as lost
        await _cancel(self.booting)  # a resume that ends before its first worker is up
        await self.pool.close()
        await _aclose(self.evaluator_models)
        await _aclose(self.proposer)
        try:  # (a new run discarded at its models' pre-flight has no store left to write)
            if not self.rundir.closed:
                resumable = self.screen is not None and self.stop != "error"
                self.ledger.stopped(resumable, self.stop or "error", self.message)
        except Exception as exc:  # noqa: BLE001 - the store must never be the reason a stop fails
            log.warning("could not write the final state snapshot: %s", exc)
        self.rundir.close()
        self.progress.close()  # after the store: a closed terminal may refuse it
        self.trackers.close(self._summary(self.stop or "error", self.message).tracked())

    def _summary(self, stopped: str, message: str, best: Candidate | None = None) -> RunSummary:
        path = self.rundir.best_file(self.problem)
        return RunSummary.of(self.ledger, self.run_dir, stopped, message, self.clocks, best, path, self.done_before)

    def best_path(self) -> Path | None:
        path = self.rundir.best_file(self.problem)
        return path if path.exists() else None


async def _boot(pool: Any, seeds: list[Candidate] | None) -> list[tuple[EvalResult, float]] | None:
    """Start the evaluator pool, then score `seeds` (a new run's seed and imports): (result, seconds)."""
    await pool.start()
    if seeds is None:
        return None

    async def score(text: str, label: str) -> tuple[EvalResult, float]:
        t0 = time.monotonic()
        return await pool.evaluate(text, label=label), time.monotonic() - t0

    return await asyncio.gather(*(score(s.text, f"import {i}" if i else "seed") for i, s in enumerate(seeds)))


async def _aclose(thing: Any) -> None:
    if thing is not None:
        await thing.aclose()


async def _cancel(step: asyncio.Future | None) -> None:
    if step is not None:
        step.cancel()
        await asyncio.gather(step, return_exceptions=True)


@contextlib.contextmanager
def _stopped_by_signals(stop: Any) -> Iterator[None]:
    """Ctrl-C, SIGTERM and a closed terminal ask the run to stop (it finishes the admission
    under way, and the store says why)."""
    loop = asyncio.get_running_loop()
    signals = {
        signal.SIGINT: "",
        signal.SIGTERM: "SIGTERM",
        signal.SIGHUP: "its terminal closed (SIGHUP); `nohup`, `tmux` or `screen` keep a run going without one",
    }
    for sig, why in signals.items():
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop, "interrupted", why)
    try:
        yield
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
