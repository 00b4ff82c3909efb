"""What a person watching a run sees: a progress bar on a terminal, a plain line now and then
otherwise (a log file gets lines, not hundreds of carriage returns), and the summary."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import FINISHED, Candidate

log = logging.getLogger("evoengine")

PLAIN_EVERY_S = 10.0


@dataclass
class RunSummary:
    run_dir: Path
    admitted: int
    valid: int
    seed_score: float | None
    best: Candidate | None
    # budget, wall time, money, target, interrupted, failing, no reply, key refused, recording ended, error
    stopped: str
    elapsed_s: float  # this process's run time
    total_s: float  # the run's time over all its sessions
    spend: float
    best_path: Path | None = None
    message: str = ""
    start_score: float | None = None  # the best of the seed and the imported candidates
    rechecks: int = 0  # evaluations beyond one per candidate, for a noisy evaluator

    @classmethod
    def of(
        cls,
        ledger: Any,
        run_dir: Path,
        stopped: str,
        message: str,
        clocks: Any,
        best: Candidate | None,
        best_path: Path,
        done_before: int,
    ) -> RunSummary:
        """The summary of a run from its ledger (`best`: the best, when the ledger was not rebuilt)."""
        return cls(
            run_dir=run_dir,
            admitted=max(ledger.admitted, done_before),
            valid=ledger.valid,
            seed_score=ledger.seed_score,
            best=best or ledger.best,
            stopped=stopped,
            elapsed_s=clocks.session(),
            total_s=clocks.elapsed(),
            spend=ledger.spend,
            best_path=best_path if best_path.exists() else None,
            message=message,
            start_score=ledger.start_score,
            rechecks=ledger.rechecks,
        )

    def tracked(self) -> dict[str, Any]:
        """What experiment trackers keep of the run's end."""
        best = self.best.score if self.best is not None else None
        return {"stopped": self.stopped, "admitted": self.admitted, "valid": self.valid, "best_score": best,
                "spend_usd": self.spend}  # fmt: skip

    @property
    def exit_code(self) -> int:
        if self.stopped == "interrupted":
            return 130
        return 1 if self.stopped in ("failing", "error", "no reply", "key refused", "recording ended") else 0

    def lines(self) -> list[str]:
        d = self.run_dir
        took = f"in {self.elapsed_s:.1f} s"
        if self.total_s > self.elapsed_s + 0.05:
            took += f" (this session; {self.total_s:.1f} s over the whole run)"
        out = [
            f"stopped: {self.stopped} after {self.admitted} candidates ({self.valid} valid"
            + (f"; {self.rechecks} rechecks of bests and would-be bests" if self.rechecks else "")
            + f") {took}"
            + (f", spend ${self.spend:.4f}" if self.spend else "")
        ]
        best, start, seed = self.best, self.start_score, self.seed_score
        if best is not None and best.score is not None:
            since = ""
            if start is not None and start != seed:
                since = f"; start {start:.6g} (the best imported candidate)"
            elif seed is not None:
                since = f"; seed {seed:.6g}"
            out.append(f"best score {best.score:.6g} (candidate {best.id}){since}")
        else:
            out.append("no valid candidate")
        if self.best_path:
            out.append(f"best candidate: {self.best_path}")
        if self.stopped not in FINISHED:
            out.append(f"resume:  evoengine resume {d}")
        out.append(f"lineage: evoengine lineage {d}   report: evoengine report {d}")
        if self.message:
            out.append(f"{'error' if self.exit_code else 'note'}: {self.message}")
        return out


class Progress:
    def __init__(self, enabled: bool, total: int | None, name: str, show_spend: bool):
        self.enabled = enabled
        self.total = total
        self.name = name
        self.show_spend = show_spend
        self.bar: Any = None  # a tqdm bar, on a terminal
        self._last = time.monotonic()

    def update(self, admitted: int, valid: int, best: Candidate | None, spend: float) -> None:
        if not self.enabled:
            return
        score = f"{best.score:.6g}" if best is not None and best.score is not None else "-"
        parts = [f"best={score}", f"valid={100.0 * valid / max(1, admitted):.0f}%"]
        if self.show_spend:
            parts.append(f"spend=${spend:.4f}")
        if self.bar is None and sys.stderr.isatty():  # opened at the first admission (a resume's counts on)
            from tqdm import tqdm  # here: off a terminal (logs, -q, scripts) it is never needed

            self.bar = tqdm(total=self.total, initial=admitted, unit="cand", dynamic_ncols=True, file=sys.stderr)
            self.bar.set_description(self.name)
        if self.bar is not None:
            self.bar.update(admitted - self.bar.n)
            self.bar.set_postfix_str(" ".join(parts), refresh=False)
        elif time.monotonic() - self._last >= PLAIN_EVERY_S or admitted == self.total:
            self._last = time.monotonic()
            log.info("%d%s candidates, %s", admitted, f"/{self.total}" if self.total else "", " ".join(parts))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
