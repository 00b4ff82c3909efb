"""Which operator to ask each model for, learnt from that model's own record.

The configured weights (`operators.diff/full/crossover`) are where every model starts. Each
closed proposal then scores its (model, operator) pair with `proposal_success`: a third for
a usable child (the reply parsed and applied), a third for a valid one, and a third for
its improvement reward. A pair's estimate is the mean success with `PRIOR_CALLS`
pseudo-proposals of success `PRIOR_SUCCESS` in front, and the model's odds for an operator
are its configured weight times that estimate: a model whose diffs never apply soon gets
few diff requests, while an operator it has barely tried keeps its configured share.

`observe` is pure bookkeeping in closing order, so replaying the closed proposals rebuilds
the exact state after a resume, as for the bandit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config import Operators as OperatorsConfig

PRIOR_CALLS = 2.0
PRIOR_SUCCESS = 0.5


def proposal_success(stage: str, reward: float) -> float:
    """How well one proposal went, in [0, 1]: (usable child + valid child + reward) / 3."""
    made = stage != "failed"
    valid = stage == "valid"
    improved = min(max(reward, 0.0), 1.0) if valid and math.isfinite(reward) else 0.0
    return (made + valid + improved) / 3.0


@dataclass
class OperatorRecord:
    calls: int = 0
    success: float = 0.0  # summed `proposal_success`

    @property
    def estimate(self) -> float:
        return (PRIOR_CALLS * PRIOR_SUCCESS + self.success) / (PRIOR_CALLS + self.calls)


class OperatorOdds:
    """Per (model, operator) success estimates, and the operator odds they give each model."""

    def __init__(self, config: OperatorsConfig):
        self.prior = {"diff": config.diff, "full": config.full, "crossover": config.crossover}
        self.records: dict[str, dict[str, OperatorRecord]] = {}

    def observe(self, arm: str, operator: str, stage: str, reward: float) -> None:
        """Count one closed proposal of `arm` made with `operator` (other operators are not learnt)."""
        if operator not in self.prior:
            return
        record = self.records.setdefault(arm, {}).setdefault(operator, OperatorRecord())
        record.calls += 1
        record.success += proposal_success(stage, reward)

    def weights(self, arm: str) -> dict[str, float]:
        """The odds of each operator for `arm`: configured weight × success estimate."""
        mine = self.records.get(arm, {})
        return {op: w * mine.get(op, OperatorRecord()).estimate for op, w in self.prior.items()}

    def stats(self, arm: str) -> dict[str, dict[str, float]]:
        """Per operator: proposals counted, success estimate, and share of the odds."""
        weights = self.weights(arm)
        total = sum(weights.values()) or 1.0
        mine = {op: self.records.get(arm, {}).get(op, OperatorRecord()) for op in self.prior}
        return {op: {"calls": r.calls, "success": r.estimate, "share": weights[op] / total} for op, r in mine.items()}

    def state(self) -> dict[str, Any]:
        return {arm: {op: (r.calls, r.success) for op, r in ops.items()} for arm, ops in self.records.items()}

    def restore(self, state: dict[str, Any]) -> None:
        """Set the records to a `state()` taken earlier."""
        self.records = {
            arm: {op: OperatorRecord(int(calls), float(success)) for op, (calls, success) in ops.items()}
            for arm, ops in state.items()
        }
