"""The Python API for scripts and notebooks: `run(...)` and `open_run(...)`, the same engine
the CLI drives."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .records import Candidate
from .store import RunReader


class Run:
    """A run directory, read through its store (read-only)."""

    def __init__(self, run_dir: str | Path, summary: Any = None):
        self.run_dir = Path(run_dir)
        self.summary = summary
        RunReader.open(self.run_dir).close()  # fail early on a bad directory

    @property
    def best(self) -> Candidate | None:
        with RunReader.open(self.run_dir) as store:
            best = store.best(1)
            return best[0] if best else None

    @property
    def folder(self) -> bool:
        """True when this run's candidates are folders of files (`evoengine.files`)."""
        with RunReader.open(self.run_dir) as store:
            return bool(store.meta().get("files"))

    def candidates(self) -> list[Candidate]:
        """Every admitted candidate, in admission order."""
        with RunReader.open(self.run_dir) as store:
            return list(store.candidates())

    def lineage(self):
        """The lineage graph (networkx.DiGraph, edges parent -> child)."""
        from .lineage import build_lineage

        with RunReader.open(self.run_dir) as store:
            return build_lineage(store)

    def status(self) -> dict[str, Any]:
        from .status import run_status

        return run_status(self.run_dir)

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r})"


def _overrides(kwargs: dict[str, Any]) -> list[str]:
    """`budget=50` means budget.candidates; other keys use `__` for dots: islands__count=2."""
    keys = {key: "budget.candidates" if key == "budget" else key.replace("__", ".") for key in kwargs}
    return [f"{keys[k]}={v if isinstance(v, str) else json.dumps(v)}" for k, v in kwargs.items()]


def run(
    problem: str | Path,
    config: str | Path | Config | None = None,
    *,
    run_dir: str | Path | None = None,
    from_run: str | Path | None = None,
    progress: bool = False,
    **overrides: Any,
) -> Run:
    """Run a search to its budget and return the run. Example:

    >>> r = evoengine.run("circle_packing", budget=100, islands__count=2)
    >>> r.best.score
    """
    from .engine import create

    if isinstance(config, Config):
        cfg = load_config(None, _overrides(overrides), base=config.dump())
    else:
        cfg = load_config(config, _overrides(overrides))
    paths = {"run_dir": Path(run_dir) if run_dir else None, "from_run": Path(from_run) if from_run else None}
    engine = create(problem, cfg, **paths, progress=progress)
    summary = asyncio.run(engine.run())
    return Run(engine.run_dir, summary)


def open_run(run_dir: str | Path) -> Run:
    return Run(run_dir)
