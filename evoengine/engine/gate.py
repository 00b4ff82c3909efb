"""The minibatch gate, for problems that define `minibatch(candidate_path)` (and with
`evaluation.gate` on): a child is scored by `minibatch` first and evaluated in full only if
it does not fall below its parent's minibatch score (with `evaluation.gate_strict`, only if it
beats it); otherwise it is admitted screened, with the reason.
Minibatch scores are kept in memory by candidate id, so each parent is scored once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..problem import EvalResult
from ..records import Child


class Gate:
    def __init__(self, pool: Any, strict: bool = False):
        self.pool = pool
        self.strict = strict
        self.scores: dict[int, asyncio.Future[float | None]] = {}

    async def _minibatch(self, text: str, label: str, proposal: int) -> EvalResult:
        return await self.pool.evaluate(text, label=f"{label} (minibatch)", entry="minibatch", proposal=proposal)

    async def _score(self, text: str, label: str, proposal: int) -> float | None:
        result = await self._minibatch(text, label, proposal)
        return result.score if result.valid else None

    @staticmethod
    def _known(value: float | None) -> asyncio.Future[float | None]:
        future = asyncio.get_running_loop().create_future()
        future.set_result(value)
        return future

    async def check(self, child: Child) -> EvalResult | None:
        """None when the child passed (its minibatch score goes to its proposal's meta, then its
        metrics), else the screened result it is admitted with instead of a full evaluation."""
        parent = child.parents[0]
        if parent.id not in self.scores:  # the seed's, or after a resume; a passed child's is known
            known = parent.metrics.get("gate_score")
            self.scores[parent.id] = (
                self._known(known)
                if known is not None
                else asyncio.ensure_future(self._score(parent.text, f"parent {parent.id}", parent.id))
            )
        t0 = time.monotonic()
        result = await self._minibatch(child.proposal.text, f"candidate {child.pid}", child.pid)
        mine = result.score if result.valid else None
        theirs = await asyncio.shield(self.scores[parent.id])
        child.timings["gate_s"] = time.monotonic() - t0
        if mine is not None and (theirs is None or mine > theirs or (mine == theirs and not self.strict)):
            self.scores[child.pid] = self._known(mine)
            child.proposal.meta["gate_score"] = mine
            return None
        metrics = {k: v for k, v in (("gate_score", mine), ("parent_gate_score", theirs)) if v is not None}
        said = f"scored {mine:.6g}" if mine is not None else "was invalid"
        than = "above" if self.strict else "at least"
        why = "" if result.valid else f"\n{result.feedback}"
        shown = "(invalid)" if theirs is None else format(theirs, ".6g")
        return EvalResult(
            score=None,
            valid=False,
            metrics=metrics,
            feedback=f"gate: {said} on the minibatch, not {than} its parent's {shown}; not evaluated in full{why}",
        )
