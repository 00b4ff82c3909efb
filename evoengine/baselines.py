"""`evoengine baselines`: the search against the simple baselines on a user's own problem.

A search is worth its machinery only where it beats what a researcher would do without it:
independent sampling from the seed (`selection.strategy=iid`) and greedy refinement of the
current best (`selection.strategy=greedy`), at the same budget, with the same models and
evaluator. This runs all three on one problem for several seeds, each an ordinary run in
its own folder (`DIR/search-s0`, `DIR/iid-s0`, `DIR/greedy-s0`, ... seed by seed, so a
stopped comparison has whole seeds), and prints `evoengine compare` of them: the setups
paired seed by seed, with a 95% interval. Running the same command again with `--run-dir
DIR` keeps the runs that reached their budget, resumes the one that was stopped and adds
any seeds asked for beyond them. `jobs` runs go at once, each in its own process.
"""

from __future__ import annotations

import concurrent.futures as futures
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import load_config
from .engine import new_run_dir
from .engine.rundir import RunDir
from .errors import ConfigError
from .records import FINISHED
from .report.compare import comparison_table
from .status import run_status
from .store import FILENAME, RunReader
from .trackers import flat

SETUPS = {"search": [], "iid": ["selection.strategy=iid"], "greedy": ["selection.strategy=greedy"]}


def plan(root: Path, seeds: int, setups: dict[str, list[str]]) -> list[tuple[str, int, Path]]:
    """(setup, seed, run folder) in the order they run: seed by seed, each setup in turn."""
    return [(setup, seed, root / f"{setup}-s{seed}") for seed in range(seeds) for setup in setups]


def with_setups(more: list[list[str]]) -> dict[str, list[str]]:
    """The three setups and the user's own (`--setup NAME KEY=VALUE ...`: an ablation, say)."""
    setups = dict(SETUPS)
    for name, *overrides in more:
        if not re.fullmatch(r"[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*", name) or name in setups:
            taken = f"{name!r} is taken" if name in setups else f"{name!r} cannot name a folder"
            raise ConfigError(f"--setup {name}: {taken}; give a new name of letters, digits, '_', '.' or '-'")
        if not overrides or not all("=" in o for o in overrides):
            raise ConfigError(f"--setup {name}: give its KEY=VALUE overrides after the name, e.g. selection.elites=0")
        setups[name] = overrides
    return setups


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
    jobs: int = 1,
    setups: dict[str, list[str]] = SETUPS,
    progress: bool = False,
    say: Callable[[str], None] = print,
) -> tuple[int, str]:
    """Run (or finish) every setup and seed under `root`, `jobs` runs at a time, each an
    `evoengine run` (or `resume`) of its own; the exit code and the comparison.

    A run stopped short of its budget (interrupted, failing, out of money) stops the comparison
    there: runs not yet started are not started (they would meet the same cause, and runs that
    did not reach their budget are not compared at equal budget); Ctrl-C stops the runs under
    way as it stops one run."""
    extra = [*overrides, *([f"budget.candidates={budget}"] if budget is not None else [])]
    todo, done = [], []
    for setup, seed, run_dir in plan(root, seeds, setups):
        cfg = load_config(config, [*extra, f"seed={seed}", *setups[setup]])
        command = ["run", problem, *(["-c", config] if config else []), "--run-dir", str(run_dir)]
        command += [arg for o in [*extra, f"seed={seed}", *setups[setup]] for arg in ("--set", o)]
        if (run_dir / "archive.sqlite").exists():
            _same_setup(run_dir, RunDir.saved(run_dir)[1], cfg.dump())
            if run_status(run_dir)["admitted"] >= cfg.budget.candidates:
                done.append((setup, seed, run_dir))
                continue
            command = ["resume", str(run_dir), "--budget", str(cfg.budget.candidates)]
        show = progress and jobs == 1
        todo.append(((setup, seed, run_dir), [*command, *([] if show else ["-q"])]))
    say(_plan_line(len(todo), len(done), len(setups), seeds, cfg))
    halt = threading.Event()
    running: set[subprocess.Popen] = set()
    lock = threading.Lock()

    def one(key: tuple[str, int, Path], command: list[str]) -> tuple[tuple[str, int, Path], int, str, str]:
        with lock:
            if halt.is_set():
                return key, 0, "not started", ""
            child = subprocess.Popen(
                [sys.executable, "-m", "evoengine.cli", *command],
                stdout=subprocess.DEVNULL,  # each run's own summary; its store says how it stopped
                stderr=None if "-q" not in command else subprocess.PIPE,  # a progress bar shows; else kept for errors
                text=True,
            )
            running.add(child)
        _, err = child.communicate()
        stopped = _stop_reason(key[2])
        with lock:
            running.discard(child)
            if child.returncode or stopped not in FINISHED:
                halt.set()  # before this worker takes the next run
        return key, child.returncode, stopped, err or ""

    code = 0
    with futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        pending = [pool.submit(one, *task) for task in todo]
        try:
            for future in futures.as_completed(pending):
                key, returncode, stopped, err = future.result()
                (setup, seed, run_dir), name = key, f"{key[0]} seed {key[1]}"
                if stopped == "not started":
                    continue
                best = run_status(run_dir)["best_score"] if (run_dir / "archive.sqlite").exists() else None
                say(f"{name}: best {'-' if best is None else f'{best:.6g}'} (stopped: {stopped})")
                if stopped in FINISHED and returncode == 0:
                    done.append(key)
                elif not code:
                    code = returncode or 1
                    say("\n".join(line for line in err.splitlines()[-5:] if line.strip()))
                    say(f"{run_dir} stopped short of its budget ({stopped}), so no further run was started;")
                    say(f"`evoengine status {run_dir}` says more. The same command with --run-dir {root} goes on.")
        except KeyboardInterrupt:
            halt.set()
            code = 130
            with lock:
                for child in running:
                    child.send_signal(signal.SIGINT)  # as Ctrl-C would: each run stops and keeps what it has
            futures.wait(pending)
            for (setup, seed, run_dir), _, stopped, _ in (f.result() for f in pending):
                if stopped != "not started" and (run_dir / "archive.sqlite").exists():
                    say(f"{setup} seed {seed}: stopped: {stopped} after {run_status(run_dir)['admitted']} candidates")
            say(f"interrupted; the same command with --run-dir {root} goes on from there")
    if code:
        return code, ""
    ordered = [run_dir for _, _, run_dir in sorted(done, key=lambda d: (list(setups).index(d[0]), d[1]))]
    return 0, comparison_table(ordered) if len(ordered) > 1 else ""


def _plan_line(todo: int, done: int, setups: int, seeds: int, cfg: Any) -> str:
    """What the command is about to spend, said before it starts: runs, candidates, money."""
    each = cfg.budget.candidates
    line = f"{todo} runs to make or finish ({done} done before): {setups} setups x {seeds} seeds of {each} candidates"
    if cfg.models and cfg.budget.cost_usd is None:
        line += "; no budget.cost_usd is set, so only the candidates bound each run's model spend"
    elif cfg.models:
        line += f"; each run may spend up to ${cfg.budget.cost_usd:g} (budget.cost_usd: ${todo * cfg.budget.cost_usd:g} in all)"
    return line


def _stop_reason(run_dir: Path) -> str:
    """Why the run in `run_dir` stopped, as its store says ("error" if it never said)."""
    if not (run_dir / FILENAME).exists():
        return "error"
    with RunReader.open(run_dir) as reader:
        return (reader.get_state("stopped") or {}).get("reason", "error")


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
