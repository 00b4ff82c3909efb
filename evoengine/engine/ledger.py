"""The ledger: the one writer of a run's admissions and failures, and of what is derived from
them in memory — the archive, the novelty index, bandit feedback, the prompts' recent
failures, spend and the failing streaks.

A child that behaves as a candidate the archive keeps is a copy (`copies.py`): admitted
as kind `copy`, kept nowhere, its score pooled into the original's mean.

It is synchronous and knows nothing of the loop: each call writes one transaction and says
what happened (`Closed`: did the best change, does the run have to stop and why). On resume,
`rebuild()` derives the same state from the store: from the resume snapshot (`resume.py`)
and the closings after it, or by replaying every closing in closing order, so a run killed
at any moment continues as an uninterrupted one would have.
"""

from __future__ import annotations

import collections
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..archive import Archive
from ..config import Config
from ..errors import ProblemError
from ..llm.bandit import improvement_reward
from ..novelty import Novelty
from ..problem import EvalResult, Problem
from ..records import Candidate, ModelCall, ProposalFailed
from ..store import RunStore
from . import resume
from .copies import Behaviours, pool_copy
from .recheck import with_sample
from .screening import digest

log = logging.getLogger(__name__)

PROMPT_FAILURES = 5  # recent setbacks per island shown to the next prompts


@dataclass(frozen=True)
class Closed:
    """What closing one proposal changed: a new best, or a reason the run must stop."""

    best_changed: bool = False
    stop: str | None = None  # "money", "target" or "failing"
    message: str = ""
    admitted: Candidate | None = None  # the candidate admitted, if one was


def setback(candidate_id: int, operator: str, kind: str, reason: str) -> str:
    """One line of a prompt's "recent failures": the same text live and after a resume."""
    if kind in ("evaluation", "gate"):
        return f"candidate {candidate_id} invalid: {reason[:300]}"
    return f"{operator}: {reason}"


def reason_class(feedback: str) -> str:
    """What an invalid result's reason is about, without its numbers and paths: two results
    of one class are "the same failure" for the failing-streak stop."""
    first = next((line.strip() for line in feedback.splitlines() if line.strip()), "")
    return re.sub(r"\d+", "#", re.sub(r"(/[\w.\-]+)+", "PATH", first))[:160]


