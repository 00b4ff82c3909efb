"""The first evaluation worker, started before the engine knows its run.

A worker's boot (an interpreter, numpy, the sandbox's modules) and the engine's own imports
and config are both on the path to a run's first evaluation; started one after the other
they add up. `EarlyWorker.start` launches the first worker as soon as the command line is
read, for the problem's folder and run directory it names, with the default limits and
bubblewrap if it is installed; the worker warms up and waits for the rest of its arguments.
The pool takes it only if it would have launched that very process (the same command line,
sandbox included, environment, folder and descriptors: `pool.Launch`); else it is killed and
the pool starts its own. A guess can change how early the worker starts, never how it runs.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..errors import ProblemError
from ..problem import resolve_problem_path
from .helper import Helper
from .pool import Launch, launch_spec, new_folder, slot_folder
from .sandbox import Limits
from .view import bubblewrap_command, plan_view

log = logging.getLogger(__name__)


class EarlyWorker:
    """A launched first worker waiting for its job, and the folder it was launched in."""

    def __init__(self, helper: Helper, folder: Path, launch: Launch) -> None:
        self.helper: Helper | None = helper
        self.folder: Path | None = folder  # removed by `close` until a pool takes it
        self.launch = launch

    @classmethod
    async def start(cls, problem: str | Path, run_dir: Path | None = None) -> EarlyWorker | None:
        """The first worker for `problem` (a bundled name, a folder or a problem.py) and a run in
        `run_dir`; None if the problem is not found (loading it will say why) or the launch
        failed (the pool's own will say why)."""
        try:
            problem_dir = resolve_problem_path(problem).parent
        except ProblemError:
            return None
        limits = Limits()  # the config's defaults; a run that changes what a launch depends on gets its own
        view = plan_view(problem_dir, [run_dir] if run_dir else [], limits.max_file_mb, limits.reads)
        folder = new_folder()
        spec = launch_spec(slot_folder(folder, 0), limits.env, bubblewrap_command(view, limits.network), None)
        helper = Helper("slot 0")  # the name the pool's slot gives its log lines
        try:
            await helper.launch(list(spec.command), dict(spec.env), cwd=spec.cwd, pass_fds=spec.pass_fds)
        except BaseException as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if not isinstance(exc, OSError):
                raise
            log.debug("no early evaluation worker (%s); the pool starts its own", exc)
            return None
        return cls(helper, folder, spec)

    def hand_over_folder(self) -> Path:
        """Its temporary folder, from now on the pool's to keep and remove."""
        folder, self.folder = self.folder, None
        assert folder is not None, "an early worker is handed to one pool"
        return folder

    async def take(self, launch: Launch) -> Helper | None:
        """The worker, if it was launched as `launch` says and still runs; else None, and it is stopped."""
        helper, self.helper = self.helper, None
        if helper is not None and launch == self.launch and helper.pid is not None:
            log.debug("the first evaluation worker was launched early")
            return helper
        if helper is not None:
            log.debug("the early evaluation worker does not fit this run (its config or problem); replaced")
            await helper.stop(grace_s=0.0)
        return None

    async def close(self) -> None:
        """Stop the worker unless a pool took it, and remove its folder unless a pool has it
        (in the event loop that launched it, before that loop closes)."""
        helper, self.helper = self.helper, None
        if helper is not None:
            await helper.stop(grace_s=0.0)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
