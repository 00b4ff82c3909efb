"""How a child is made: the interface between the engine and whatever proposes children.

The engine hands a `Proposer` a `ProposalContext` (parent, inspirations, recent failures,
a per-proposal RNG) and gets back a `Proposal` (the child's text and how it was made), or
a `ProposalFailed` carrying the reason, which the store records. Model calls are reported
through `ctx.record_call` as soon as they return, so spend is never lost.

Proposers: `offline.OfflineProposer` (AST operators, no model) and the model-driven
proposer in `operators.llm`.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from ..records import Proposal, ProposalContext


class Proposer(Protocol):
    """What the engine needs from a source of children."""

    def arms(self) -> list[str]:
        """Names the bandit chooses between (models, and "offline" if it is an arm)."""

    async def start(self) -> None:
        """Before the first proposal: check what the proposer needs (models' pre-flight)."""

    async def propose(self, ctx: ProposalContext) -> Proposal: ...

    def observe(self, arm: str, reward: float, cost: float) -> None:
        """Feedback after a child of `arm` was evaluated (reward in [0, 1])."""

    def stats(self) -> dict[str, Any]:
        """Per-arm calls, mean reward, cost, selection probability (for `status`)."""

    async def aclose(self) -> None: ...


class BuiltinProposer:
    """What the model-free proposers share: one bandit arm, "offline", that costs nothing,
    and counts of what it proposed and earned. Subclasses implement `_propose(ctx)`."""

    ARM = "offline"

    def __init__(self) -> None:
        self.observed = 0  # children evaluated, as reported through `observe`
        self.reward = 0.0  # their summed rewards
        self.made: dict[str, int] = {}  # proposals made, by operator

    def _propose(self, ctx: ProposalContext) -> Proposal:
        raise NotImplementedError

    def arms(self) -> list[str]:
        return [self.ARM]

    async def start(self) -> None:
        return None

    async def propose(self, ctx: ProposalContext) -> Proposal:
        proposal = self._propose(ctx)
        self.made[proposal.operator] = self.made.get(proposal.operator, 0) + 1
        return proposal

    def observe(self, arm: str, reward: float, cost: float) -> None:
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

    async def aclose(self) -> None:
        return None
