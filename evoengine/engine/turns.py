"""Turns: when a proposal may start, which id it gets, and when it may close.

`LiveTurns` is a live run's: as many proposals as keep the model slots busy, ids in the
order they start, closing whenever they finish. `RecordedTurns` replays a recorded run's
schedule (`config.replay`): each proposal starts once as many proposals are closed as were
when the recorded run started it, and closes in the place it closed there, so a concurrent
run is replayed exactly. Both answer the same four questions for the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import ModelError
from .ledger import Ledger


class Signal:
    """ "Something moved" (a proposal started, changed phase or closed): whoever waits for a
    change — the loop, a recorded turn — looks again."""

    def __init__(self) -> None:
        self._future: asyncio.Future | None = None

    def notify(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def next(self) -> asyncio.Future:
        if self._future is None or self._future.done():
            self._future = asyncio.get_running_loop().create_future()
        return self._future


@dataclass
class Flow:
    """The loop's pipelines by phase."""

    running: int = 0  # pipelines started and not finished
    proposing: int = 0  # in their proposing phase (selecting, prompting, waiting on a model)
    queued: int = 0  # children waiting for an evaluation slot

    async def hold(self, signal: Signal, ledger: Ledger) -> None:
        """Hold a proposal until the next candidate is admitted, out of the proposing phase
        (new proposals are held back as by a child queued for evaluation)."""
        admitted = ledger.admitted
        self.proposing -= 1
        self.queued += 1
        try:
            while ledger.admitted == admitted:
                await signal.next()
        finally:
            self.queued -= 1
            self.proposing += 1
            signal.notify()


class LiveTurns:
    recorded = False

    def __init__(self, config: Config, ledger: Ledger):
        self.concurrency = config.concurrency
        self.ledger = ledger

    def may_start(self, flow: Flow) -> bool:
        if self.concurrency.deterministic:
            return flow.running == 0
        # One proposal more than there are model slots (the model pool caps requests out at
        # `proposals`): its prompt is ready when a slot frees, so the slot is taken at once.
        # Children waiting for an evaluation slot hold new proposals back (evaluation is then
        # the bottleneck).
        return flow.proposing < self.concurrency.proposals + 1 and flow.queued < self.concurrency.evaluations

    def started(self) -> None:
        return None

    def ended(self) -> bool:
        return False

    async def start(self, attempt: int) -> int | None:
        return self.ledger.open(attempt=attempt)

    async def closing(self, pid: int) -> None:
        return None


class RecordedTurns:
    recorded = True

    def __init__(self, schedule: dict[int, Any], ledger: Ledger, signal: Signal, *, source: str, patience: float):
        self.schedule = schedule
        self.ledger = ledger
        self.signal = signal
        self.source = source  # the recorded run's directory, for messages
        self.patience = patience  # how long nothing may move before the replay is declared stuck
        self.next_pid = ledger.store.next_id()
        self.at_start = 0  # pipelines started but not yet given their first id

    def may_start(self, flow: Flow) -> bool:
        return self.at_start == 0 and self.next_pid in self.schedule

    def started(self) -> None:
        self.at_start += 1

    def ended(self) -> bool:
        """The recording holds no more proposals."""
        return self.next_pid not in self.schedule

    async def start(self, attempt: int) -> int | None:
        """A new proposal id, once as many proposals are closed as were when the recorded run
        started it (a retry after a rejection takes the id recorded for that retry); None
        when the recorded run started no more."""
        try:
            while True:
                pid = self.next_pid
                record = self.schedule.get(pid)
                if record is None:
                    return None
                basis, closed = record["basis"], self.ledger.closed
                if basis < closed:
                    raise self.diverged(
                        f"proposal {pid} started after {basis} proposals were closed there, after {closed} here"
                    )
                if basis == closed and (record["status"] in ("pending", "abandoned") or record["attempt"] == attempt):
                    self.ledger.open(basis, record["attempt"])
                    self.next_pid += 1
                    self.signal.notify()
                    if record["status"] not in ("pending", "abandoned"):
                        return pid
                    # cut short there: left pending here too (abandoned when the run ends)
                elif basis > closed:
                    await self._until(lambda b=basis, i=pid: self.ledger.closed >= b or self.next_pid != i)
                else:  # its turn, but it is another proposal's retry
                    await self._until(lambda i=pid: self.next_pid != i)
        finally:
            if attempt == 0:  # the pipeline is past its start
                self.at_start -= 1
                self.signal.notify()  # the loop may start the next one

    async def closing(self, pid: int) -> None:
        """Wait until proposal `pid` is the next to close in the recorded order."""
        closed = self.schedule[pid]["closed"]
        if closed is None:
            raise self.diverged(f"proposal {pid} was never finished there")

        def started_all_before() -> bool:  # proposals started at this count start before it moves on
            record = self.schedule.get(self.next_pid)
            return record is None or record["basis"] > self.ledger.closed

        await self._until(lambda: self.ledger.closed + 1 >= closed and started_all_before())
        if self.ledger.closed + 1 != closed:
            raise self.diverged(f"proposal {pid} closed {closed}th there, {self.ledger.closed + 1}th here")

    async def _until(self, ready: Callable[[], bool]) -> None:
        """Wait until `ready()`, re-checked whenever something moves."""
        while not ready():
            # (not wait_for: in Python 3.11 it can swallow the task's cancellation when the
            # signal fires at the same moment, and a stopping run would then wait out `patience`)
            moved, _ = await asyncio.wait({self.signal.next()}, timeout=self.patience)
            if not moved:
                record = self.schedule.get(self.next_pid)
                raise self.diverged(
                    f"nothing moved for {self.patience:g} s ({self.ledger.closed} proposals closed; proposal "
                    f"{self.next_pid} started there after {record['basis'] if record else '-'})"
                )

    def diverged(self, what: str) -> ModelError:
        return ModelError(
            f"replay of {self.source}: {what}; the replayed run has diverged from the recorded one: use the "
            f"same problem, config and seed, or drop `replay:` to call the endpoint"
        )
