"""Self-evolution: evoengine evolving its own harness.

The candidate is a harness file: a copy of `evoengine/harness/default.py`, whose policy block
(between the EVOLVE-BLOCK markers) is what changes. A candidate harness is scored by short
inner searches run with it on a suite of problems, several seeds each: the normalised area
under each search's best-so-far curve, averaged. Scoring is staged: one problem and seed
first, the full suite only if that stage reaches `gate` x the default harness's stage score.

The harness is untrusted code, so it never runs in the process that scores it: the inner
engine talks to it through `HarnessProxy`, which forwards each policy or prompt call to a
forked child holding the harness and gets plain data back. Scores, the store and the budget
stay with the inner engine, out of the harness's reach. The whole evaluation runs in the
sandbox like any candidate's.

`evoengine self-evolve` writes the problem folder (problem.py, suite.json, the seed harness)
into the run directory and runs an ordinary search on it, so status, lineage, report and
resume work as for any run. The best harness lands in `best/`, ready for `harness: PATH`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import select
import shutil
import signal
import struct
import tempfile
from pathlib import Path
from typing import Any

from .config import load_config
from .errors import EvoError
from .evaluation.processes import write_all
from .problem import EvalResult, Problem, resolve_problem_path
from .records import Candidate, ProposalContext

log = logging.getLogger(__name__)

DEFAULT_HARNESS = Path(__file__).resolve().parent / "harness" / "default.py"
CALL_TIMEOUT_S = 20.0


# ---------------------------------------------------------------- the proxy


def _send(fd: int, obj: Any) -> None:
    data = json.dumps(obj).encode()
    write_all(fd, struct.pack("!I", len(data)) + data)


def _recv(fd: int, timeout: float | None) -> Any:
    def read(n: int) -> bytes:
        out = b""
        while len(out) < n:
            if timeout is not None and not select.select([fd], [], [], timeout)[0]:
                raise TimeoutError(f"the harness did not answer within {timeout:.0f} s")
            chunk = os.read(fd, n - len(out))
            if not chunk:
                raise EOFError("the harness process ended")
            out += chunk
        return out

    (size,) = struct.unpack("!I", read(4))
    return json.loads(read(size))


def _ctx_data(ctx: ProposalContext) -> dict[str, Any]:
    return {
        "problem": {k: getattr(ctx.problem, k) for k in ("name", "description", "initial", "language", "kind")},
        "parent": dataclasses.asdict(ctx.parent),
        "inspirations": [dataclasses.asdict(c) for c in ctx.inspirations],
        "failures": list(ctx.failures),
        "island": ctx.island,
        "attempt": ctx.attempt,
        "rng": ctx.rng.getstate(),
    }


def _candidate(d: dict[str, Any]) -> Candidate:
    return Candidate(**{**d, "parents": tuple(d["parents"])})


def _restore(rng: random.Random, state: list) -> random.Random:
    """`rng` set to a state that went through JSON."""
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng


def _ctx(d: dict[str, Any]) -> ProposalContext:
    return ProposalContext(
        problem=Problem(**d["problem"]),
        parent=_candidate(d["parent"]),
        inspirations=[_candidate(c) for c in d["inspirations"]],
        failures=d["failures"],
        rng=_restore(random.Random(), d["rng"]),
        island=d["island"],
        attempt=d["attempt"],
    )


def _serve(harness: Any, rfd: int, wfd: int) -> None:
    """The child's loop: answer harness calls until the pipe closes."""
    while True:
        try:
            request = _recv(rfd, None)
        except EOFError:
            return
        try:
            ctx = _ctx(request["ctx"])
            method, args = request["method"], request["args"]
            if method not in ("offline", "plan", "messages", "repair"):
                raise ValueError(f"unknown harness method {method!r}")
            if method in ("messages", "repair"):  # their first argument is the plan
                args = [_plan(args[0]), *args[1:]]
            result = getattr(harness, method)(ctx, *args)
            if method in ("offline", "plan"):  # an OfflinePlan or a Plan
                result = dataclasses.asdict(result)
            _send(wfd, {"ok": result, "rng": ctx.rng.getstate()})
        except Exception as exc:  # the harness's fault, reported to the caller
            _send(wfd, {"error": f"{type(exc).__name__}: {exc}"})


