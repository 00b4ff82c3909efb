"""The warm evaluation worker: one long-lived process per pool slot.

Started by the pool (pool.py: `launch_spec`, under bubblewrap where it works). It imports
numpy and its own modules, then reads the rest of its arguments (a JSON list, the first line
on stdin: the problem, the limits, its folder; the pool may start it before those are
known), imports the problem once, and answers requests (JSON lines on stdin) with results
(JSON lines on its original stdout). Per candidate it forks a fresh sandboxed evaluator, so
isolation costs a fork and a tmpfs mount (milliseconds), not a new interpreter; the modules
an evaluation imported that are installed code, the worker imports after it (`Worker.adopt`),
so the next fork has them. The worker never runs candidate code itself and stays
single-threaded, so forking is safe.

    -> ["--problem", "/p/problem.py", "--limits", "{...}", ...]  (once, first)
    -> {"id": 7, "text": "...", "label": "candidate 12", "entry": "evaluate"}
    <- {"ready": true, "isolation": "...", "pid": 123}          (once, after start-up)
    <- {"error": "...", "kind": "problem"}                      (instead, then exits)
    <- {"id": 7, "result": {...EvalResult...}, "wall_s": 0.01, "cpu_s": 0.008}

Processes, with namespaces (root, or an unprivileged user namespace):

    pool ── worker (outside; waits) ── init of new PID+network+mount namespaces, inside the
            (or bwrap)                 filesystem view: the worker loop
                                         └── E, per candidate: own mount namespace and tmpfs,
                                               own session, rlimits, own uid, no capabilities;
                                               runs the problem's evaluate()
                                               └── call_candidate children and their children

Without namespaces the worker loop itself forks E and is a child subreaper instead, and E
works in a temporary folder that the loop removes afterwards.

E reports on a pipe that only it holds (fd 3), tagged with a per-evaluation token; anything
else on that pipe means candidate code inside E wrote to it, and the result is discarded.
After every evaluation the loop kills everything left: as the namespace's init, with one
kill(-1) (which cannot reach outside the namespace); otherwise by sweeping /proc for every
process below it; the kernel frees E's tmpfs with the last of them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.util
import json
import logging
import os
import re
import resource
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from evoengine.errors import ProblemError
from evoengine.evaluation import call, models, mounts, namespaces, processes, sandbox
from evoengine.evaluation.protocol import Channel, one_message, write_message
from evoengine.evaluation.view import THREAD_VARS, View
from evoengine.files import split_files, write_folder
from evoengine.peers import open_problem
from evoengine.problem import EvalResult, LoadedProblem

log = logging.getLogger("evoengine.evaluation.worker")

MAX_RESULT_MB = 16
SETUP_FAILED = 72  # exit code of a sandbox child whose set-up failed before evaluate()
MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
# standard-library modules whose import does something (prints, opens a browser or a window)
NEVER_ADOPTED = {"__hello__", "__phello__", "antigravity", "idlelib", "this", "tkinter", "turtle", "turtledemo"}


class Worker:
    """Evaluates candidates of one problem, each in a freshly forked sandbox."""

    def __init__(
        self,
        loaded: LoadedProblem,
        limits: sandbox.Limits,
        isolation: sandbox.Isolation,
        slot_dir: Path,
        view: View | None = None,
        models_fd: int | None = None,
    ) -> None:
        self.models_fd = models_fd  # the evaluator models proxy's folder (evaluation/models.py)
        self.loaded = loaded
        self.limits = limits
        self.isolation = isolation
        self.slot_dir = slot_dir
        self.view = view if isolation.view else None
        self.pid = os.getpid()
        self.adopted: set[str] = set()  # modules an evaluation imported that this loop imported since
        self.refused: set[str] = set()  # and those it would not (not checked again after every evaluation)

    def evaluate(self, text: str, label: str, entry: str = "evaluate", access: dict | None = None) -> EvalResult:
        """Run the problem's function `entry` (default `evaluate`) on `text` in a fresh sandbox
        (with `access` to the evaluator models: a token and their names)."""
        # With a view, E mounts its own scratch folder; else it works in one we remove after.
        workdir = None if self.view else Path(tempfile.mkdtemp(prefix="eval-", dir=self.slot_dir))
        output = tempfile.TemporaryFile(dir="/tmp" if self.view else self.slot_dir)
        token = secrets.token_hex(16)
        try:
            result = self._run(text, workdir, output, token, entry, access)
        finally:
            self.end_everything()
            output_text = _tail(output, self.limits.max_output_kb * 1024)
            output.close()
            if workdir is not None:
                shutil.rmtree(workdir, onerror=_force_remove)
        if not result.valid and output_text:
            result.feedback = f"{result.feedback}\n\n{output_text}"
        log.debug("%s: %s", label, "valid" if result.valid else result.feedback.splitlines()[0])
        return result

    def end_everything(self) -> None:
        """Kill every process the last evaluation left behind, and reap them."""
        if self.isolation.pid_namespace and os.getpid() == 1:  # init of our own namespace:
            with contextlib.suppress(ProcessLookupError):  # one signal reaches every other process in it, none outside
                os.kill(-1, signal.SIGKILL)
            processes.reap_all_children(wait_s=5.0)
        elif processes.has_children():  # anything left below us (we are a subreaper)
            processes.kill_descendants()
            processes.reap_all_children()

    def _run(
        self, text: str, workdir: Path | None, output: BinaryIO, token: str, entry: str, access: dict | None
    ) -> EvalResult:
        def evaluator(channel: int, _: int | None) -> None:
            self._evaluator(text, workdir, output.fileno(), channel, token, entry, access)

        finished = processes.run_child(evaluator, self.limits.timeout_s, MAX_RESULT_MB, SETUP_FAILED)
        if finished.stopped == "timeout":
            return EvalResult.invalid(
                f"timed out after {self.limits.timeout_s:g} s (wall clock); "
                "the evaluation and everything it started were killed"
            )
        if finished.stopped == "result":
            return EvalResult.invalid(f"evaluate() returned a result larger than {MAX_RESULT_MB} MB")
        status, lines = finished.status, finished.result.splitlines()
        if not lines or (status != 0 and len(lines) != 1):
            how = processes.describe_status(status)
            if status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == SETUP_FAILED:
                how += " (the sandbox could not be set up; see the worker log)"
            return EvalResult.invalid(f"the evaluation process {how} without reporting a result")
        message = one_message(finished.result)
        if message is None or message.get("token") != token:
            return EvalResult.invalid(
                "the evaluator's result channel received data that did not come from the evaluator "
                "(candidate code running inside the evaluator process wrote to it); result discarded"
            )
        if "error" in message:
            return EvalResult.invalid(str(message["error"]))
        self.adopt(message.get("imported"))
        return EvalResult.coerce(message.get("result"))

    def adopt(self, names: Any) -> None:
        """Import here the modules an evaluation imported, so that later evaluations inherit them
        instead of importing them again (numpy loads numpy.ma and numpy.random on first use, and
        every forked evaluator of cap_set or symbolic_regression imported them afresh). Only
        installed code is adopted: standard-library modules and submodules of packages this loop
        has imported, found under the Python installation, never in the problem's folder or
        anywhere an evaluation could write. Candidate code never runs here."""
        if not isinstance(names, list):
            return
        fresh = []
        for name in sorted(n for n in names if isinstance(n, str)):  # a package before its submodules
            if name in sys.modules or name in self.refused:
                continue
            if not _installed(name, self.loaded.path):
                self.refused.add(name)
                continue
            try:
                importlib.import_module(name)
            except Exception as exc:  # an evaluation imported it; it need not import here
                log.debug("not adopting %s: %s: %s", name, type(exc).__name__, exc)
                self.refused.add(name)
            else:
                self.adopted.add(name)
                fresh.append(name)
        if fresh:
            gc.collect()
            gc.freeze()  # as at start-up: forked evaluators do not copy the new objects' pages
            _warn_if_threaded(f"importing {', '.join(fresh)}")

    # ------------------------------------------------------------------ in the children

    def _evaluator(
        self, text: str, workdir: Path | None, out_fd: int, channel: int, token: str, entry: str, access: dict | None
    ) -> None:  # pragma: no cover
        """E: own session and scratch space, confine ourselves, run the problem's evaluate(),
        report (with the modules it imported), exit."""
        known = set(sys.modules)
        try:
            if "numpy.random" in self.adopted:  # imported here, it would have drawn a fresh seed: so it does
                sys.modules["numpy.random"].seed()
            sandbox.enter_child(self.pid, SETUP_FAILED, out_fd, channel, keep=self.models_fd)  # models at fd 4
            # Orphans of candidate code come back to us, for call_candidate's sweep.
            sandbox.prctl(sandbox.PR_SET_CHILD_SUBREAPER, 1)
            models.configure(access if self.models_fd is not None else None)
            uid = self.isolation.uid
            if self.view is not None:
                workdir = mounts.private_scratch(self.view, self.limits.disk_mb, uid)
            assert workdir is not None
            if self.loaded.problem.folder:  # several files: the evaluator gets a folder holding them
                candidate = write_folder(split_files(text), workdir / "candidate")
            else:
                candidate = workdir / f"candidate{self.loaded.problem.suffix}"
                candidate.write_text(text, encoding="utf-8", errors="surrogatepass")
            for path in (workdir, candidate, *candidate.rglob("*")) if uid is not None else ():
                os.chown(path, uid, uid)
            os.chdir(workdir)
            os.environ.update(
                HOME=str(workdir),
                TMPDIR="/tmp" if self.view is not None else str(workdir),
                PWD=str(workdir),
                USER="evoengine-sandbox",
                LOGNAME="evoengine-sandbox",
            )
            tempfile.tempdir = None
            sandbox.confine(self.limits, self.isolation)
            sandbox.die_with_parent(self.pid, SETUP_FAILED)  # again: a change of uid clears it
        except BaseException as exc:
            write_message(3, {"token": token, "error": f"sandbox set-up failed: {type(exc).__name__}: {exc}"})
            os._exit(SETUP_FAILED)
        processes.reopen_stdio()
        call.configure(timeout_s=self.limits.timeout_s, max_output_kb=self.limits.max_output_kb)
        function = self.loaded.evaluate if entry == "evaluate" else getattr(self.loaded.module, entry, None)
        try:
            if callable(function):
                result = EvalResult.coerce(function(str(candidate)))
            else:
                result = EvalResult.invalid(f"{self.loaded.path} defines no function {entry}(candidate_path)")
        except BaseException as exc:
            said = f": {text}" if (text := call.safe_str(exc)) else ""
            detail = call.traceback_tail(exc, 3000)
            result = EvalResult.invalid(f"{entry}() raised {type(exc).__name__}{said}\n{detail}")
        try:
            imported = sorted(set(sys.modules) - known)[:200]
            message = {"token": token, "result": result.to_dict(), "imported": imported}
            json.dumps(message, allow_nan=False)
        except (TypeError, ValueError) as exc:
            message = {"token": token, "error": f"{entry}() returned a result that is not JSON: {exc}"}
        processes.flush_stdio()
        write_message(3, message)
        os._exit(0)


def _installed(name: str, problem: Path) -> bool:
    """Is module `name` installed code the loop may import: a standard-library module or a
    submodule of a package already imported, found under the Python installation?"""
    if len(name) > 200 or not MODULE_NAME.fullmatch(name) or name.partition(".")[0] in NEVER_ADOPTED:
        return False
    package = name.rpartition(".")[0]
    allowed = package in sys.modules if package else name in sys.stdlib_module_names
    if not allowed:
        return False
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    where = Path(spec.origin).resolve()
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return not where.is_relative_to(problem.parent.resolve()) and any(where.is_relative_to(r) for r in roots)


def _warn_if_threaded(after: str) -> None:
    threads = len(os.listdir("/proc/self/task"))
    if threads > 1 or threading.active_count() > 1:
        log.warning(
            "the worker has %d threads after %s; forking a threaded process can deadlock (set *_NUM_THREADS=1?)",
            threads,
            after,
        )


def _tail(output: BinaryIO, cap: int) -> str:
    """The last `cap` bytes of the captured output, introduced by a one-line header."""
    size = os.fstat(output.fileno()).st_size
    if size == 0:
        return ""
    start = max(0, size - cap)
    text = os.pread(output.fileno(), size - start, start).decode("utf-8", "replace")
    if start:
        return f"--- output: last {size - start} of {size} bytes ---\n{text}"
    return f"--- output ---\n{text}"


def _force_remove(func: Any, path: str, exc_info: Any) -> None:
    """rmtree helper: candidate code may have left folders without write permission."""
    with contextlib.suppress(OSError):
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        func(path)


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", required=True, type=Path)
    parser.add_argument("--limits", required=True)
    parser.add_argument("--slot-dir", required=True, type=Path)
    parser.add_argument("--uid", required=True, type=int)
    parser.add_argument("--parent", required=True, type=int)  # checked by protocol.BOOT
    parser.add_argument("--view", help="the filesystem view (JSON); none: no namespaces")
    parser.add_argument("--bwrap", choices=["root", "user"], help="started under bubblewrap, in this mode")
    parser.add_argument("--models-fd", type=int, help="descriptor of the evaluator models proxy's folder")
    if sys.path and sys.path[0] in ("", os.getcwd()):  # `-c` puts the current folder first
        del sys.path[0]
    for var in THREAD_VARS:  # the pool sets these too; numpy must see them at import
        os.environ[var] = "1"
    with contextlib.suppress(ImportError):  # warm: evaluators almost always use numpy
        import numpy  # noqa: F401
    # Warm now; the rest of the arguments come on stdin, so the pool may start us before the
    # engine knows its config (early.py). End of input: nobody wants us.
    job = sys.stdin.buffer.readline()
    if not job:
        return 0
    args = parser.parse_args([*(sys.argv[1:] if argv is None else argv), *json.loads(job)])
    channel = Channel("evaluation worker")  # stray prints (from the problem module, say) go to stderr
    send = channel.send
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    limits = sandbox.Limits.from_json(args.limits)
    view = View.from_json(args.view) if args.view else None
    try:
        loaded = open_problem(args.problem)
    except ProblemError as exc:
        send({"error": str(exc), "kind": "problem"})
        return 1
    except BaseException as exc:
        send({"error": f"{args.problem}: importing it failed with {type(exc).__name__}: {exc}", "kind": "problem"})
        return 1
    try:
        isolation = namespaces.probe(limits, view, args.bwrap or "")
    except OSError as exc:  # only under bubblewrap: the pool starts us again without it
        send({"error": str(exc), "kind": "sandbox"})
        return 1
    if isolation.pid_namespace and not args.bwrap:  # returns only in the namespace's init
        isolation = namespaces.become_init(isolation, limits, channel.fd, view)
    elif not isolation.pid_namespace:
        sandbox.prctl(sandbox.PR_SET_CHILD_SUBREAPER, 1)  # orphans come back to us for the sweep
    must_read = [Path(p) for p in sys.path if p] + [loaded.path.parent, args.slot_dir, Path(sys.executable)]
    isolation = sandbox.probe_uid(isolation, args.uid, must_read)
    if isolation.view:
        os.environ["HOME"] = "/tmp"
    sandbox.prctl(sandbox.PR_SET_DUMPABLE, 0)  # candidates cannot ptrace or write our memory
    worker = Worker(loaded, limits, isolation, args.slot_dir, view, args.models_fd)
    # Move everything loaded so far out of the collector's reach: a garbage collection in a
    # forked child would otherwise touch (and copy) every page of the warm interpreter.
    gc.collect()
    gc.freeze()
    try:
        _warn_if_threaded("importing the problem")
        missing = isolation.missing(limits.network)
        send({"ready": True, "isolation": isolation.describe(), "missing": missing, "pid": os.getpid()})
        for line in sys.stdin.buffer:
            request = json.loads(line)
            wall0, cpu0 = time.monotonic(), _cpu_seconds()
            label, entry = request.get("label", "candidate"), str(request.get("entry", "evaluate"))
            result = worker.evaluate(request["text"], label, entry, request.get("models"))
            took = {"wall_s": time.monotonic() - wall0, "cpu_s": _cpu_seconds() - cpu0}
            send({"id": request["id"], "result": result.to_dict(), **took})
        return 0
    finally:
        worker.end_everything()


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _cpu_seconds() -> float:
    """CPU used by the worker and every child it has reaped (the evaluations)."""
    usages = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


if __name__ == "__main__":
    sys.exit(main())
