"""The engine: one run's search, in small pieces that talk downward only.

`loop.Engine` keeps proposals and evaluations in flight and acts on what the pieces report:
`ledger` (the one writer of admissions and failures, synchronous), `turns` (live, or a
recorded run's schedule), `screening` and `gate` (what gets evaluated), `rundir` (the
directory, its lock and best file), `build` (proposer, pool, novelty filter from the config)
and `progress` (the bar and the summary).
"""

from __future__ import annotations

from .build import build_proposer, judge_says_novel
from .ledger import Ledger
from .loop import Engine
from .opening import create, reopen
from .progress import RunSummary
from .rundir import new_run_dir

__all__ = ["Engine", "Ledger", "RunSummary", "build_proposer", "create", "judge_says_novel", "new_run_dir", "reopen"]