def _plan(d: dict[str, Any]):
    from .harness import Plan

    return Plan(**d)


class HarnessProxy:
    """The harness at `path`, loaded in a forked child and called over a pipe."""

    def __init__(self, path: Path, config):
        from .harness import load_harness

        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child always ends in os._exit
            code = 0
            try:
                os.dup2(down_r, 3)
                os.dup2(up_w, 4)
                os.closerange(5, 4096)  # nothing of the evaluator's (its result channel!) stays open
                harness = load_harness(config.replace(harness=str(path)))
                _serve(harness, 3, 4)
            except BaseException as exc:  # noqa: BLE001 - report and leave
                with contextlib.suppress(OSError):
                    _send(4, {"error": f"{type(exc).__name__}: {exc}"})
                code = 1
            finally:
                os._exit(code)
        os.close(down_r)
        os.close(up_w)
        self.rfd, self.wfd = up_r, down_w

    def _call(self, method: str, ctx: ProposalContext, *args: Any) -> Any:
        _send(self.wfd, {"method": method, "ctx": _ctx_data(ctx), "args": list(args)})
        reply = _recv(self.rfd, CALL_TIMEOUT_S)
        if "error" in reply:
            raise RuntimeError(f"harness {method}() failed: {reply['error']}")
        _restore(ctx.rng, reply["rng"])
        return reply["ok"]

    def offline(self, ctx: ProposalContext):
        from .harness import OfflinePlan

        return OfflinePlan(**self._call("offline", ctx))

    def plan(self, ctx: ProposalContext, arm: str):
        return _plan(self._call("plan", ctx, arm))

    def messages(self, ctx: ProposalContext, plan) -> list[dict[str, str]]:
        return self._call("messages", ctx, dataclasses.asdict(plan))

    def repair(self, ctx, plan, messages, reply, error) -> list[dict[str, str]]:
        return self._call("repair", ctx, dataclasses.asdict(plan), messages, reply, error)

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


# ---------------------------------------------------------------- inner searches


def area_under_best(scores: list[float | None], budget: int) -> float:
    """Mean over the first `budget` admissions of (best so far - seed) / |seed|."""
    if not scores or scores[0] is None:
        return 0.0
    seed = scores[0]
    scale = max(abs(seed), 1e-9)
    best, total = seed, 0.0
    for k in range(budget):
        if k < len(scores) and scores[k] is not None:
            best = max(best, scores[k])
        total += (best - seed) / scale
    return total / budget


def inner_search(
    harness: Path, problem: str, seed: int, budget: int, overrides: list[str], proxy: bool = True
) -> float:
    """Run one short search with `harness` and return its normalised area under the curve."""
    from .engine import create
    from .store import RunStore

    config = load_config(
        None,
        [
            *overrides,
            f"seed={seed}",
            f"budget.candidates={budget}",
            "concurrency.deterministic=true",
            "concurrency.proposals=1",
            "concurrency.evaluations=1",
            *([] if proxy else [f"harness={harness}"]),
        ],
        base={},
    )
    agent = HarnessProxy(harness, config) if proxy else None
    try:
        with tempfile.TemporaryDirectory(prefix="inner-") as tmp:
            run_dir = Path(tmp) / "run"
            engine = create(problem, config, run_dir=run_dir, harness=agent)
            asyncio.run(engine.run())
            with RunStore.open(run_dir, readonly=True) as store:
                scores = [c.score if c.valid else None for c in store.candidates()]
    finally:
        if agent is not None:
            agent.close()
    return area_under_best(scores, budget)


