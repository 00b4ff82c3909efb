"""How a child is made: the interface between the engine and whatever proposes children.

The engine hands a `Proposer` a `ProposalContext` (parent, inspirations, recent failures,
a per-proposal RNG) and gets back a `Proposal` (the child's text and how it was made), or
a `ProposalFailed` carrying the reason, which the store records. Model calls are reported
through `ctx.record_call` as soon as they return, so spend is never lost.

After each proposal closes, the engine reports how it went through `observe(arm, reward,
cost, operator=..., stage=...)`, in closing order, live and again when a run resumes, so a
proposer's learnt state is a deterministic function of the closed proposals. A proposer
that also has `state()` (JSON-ready) and `restore(state)` has that state kept in the resume
snapshot, so a resumed run does not replay every closing into it (the built-in and model
proposers do; one without them makes a resume replay the whole run).

Proposers: the built-in ones, which need no model (`offline.OfflineProposer`, AST operators
for Python; `text.TextProposer`, line operators for other text; `folder.FolderProposer`, either
one file at a time), and the model-driven proposer in `operators.llm`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeVar

from ..records import Candidate, Proposal, ProposalContext, ProposalFailed

# How far a proposal's child got: none made (the model call or the patch failed), made but
# refused before evaluation (a duplicate, novelty), evaluated invalid, evaluated valid.
Stage = Literal["failed", "rejected", "invalid", "valid"]
T = TypeVar("T")


def some_of(items: Sequence[T], rng: random.Random) -> list[T]:
    """A crossover's share of `items` from the second parent: each with chance 1/2, in order;
    at least one, and not all when there are several (the child would be a parent's copy)."""
    chosen = [item for item in items if rng.random() < 0.5] or [rng.choice(items)]
    if len(chosen) == len(items) > 1:
        chosen.remove(rng.choice(chosen))
    return chosen


class Proposer(Protocol):
    """What the engine needs from a source of children."""

    def arms(self) -> list[str]:
        """Names the bandit chooses between (models, and "offline" if it is an arm)."""

    async def start(self) -> None:
        """Before the first proposal: check what the proposer needs (models' pre-flight)."""

    async def propose(self, ctx: ProposalContext) -> Proposal: ...

    def observe(
        self, arm: str, reward: float, cost: float, *, operator: str | None = None, stage: Stage | None = None
    ) -> None:
        """Feedback after a proposal of `arm` closed: its reward in [0, 1], its cost, the
        operator that made it (`Proposal.operator` / `ProposalFailed.operator`) and how far
        its child got (`stage`)."""

    def stats(self) -> dict[str, Any]:
        """Per-arm calls, mean reward, cost, selection probability (for `status`)."""

    async def aclose(self) -> None: ...


class BuiltinProposer:
    """What the model-free proposers share: one bandit arm, "offline", that costs nothing,
    and counts of what it proposed and earned. Subclasses implement `_propose(ctx)`."""

    ARM = "offline"
    WEIGHTS: dict[str, float] = {}  # the operators, with how often each is drawn by default
    KIND = "offline"  # what its operators are called in messages

    tries = 8  # operators drawn per proposal before it fails

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = self.checked(self.WEIGHTS if weights is None else weights) if self.WEIGHTS else {}
        self.observed = 0  # children evaluated, as reported through `observe`
        self.reward = 0.0  # their summed rewards
        self.made: dict[str, int] = {}  # proposals made, by operator

    @classmethod
    def checked(cls, weights: dict[str, float]) -> dict[str, float]:
        weights = dict(weights)
        if set(weights) - set(cls.WEIGHTS) or any(not w >= 0 for w in weights.values()) or not any(weights.values()):
            raise ValueError(
                f"{cls.KIND} operator weights must be non-negative, not all zero, with keys from "
                f"{sorted(cls.WEIGHTS)} (got {weights})"
            )
        return {k: float(w) for k, w in weights.items() if w > 0}

    def _propose(self, ctx: ProposalContext) -> Proposal:
        raise NotImplementedError

    def failed(self, ctx: ProposalContext, reason: str) -> ProposalFailed:
        return ProposalFailed(reason, operator="offline", model=self.ARM, parents=(ctx.parent.id,))

    def first_usable(
        self,
        ctx: ProposalContext,
        weights: dict[str, float],
        operators: dict[str, Callable[[], Any]],
        child: Callable[[Any], tuple[str, str, Candidate | None]],
        none_found: str,
    ) -> Proposal:
        """Draw operators by `weights` until one makes a usable child, `self.tries` times at
        most. An operator returns what it changed (with `.name` and `.change`), or None when it
        has nothing to change (then it is not drawn again); `child(made)` gives the child's
        text, why it is unusable (empty if it is not) and the second parent of a crossover."""
        available = [k for k in weights if k in operators]
        reasons: list[str] = []
        for attempt in range(self.tries):
            if not available:
                break
            name = ctx.rng.choices(available, weights=[weights[k] for k in available])[0]
            try:
                made = operators[name]()
            except (RecursionError, ValueError) as exc:
                reasons.append(f"{name}: {exc}")
                continue
            if made is None:
                reasons.append(f"{name}: nothing to change")
                available.remove(name)
                continue
            text, why, other = child(made)
            if why:
                reasons.append(f"{made.name}: {why}")
                continue
            return Proposal(
                text=text,
                operator=f"offline:{made.name}",
                model=self.ARM,
                parents=(ctx.parent.id, other.id) if other is not None else (ctx.parent.id,),
                change=f"with #{other.id}: {made.change}" if other is not None else made.change,
                meta={"tries": attempt + 1},
            )
        raise self.failed(
            ctx, f"{none_found}: " + ("; ".join(dict.fromkeys(reasons)) or "the editable region is empty")
        )

    def arms(self) -> list[str]:
        return [self.ARM]

    async def start(self) -> None:
        return None

    async def propose(self, ctx: ProposalContext) -> Proposal:
        proposal = self._propose(ctx)
        self.made[proposal.operator] = self.made.get(proposal.operator, 0) + 1
        return proposal

    def observe(
        self, arm: str, reward: float, cost: float, *, operator: str | None = None, stage: Stage | None = None
    ) -> None:
        if arm == self.ARM:
            self.observed += 1
            self.reward += min(max(reward, 0.0), 1.0) if math.isfinite(reward) else 0.0

    def stats(self) -> dict[str, Any]:
        mean = self.reward / self.observed if self.observed else 0.0
        return {
            self.ARM: {
                "calls": self.observed,
                "mean_reward": mean,
                "cost": 0.0,
                "probability": 1.0,
                "proposed": dict(self.made),
            }
        }

    def state(self) -> dict[str, Any]:
        """What `observe` counted (JSON-ready); `restore` sets it back on resume."""
        return {"observed": self.observed, "reward": self.reward}

    def restore(self, state: dict[str, Any]) -> None:
        self.observed, self.reward = state["observed"], state["reward"]

    async def aclose(self) -> None:
        return None
