"""`evoengine baselines`: the search against the simple baselines on a user's own problem.

A search is worth its machinery only where it beats what a researcher would do without it:
independent sampling from the seed (`selection.strategy=iid`) and greedy refinement of the
current best (`selection.strategy=greedy`), at the same budget, with the same models and
evaluator. This runs all three on one problem for several seeds, each an ordinary run in
its own folder (`DIR/search-s0`, `DIR/iid-s0`, `DIR/greedy-s0`, ... seed by seed, so a
stopped comparison has whole seeds), and prints `evoengine compare` of them: the setups
paired seed by seed, with a 95% interval. Running the same command again with `--run-dir
DIR` keeps the runs that reached their budget, resumes the one that was stopped and adds
any seeds asked for beyond them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from .config import load_config
from .engine import create, new_run_dir, reopen
from .engine.rundir import RunDir
from .errors import ConfigError
from .report.compare import comparison_table
from .status import run_status
from .trackers import flat

SETUPS = {"search": [], "iid": ["selection.strategy=iid"], "greedy": ["selection.strategy=greedy"]}


def plan(root: Path, seeds: int) -> list[tuple[str, int, Path]]:
    """(setup, seed, run folder) in the order they run: seed by seed, each setup in turn."""
    return [(setup, seed, root / f"{setup}-s{seed}") for seed in range(seeds) for setup in SETUPS]


def default_root(problem: str) -> Path:
    path = Path(problem)
    name = path.parent.name if path.suffix == ".py" else path.name
    return new_run_dir(Path("runs"), f"{name}-baselines")


def run_baselines(
    problem: str,
    *,
    seeds: int,
    root: Path,
    config: str | None = None,
    overrides: list[str] = (),
    budget: int | None = None,
    progress: bool = False,
    say: Callable[[str], None] = print,
) -> tuple[int, str]:
    """Run (or finish) every setup and seed under `root`; the exit code and the comparison.

    A run stopped short of its budget (interrupted, failing, out of money) stops the whole
    comparison there: the next setups would meet the same cause, and a comparison of runs that
    did not reach their budget is not at equal budget."""
    extra = [*overrides, *([f"budget.candidates={budget}"] if budget is not None else [])]
    done = []
    for setup, seed, run_dir in plan(root, seeds):
        cfg = load_config(config, [*extra, f"seed={seed}", *SETUPS[setup]])
        if (run_dir / "archive.sqlite").exists():
            saved = RunDir.saved(run_dir)[1]
            _same_setup(run_dir, saved, cfg.dump())
            if run_status(run_dir)["admitted"] >= cfg.budget.candidates:
                done.append(run_dir)
                continue
            engine = reopen(run_dir, budget=cfg.budget.candidates, progress=progress)
        else:
            engine = create(problem, cfg, run_dir=run_dir, progress=progress)
        summary = asyncio.run(engine.run())
        best = f"{summary.best.score:.6g}" if summary.best is not None else "none valid"
        say(f"{setup:>6} seed {seed}: best {best} after {summary.admitted} candidates (stopped: {summary.stopped})")
        if summary.stopped not in ("budget", "target"):
            say("\n".join(summary.lines()))
            say(f"stopped at {run_dir}; run the same command with --run-dir {root} to go on from there")
            return summary.exit_code or 1, ""
        done.append(run_dir)
    ordered = sorted(done, key=lambda d: list(SETUPS).index(d.name.rsplit("-s", 1)[0]))
    return 0, comparison_table(ordered) if len(ordered) > 1 else ""


def _same_setup(run_dir: Path, saved: dict, wanted: dict) -> None:
    """A run kept from before must be the setup this command asks for (its budget aside): a
    comparison that mixed two configs under one name would mislead."""
    before, now = flat(saved), flat(wanted)
    keys = sorted(k for k in before.keys() | now.keys() if not k.startswith("budget.") and before.get(k) != now.get(k))
    if keys:
        changes = ", ".join(f"{k}: {before.get(k)!r} then, {now.get(k)!r} now" for k in keys[:5])
        raise ConfigError(
            f"{run_dir} was run with another config than this command asks for ({changes}"
            f"{', ...' if len(keys) > 5 else ''}): give the same -c and --set as before, or a new --run-dir"
        )
