"""The records every layer shares: what a candidate is, what a model call was, what a
proposal is given and what it returns. Plain data, no behaviour beyond small helpers; this
module imports nothing of evoengine's but the problem contract, so anything may import it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .problem import EvalResult, Problem

# The reasons a run stops for having done what it was asked (its candidate budget, its target
# score); any other (failing, money, interrupted, key refused, error) leaves it to resume.
FINISHED = ("budget", "target")


@dataclass(frozen=True)
class Candidate:
    """An admitted candidate. `parents[0]` is the main parent; crossover adds a second.

    `change` is what made it from its parent: the model's patch, or the offline
    operator's description. `origin` marks candidates imported from another run.
    """

    id: int
    text: str
    parents: tuple[int, ...] = ()
    island: int = 0
    generation: int = 0
    operator: str = "seed"
    model: str | None = None
    score: float | None = None
    valid: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)
    feedback: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)
    instances: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cost: float = 0.0
    change: str = ""
    origin: str | None = None
    created: float = 0.0

    @classmethod
    def scored(cls, result: EvalResult, **fields: Any) -> Candidate:
        """A candidate with `result`'s score, validity, metrics, features, feedback and artifacts."""
        copied = ("score", "valid", "metrics", "features", "feedback", "artifacts", "instances")
        return cls(**{k: getattr(result, k) for k in copied}, created=time.time(), **fields)

    @property
    def parent(self) -> int | None:
        return self.parents[0] if self.parents else None

    def rescore(self, score: float, metrics: dict[str, float]) -> None:
        """The one change an admitted candidate takes: a noisy evaluator's mean over more samples
        (`evaluation.rechecks`). In place, since its islands, elite cell and the run's best share it."""
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "metrics", metrics)

    def fitness(self) -> float:
        """Score for ranking: invalid candidates rank below every valid one."""
        return self.score if self.valid and self.score is not None else float("-inf")

    def summary(self) -> dict[str, Any]:
        keys = ("id", "parents", "island", "generation", "operator", "model", "score", "valid")
        return {**{k: getattr(self, k) for k in keys}, "parents": list(self.parents)}


@dataclass(frozen=True)
class ModelCall:
    """One request to a model and what came back (or the error)."""

    model: str
    request_hash: str
    messages: list[dict[str, str]]
    reply: str | None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    error: str | None = None
    purpose: str = "propose"  # propose | judge | embed


@dataclass
class ProposalContext:
    problem: Problem
    parent: Candidate
    inspirations: list[Candidate]
    failures: list[str]
    rng: random.Random
    island: int
    record_call: Callable[[ModelCall], None] = lambda call: None
    attempt: int = 0  # how many times this slot was already rejected (novelty, patch)
    operator_weights: dict[str, float] | None = None  # the chosen model's learnt operator odds (None: configured)


@dataclass(frozen=True)
class Proposal:
    text: str
    operator: str  # e.g. "diff", "full", "crossover", "offline:constant"
    model: str | None  # the bandit arm that made it: a model name, or "offline"
    parents: tuple[int, ...]
    change: str = ""  # the patch or a description of the edit
    cost: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Child:
    """A proposed child on its way to admission: what made it, its id, island and parents."""

    proposal: Proposal
    pid: int
    island: int
    parents: list[Candidate]
    timings: dict[str, float] = field(default_factory=dict)

    def admitted(self, result: EvalResult) -> Candidate:
        """The candidate this child becomes once scored."""
        p = self.proposal
        return Candidate.scored(
            result, id=self.pid, text=p.text, parents=p.parents, island=self.island,
            generation=1 + max(c.generation for c in self.parents), operator=p.operator, model=p.model,
            timings=self.timings, cost=p.cost, change=p.change,
        )  # fmt: skip


class ProposalFailed(Exception):
    """A proposal that produced no child to evaluate; `reason` is recorded in the store with its
    `kind`: patch (a reply or edit that could not be applied), model (the call itself failed),
    syntax (the child does not compile), novelty (a copy or near-duplicate)."""

    def __init__(
        self,
        reason: str,
        *,
        operator: str,
        model: str | None,
        cost: float = 0.0,
        parents: tuple[int, ...] = (),
        kind: str = "patch",
    ):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.operator = operator
        self.model = model
        self.cost = cost
        self.parents = parents
        # a copy of a child still being evaluated: until a score comes in, the same prompt
        # brings a deterministic model's same reply, so the proposal waits before asking again
        self.copy_in_flight = False
