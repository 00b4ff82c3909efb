"""Opening a run: a new one (its directory, config and store, the seed checked) or an existing
one to resume (its saved config with the new budget and overrides, its problem found again)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..blocks import PatchError, evolve_blocks
from ..config import Config, load_config
from ..errors import ProblemError
from ..files import FilesError, split_files
from ..peers import open_problem
from ..problem import Problem
from .build import check_evaluator_models
from .loop import Engine
from .rundir import RunDir, imports_from, new_run_dir


def create(
    problem: str | Path,
    config: Config,
    *,
    run_dir: Path | None = None,
    from_run: Path | None = None,
    progress: bool = False,
    harness: Any = None,
    early: Any = None,
) -> Engine:
    """A new run of `problem` (a bundled name, a folder or a problem.py) under `config`; `early`
    is its first evaluation worker if one was launched already (evaluation/early.py)."""
    from .. import __version__

    loaded = open_problem(problem)
    seed = loaded.problem.seed_text()
    for name, text, comment in _seed_files(loaded.problem, seed):
        try:
            evolve_blocks(text, comment)
        except PatchError as exc:
            raise ProblemError(
                f"{loaded.problem.initial_path / name if name else loaded.problem.initial_path}: {exc}"
            ) from exc
    check_evaluator_models(config, loaded.problem)  # before the run directory exists
    imports = imports_from(Path(from_run), config.islands.count) if from_run else []
    for candidate in imports if loaded.problem.folder else ():
        try:
            split_files(candidate.text)
        except FilesError as exc:
            raise ProblemError(
                f"--from {from_run}: candidate {candidate.id} is not a folder of files as {loaded.problem.name}'s "
                f"candidates are ({exc}); import from a run of this problem"
            ) from None
    path = Path(run_dir) if run_dir else new_run_dir(Path("runs"), loaded.problem.name)
    meta = {
        "problem": loaded.problem.name,
        "problem_path": str(loaded.path),
        "evoengine_version": __version__,
        "from_run": str(from_run) if from_run else None,
        **({"files": True} if loaded.problem.folder else {}),  # candidates are folders (`evoengine.files`)
    }
    run = RunDir.create(path, config, meta)
    return Engine(run, config, loaded, progress=progress, imports=imports, harness=harness, early=early)


def _seed_files(problem: Problem, seed: str) -> list[tuple[str, str, str]]:
    """The seed's files (name, text, comment syntax); one nameless file for a single-file seed."""
    if not problem.folder:
        return [("", seed, problem.comment)]
    return [(name, text, problem.file_comment(name)) for name, text in split_files(seed).items()]


def reopen(
    run_dir: Path, *, budget: int | None = None, overrides: tuple[str, ...] = (), progress: bool = False
) -> Engine:
    """The run in `run_dir`, to resume; `budget` is its new total of candidates."""
    run_dir = Path(run_dir)
    meta, saved = RunDir.saved(run_dir)
    extra = [*overrides, *([f"budget.candidates={budget}"] if budget is not None else [])]
    config = load_config(None, extra, base=saved, base_source=str(run_dir / "config.yaml"))
    try:
        loaded = open_problem(meta["problem_path"])
    except ProblemError as exc:
        raise ProblemError(f"this run's problem (recorded as {meta['problem_path']}): {exc}") from exc
    run = RunDir.reopen(run_dir)
    try:
        engine = Engine(run, config, loaded, progress=progress)
        if extra and engine.remaining() != 0:  # a resume with nothing to do changes nothing
            run.save_config(config)
        return engine
    except BaseException:
        run.close()
        raise