class Ledger:
    """Admissions, failures and model calls of one run, written once and accounted once."""

    def __init__(
        self,
        store: RunStore,
        config: Config,
        problem: Problem,
        archive: Archive,
        *,
        clock: Callable[[], float] = lambda: 0.0,
    ):
        self.store = store
        self.config = config
        self.problem = problem
        self.archive = archive
        self.clock = clock  # the run's time so far, kept with every admission
        # the proposer's feedback (arm, reward, cost, operator=, stage=) and bandit figures, once built
        self.observe: Callable[..., None] = lambda arm, reward, cost, **how: None
        self.bandit: Callable[[], dict[str, Any]] = dict
        self.novelty: Novelty | None = None  # set once built (start-up builds it in a thread)
        self.learner: Any = None  # the proposer, when its learnt state can be snapshot (`state`, `restore`)
        self.closed = 0  # proposals closed (admitted or failed), seeds included: the schedule's clock
        self.spend = 0.0
        self.seed_score: float | None = None
        self.start_score: float | None = None  # best of the seed and the imported candidates
        self.failures: dict[int, collections.deque[str]] = collections.defaultdict(
            lambda: collections.deque(maxlen=PROMPT_FAILURES)
        )
        self.kinds: collections.Counter[str] = collections.Counter()  # closed proposals by failure kind
        self.rechecks = 0  # evaluations beyond one per candidate (evaluation.rechecks)
        self.behaviours = Behaviours(archive)  # to tell a copy by (`copies.py`)
        self.failed_in_a_row = 0
        self.invalid_streak: tuple[str, int] = ("", 0)  # (reason class, invalid results in a row)
        self._last_state = 0.0
        self._snapped = 0  # `closed` at the last resume snapshot
        self.restored: int | None = None
        self.built = False  # the state rebuilt from the store (`rebuild`): there is a run to speak for

    # ------------------------------------------------------------ reading

    @property
    def admitted(self) -> int:
        return self.archive.admitted

    @property
    def valid(self) -> int:
        return self.archive.valid

    @property
    def best(self) -> Candidate | None:
        return self.archive.best()

    def copy_of(self, result: EvalResult | Candidate) -> Candidate | None:
        """The kept candidate that a valid result behaves as (the same `behaviour` artifact), if any."""
        return self.behaviours.original(result) if self.config.evaluation.pool_copies else None

    # ------------------------------------------------------------ writing

    def open(self, basis: int | None = None, attempt: int = 0) -> int:
        """A new proposal's id (its row stays pending until it is closed)."""
        return self.store.start_proposal(0, basis=self.closed if basis is None else basis, attempt=attempt)

    def record_call(self, pid: int | None, call: ModelCall) -> str | None:
        """Store one model call as soon as it returns; "money" once the spend reaches the budget."""
        self.store.record_call(pid, call)
        self.spend += call.cost
        budget = self.config.budget.cost_usd
        return "money" if budget is not None and self.spend >= budget else None

    def fail(self, pid: int, island: int, failure: ProposalFailed) -> Closed:
        """Close a proposal that made no child to evaluate (its kind and reason kept)."""
        self.closed += 1
        reward = 0.0 if failure.model else None
        self.store.fail(
            pid,
            reason=failure.reason,
            kind=failure.kind,
            operator=failure.operator,
            model=failure.model,
            parents=failure.parents,
            cost=failure.cost,
            reward=reward,
            island=island,
            closed=self.closed,
        )
        self._failed(island, pid, failure.operator, failure.kind, failure.reason, failure.model, failure.cost)
        self.failed_in_a_row += 1
        conc = self.config.concurrency
        limit = max(25, 5 * (conc.proposals + conc.evaluations))
        if failure.kind == "novelty" and failure.cost == 0:
            # A free copy (say, a greedy search's offline edits around one parent) costs nothing:
            # only a long run of them means the search is stuck.
            limit *= 10
        if self.failed_in_a_row >= limit:
            return Closed(
                stop="failing",
                message=f"the last {self.failed_in_a_row} proposals all failed; the latest ({failure.kind}): "
                f"{failure.reason}",
            )
        return Closed()

    def admit(self, candidate: Candidate, *, kind: str | None = None, parent: Candidate | None = None) -> Closed:
        """Admit one evaluated candidate: store (one transaction), archive, novelty, bandit."""
        before = self.best
        reward = reason = None
        original = self.copy_of(candidate) if parent is not None and kind is None else None
        if original is not None:  # its score is one more sample of the candidate it behaves as
            kind, reason = "copy", pool_copy(self.archive, candidate, original)
        elif parent is not None:  # a child (seeds and imports have no parent and earn nothing)
            reward = improvement_reward(
                candidate, parent.score if parent.valid else None, before.score if before else None
            )
        events = [(e.kind, e.data) for e in self.archive.admit(candidate, copy=original is not None)]
        best_changed = self.best is not before
        events += _best_event(self.best) if best_changed else []
        self.closed += 1
        state: dict[str, Any] = {"elapsed_s": self.clock()}
        if time.monotonic() - self._last_state > 2.0:  # the status snapshot, now and then
            state = self.snapshot()
            self._last_state = time.monotonic()
        text_digest = digest(candidate.text, self.problem.language, self.problem.folder)
        self.store.admit(
            candidate, reward=reward, kind=kind, events=events, state=state, closed=self.closed, digest=text_digest,
            reason=reason, rescored=original,
        )  # fmt: skip
        self._account(candidate, kind)
        if candidate.model is not None and reward is not None:
            self.observe(candidate.model, reward, candidate.cost, operator=candidate.operator, stage=_stage(candidate))
        if self.closed - self._snapped >= resume.SNAPSHOT_EVERY:
            self.save_resume_point()
        self.failed_in_a_row = 0
        target, best = self.config.budget.target_score, self.best
        if best_changed and target is not None and best is not None and best.score >= target:
            return Closed(best_changed, "target", f"candidate {best.id} scored {best.score:.6g}", candidate)
        if kind == "evaluation":
            return self._invalid_streak(candidate)
        if candidate.valid:
            self.invalid_streak = ("", 0)
        return Closed(best_changed, admitted=candidate)

    def rescore(self, candidate: Candidate | None, sample: float | None) -> bool:
        """Fold one more sample of an admitted candidate's score into its mean (`rechecks`); True
        if the run's best changed (a best that lost its luck gives way)."""
        if candidate is None or sample is None:
            return False
        before = self.best
        self.archive.rescore(candidate, *with_sample(candidate, sample))
        self.store.rescore(candidate, events=_best_event(self.best) if self.best is not before else [])
        self.rechecks += 1
        return self.best is not before

    def admit_seeds(
        self, seeds: list[Candidate], results: list[tuple[EvalResult, float]], run_dir: Path
    ) -> list[Closed]:
        """Admit the seed and the candidates imported from another run, scored (result, seconds)."""
        if not results[0][0].valid:
            raise ProblemError(
                f"{self.problem.initial_path}: the seed scores invalid, so there is nothing to evolve from. "
                f"Evaluator feedback:\n{results[0][0].feedback}\nFix the seed (or the evaluator), then "
                f"`evoengine resume {run_dir}`."
            )
        closed = []
        for index, (seed, (result, eval_s)) in enumerate(zip(seeds, results, strict=True)):
            island = (index - 1) % self.config.islands.count if index else 0
            candidate = Candidate.scored(
                result, id=self.open(), text=seed.text, island=island, operator=seed.operator,
                timings={"eval_s": eval_s}, origin=seed.origin,
            )  # fmt: skip
            closed.append(self.admit(candidate, kind=None if result.valid else "evaluation"))
        return closed

    def _invalid_streak(self, candidate: Candidate) -> Closed:
        """Stop a run whose evaluator fails every child for one reason (say, an import error)."""
        cls = reason_class(candidate.feedback)
        seen, count = self.invalid_streak
        count = count + 1 if cls == seen else 1
        self.invalid_streak = (cls, count)
        limit = self.config.budget.invalid_streak
        if limit is not None and count >= limit:
            return Closed(
                stop="failing",
                message=f"the last {count} candidates were all invalid for the same reason: "
                f"{candidate.feedback.strip()[:400]}",
                admitted=candidate,
            )
        return Closed(admitted=candidate)

    def _account(self, candidate: Candidate, kind: str | None) -> None:
        metrics = candidate.metrics  # a stored candidate's samples include its copies' (`pooled`)
        self.rechecks += int(metrics.get("rechecks", 0) - metrics.get("pooled", 0))
        if self.archive.admitted == 1:
            self.seed_score = candidate.score
        if candidate.operator in ("seed", "import") and candidate.valid:
            self.start_score = max(self.start_score or candidate.score, candidate.score)
        if kind is not None:
            self._failed(candidate.island, candidate.id, candidate.operator, kind, candidate.feedback)
        elif candidate.valid:
            if self.novelty is not None:
                self.novelty.add(candidate)
            self.behaviours.add(candidate)

    def _failed(  # fmt: skip
        self, island: int, pid: int, operator: str, kind: str, reason: str, model: str | None = None, cost: float = 0.0
    ) -> None:
        self.kinds[kind] += 1
        if kind not in ("novelty", "copy"):  # a near-duplicate or a copy teaches the next prompt nothing
            self.failures[island].append(setback(pid, operator, kind, reason))
        if model is not None and kind not in ("evaluation", "gate"):  # a failed reply must look bad
            self.observe(
                model, 0.0, cost, operator=operator, stage="rejected" if kind in ("novelty", "copy") else "failed"
            )

    # ------------------------------------------------------------ resume

    def attach(self, proposer: Any) -> None:
        """Feed back to `proposer` (and keep its learnt state in the resume snapshot, when it
        has `state()` and `restore()`)."""
        self.observe, self.bandit = proposer.observe, proposer.stats
        if callable(getattr(proposer, "state", None)) and callable(getattr(proposer, "restore", None)):
            self.learner = proposer

    def stopped(self, resumable: bool, reason: str, message: str) -> None:
        """At the end of a run: close what is still in flight as abandoned, write the status
        snapshot with why the run stopped (`status` and `baselines` read it) and, if the state
        was built whole (`resumable`), the resume snapshot. A run stopped before its state was
        rebuilt (a resume refused at its models' pre-flight) writes nothing: the store still
        says what the run before it left."""
        if not self.built:
            return
        self.store.abandon_pending()
        self.store.put_state({**self.snapshot(), "stopped": {"reason": reason, "message": message}})
        if resumable:
            self.save_resume_point()

    def evaluated(self, text_digest: bytes) -> bool:
        """Has a text of this normal-form digest been evaluated (the store keeps every digest)?"""
        return self.store.evaluated_digest(text_digest)

    def save_resume_point(self) -> None:
        """Write the resume snapshot of the state after the first `closed` closings."""
        if self.learner is None:
            return
        self.store.put_resume(self.closed, self._fingerprint(), resume.capture(self, self.learner))
        self._snapped = self.closed

    def _fingerprint(self) -> str:
        return resume.fingerprint(self, self.learner.arms())

    def rebuild(self) -> None:
        """Close as abandoned the proposals a stopped run left in flight, and derive the
        in-memory state from the store: restore the resume snapshot, if there is
        one that fits, then replay the proposals closed after it (all of them without one) in
        the order they were closed (admissions into the archive, setbacks, bandit feedback).
        The run is under way from here: the last stop's reason is cleared."""
        self.store.put_state({"stopped": None})
        self.built = True
        abandoned = self.store.abandon_pending()
        if abandoned:
            log.info("%d proposals that were in flight when the run stopped will be made again", abandoned)
        language, folder = self.problem.language, self.problem.folder
        filled = self.store.backfill_digests(lambda text: digest(text, language, folder))
        if filled:
            log.info("digests of %d candidates evaluated before schema 4 are now in the store", filled)
        after = None
        point = self.store.resume_point() if self.learner is not None else None
        if point is not None and point[1] == self._fingerprint():
            after = resume.restore(self, self.learner, point[2])
        elif point is not None:
            log.info("the resume snapshot was taken under other settings; replaying every closing")
        for row, candidate in self.store.closings(after):
            self.closed += 1
            if candidate is None:
                self._failed(
                    row["island"], row["id"], row["operator"], row["kind"], row["reason"], row["model"], row["cost"]
                )
                continue
            self.archive.admit(candidate, copy=row["kind"] == "copy")
            self._account(candidate, row["kind"])
            if candidate.model is not None and row["reward"] is not None:
                self.observe(
                    candidate.model, row["reward"], candidate.cost, operator=candidate.operator, stage=_stage(candidate)
                )
        self._snapped = after or 0
        self.restored = after  # closings the snapshot covered (None: every closing was replayed)
        if after is None and self.closed:  # replayed whole: the next resume need not
            self.save_resume_point()
        self.spend = self.store.spend()

    def snapshot(self) -> dict[str, Any]:
        """Archive, elite map and novelty figures for `status` and the viewer."""
        snap: dict[str, Any] = {"elapsed_s": self.clock(), "archive": self.archive.stats(), "bandit": self.bandit()}
        snap["elites"] = self.archive.elite_map()
        if self.novelty is not None:
            snap["novelty"] = {**self.novelty.stats(), "rejections": self.kinds["novelty"]}
        snap["failures"] = dict(self.kinds)
        return snap


def _best_event(best: Candidate | None) -> list[tuple[str, dict[str, Any]]]:
    """The store's record that `best` is now the run's best: what `status`, `best`, the report
    and the benchmarks read as the run's answer (a noisy run's best is not its highest score)."""
    return [("best", {"id": best.id, "score": best.score})] if best is not None else []


def _stage(candidate: Candidate) -> str:
    """How far an evaluated child got, for the proposer's operator odds."""
    return "valid" if candidate.valid else "invalid"