@dataclasses.dataclass
class Suite:
    problems: list[str]
    seeds: list[int]
    inner_budget: int
    gate: float
    overrides: list[str]
    default_stage: float | None = None

    def pairs(self) -> list[tuple[str, int]]:
        return [(p, s) for p in self.problems for s in self.seeds]


def harness_problem(suite_path: Path) -> tuple[Problem, Any]:
    """The `problem` and `evaluate` of a self-evolution problem folder."""
    suite = Suite(**json.loads(Path(suite_path).read_text()))
    per_search = 10.0 + 0.6 * suite.inner_budget
    problem = Problem(
        name="harness",
        description=(
            "evoengine's own harness: the policy and prompt assembly used for every proposal of a "
            "search (which edit families the offline operators try and how big their steps are, "
            "which operator a model is asked for, how many inspirations it sees, temperature, and "
            "the prompt text). It is scored by short searches run with it on several problems and "
            "seeds: the area under the best-so-far curve, normalised by the seed's score. Only the "
            "policy block may change; keep the Harness class's methods working."
        ),
        initial="initial.py",
        language="python",
        kind="harness",
        timeout_s=60.0 + per_search * len(suite.pairs()),
        memory_mb=4096,
        reads=tuple(suite.problems),  # the inner searches' problems, wherever they are
    )

    def evaluate(path: str) -> EvalResult:
        areas: dict[str, float] = {}
        for problem_dir, seed in suite.pairs():
            name = f"{Path(problem_dir).name}:{seed}"  # the suite holds problem folders
            try:
                area = inner_search(Path(path), problem_dir, seed, suite.inner_budget, suite.overrides)
            except (EvoError, RuntimeError, OSError) as exc:
                return EvalResult.invalid(f"the inner search on {name} with this harness failed: {exc}")
            areas[name] = area
            if len(areas) == 1 and suite.default_stage is not None and area < suite.gate * suite.default_stage:
                return EvalResult(
                    score=area - 1.0,
                    metrics={"stage": 1, "stage_area": area},
                    instances=areas,
                    feedback=f"stopped after stage 1: area {area:.4f} on {name} is below "
                    f"{suite.gate} x the default harness's {suite.default_stage:.4f}",
                )
        score = sum(areas.values()) / len(areas)
        per_problem = {}
        for key, value in areas.items():
            per_problem.setdefault(key.split(":")[0], []).append(value)
        return EvalResult(
            score=score,
            metrics={"stage": 2, **{f"area_{k}": sum(v) / len(v) for k, v in per_problem.items()}},
            instances=areas,
            feedback="areas under the best-so-far curve: " + ", ".join(f"{k} {v:.4f}" for k, v in areas.items()),
        )

    return problem, evaluate


PROBLEM_FILE = '''"""Self-evolution of evoengine's harness (written by `evoengine self-evolve`)."""

from pathlib import Path

from evoengine.selfevolve import harness_problem

problem, evaluate = harness_problem(Path(__file__).with_name("suite.json"))
'''


def prepare(
    folder: Path,
    *,
    problems: list[str],
    seeds: list[int],
    inner_budget: int,
    gate: float = 0.9,
    overrides: list[str] | None = None,
    seed_harness: Path | None = None,
) -> Path:
    """Write a self-evolution problem folder and measure the default harness's first stage."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [str(resolve_problem_path(p).parent) for p in problems]
    shutil.copyfile(seed_harness or DEFAULT_HARNESS, folder / "initial.py")
    suite = Suite(paths, list(seeds), inner_budget, gate, list(overrides or []))
    log.info("measuring the default harness on %s, seed %d", Path(paths[0]).name, seeds[0])
    suite.default_stage = inner_search(DEFAULT_HARNESS, paths[0], seeds[0], inner_budget, suite.overrides, proxy=False)
    (folder / "suite.json").write_text(json.dumps(dataclasses.asdict(suite), indent=2))
    (folder / "problem.py").write_text(PROBLEM_FILE)
    return folder
