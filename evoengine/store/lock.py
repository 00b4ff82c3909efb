"""The run directory's lock: one process runs a run at a time (`engine/rundir.py` takes it);
`status` and a refused second run ask who holds it."""

from __future__ import annotations

import os
import time
from pathlib import Path

LOCK = ".lock"  # beside the store, in the run directory


def lock_holder(run_dir: Path, wait_s: float = 0.0) -> int | None:
    """The live process whose pid the run's lock file names, or None. The holder writes its pid
    just after taking the lock; `wait_s` allows for that moment (the file may be empty, or still
    name the process before it)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            pid = int((run_dir / LOCK).read_text().strip())
            os.kill(pid, 0)
            return pid
        except PermissionError:  # alive, another user's
            return pid
        except (OSError, ValueError):
            if time.monotonic() >= deadline:
                return None
        time.sleep(0.025)
