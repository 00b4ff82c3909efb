"""How long a large run takes to resume: from `evoengine resume`'s process start to its first
new proposal, and the memory it holds then, at 10,000 and 100,000 candidates.

    python benchmarks/resume_scale.py                          # 10,000 and 100,000
    python benchmarks/resume_scale.py --candidates 10000 --repeat 3 --replay

The stores are built by the engine's own writer (the ledger, as a run writes: one model call
per proposal with a ~2 KB prompt, one in ten proposals failed, the rest admitted through the
archive, novelty memory and the offline proposer's learnt state, snapshots included), not by
a 100,000-candidate real run; candidates are the quadratic test problem's program with 40
more tunable constants (~0.9 KB). Building takes a few minutes at 100,000; the stores are
kept in --dir and reused.

Each measurement is a fresh interpreter that resumes the run through `evoengine.engine.reopen`
with the offline operators and the real sandboxed evaluator pool, budget +5, and reports the
time from its start to the first `propose` (parts: imports, reopening, start-up, of which the
ledger's rebuild), its resident memory then (VmRSS) and its peak (ru_maxrss). `--replay`
also times a resume of a copy of the store without its snapshot (every closing replayed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from engine_overhead import bench_env  # the same environment as the overhead runs

REPO = Path(__file__).resolve().parent.parent
QUADRATIC = REPO / "tests" / "problems" / "quadratic"
CONSTANTS = 40
NUMBER = re.compile(r"^    \w+ = (-?[0-9.]+)$", re.M)


def program(values: list[float]) -> str:
    a, b, c, *rest = values
    table = "\n".join(f"    w{i:02d} = {v:.6f}" for i, v in enumerate(rest))
    return (
        '"""Three tunable constants."""\n\n\n# EVOLVE-BLOCK-START\ndef params():\n'
        f"    a = {a:.6f}\n    b = {b:.6f}\n    c = {c:.6f}\n{table}\n    return (a, b, c)\n\n\n# EVOLVE-BLOCK-END\n"
    )


def build(path: Path, n: int) -> list[dict]:
    """A run of `n` candidates written through the ledger, as the engine writes one."""
    sys.path.insert(0, str(REPO))
    from evoengine.archive import Archive
    from evoengine.config import load_config
    from evoengine.engine import Ledger
    from evoengine.engine.build import build_novelty, build_proposer
    from evoengine.engine.rundir import RunDir
    from evoengine.problem import EvalResult, load_problem
    from evoengine.records import Candidate, ModelCall, ProposalFailed

    config = load_config(None, [f"budget.candidates={n}"])
    loaded = load_problem(QUADRATIC)
    run = RunDir.create(path, config, {"problem": "quadratic", "problem_path": str(loaded.path)})
    archive = Archive(config, loaded.problem)
    ledger = Ledger(run.store, config, loaded.problem, archive)
    proposer = build_proposer(config, loaded)
    ledger.observe, ledger.bandit, ledger.learner = proposer.observe, proposer.stats, proposer
    ledger.novelty = build_novelty(config, loaded.problem, proposer, lambda call: None)
    rng = random.Random(0)
    rows: list[dict] = []

    def result(v: list[float]) -> EvalResult:
        error = (v[0] - 1.5) ** 2 + (v[1] + 2.0) ** 2 + (v[2] - 0.75) ** 2 + 1e-3 * sum(x * x for x in v[3:])
        features = {"a": max(-5, min(5, v[0])), "b": max(-5, min(5, v[1]))}
        return EvalResult(score=-error, metrics={"error": error}, features=features, feedback=f"error {error:.4f}")

    seed = [0.1, 0.2, 0.3] + [rng.uniform(-1, 1) for _ in range(CONSTANTS)]
    pid = ledger.open()
    ledger.admit(Candidate.scored(result(seed), id=pid, text=program(seed), operator="seed"))
    t0 = time.monotonic()
    while ledger.admitted < n:
        sel = archive.select(random.Random(f"0:{ledger.closed}"))
        parent = sel.parent
        pid = ledger.open()
        prompt = f"Improve this program.\n```python\n{parent.text}\n```\n" + "Keep the interface. " * 40
        ledger.record_call(pid, ModelCall("offline", f"h{pid}", [{"role": "user", "content": prompt}], "reply"))
        if rng.random() < 0.1:
            kind = rng.choice(["patch", "novelty", "syntax"])
            failure = ProposalFailed(f"{kind}: made up", operator="offline:nudge", model="offline", kind=kind)
            ledger.fail(pid, sel.island, failure)
            continue
        child = [float(v) for v in NUMBER.findall(parent.text)]  # its constants (the builder keeps nothing)
        i = rng.randrange(len(child))
        child[i] += rng.gauss(0, 0.3)
        res = result(child) if rng.random() > 0.05 else EvalResult.invalid("params() raised ValueError")
        candidate = Candidate.scored(
            res,
            id=pid,
            text=program(child),
            parents=(parent.id,),
            island=sel.island,
            generation=parent.generation + 1,
            operator="offline:nudge",
            model="offline",
            change=f"w{i:02d} nudged",
        )
        ledger.admit(candidate, kind=None if res.valid else "evaluation", parent=parent)
        if ledger.admitted % 10_000 == 0:  # the writer's memory should not grow with the run
            rss = rss_mb()
            rows.append({"admitted": ledger.admitted, "rss_mb": rss, "s": round(time.monotonic() - t0, 1)})
            print(f"  built {ledger.admitted} of {n} ({time.monotonic() - t0:.0f} s, RSS {rss} MB)", file=sys.stderr)
    ledger.save_resume_point()
    run.store.put_state(ledger.snapshot())
    run.close()
    return rows


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return round(next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024, 1)


MEASURE = r"""
import json, os, resource, sys, time
t_start = float(sys.argv[2])
t0 = time.time()
sys.path.insert(0, {repo!r})
import asyncio
from evoengine.engine import reopen
t_imports = time.time()
marks = {{}}
eng = reopen(sys.argv[1], budget=int(sys.argv[3]))
t_reopened = time.time()
rebuild = eng.ledger.rebuild
def timed_rebuild():
    t = time.time()
    rebuild()
    marks["rebuild_s"] = time.time() - t
eng.ledger.rebuild = timed_rebuild
prepare = eng._prepare
def timed_prepare(seed):
    prepare(seed)
    inner = eng.proposer.propose
    async def propose(ctx):
        if "first" not in marks:
            marks["first"] = time.time()
            with open("/proc/self/status") as f:
                rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
            marks["rss_mb"] = rss / 1024
        return await inner(ctx)
    eng.proposer.propose = propose
eng._prepare = timed_prepare
asyncio.run(eng.run())
print(json.dumps({{
    "first_proposal_s": round(marks["first"] - t_start, 3),
    "interpreter_s": round(t0 - t_start, 3),
    "imports_s": round(t_imports - t0, 3),
    "reopen_s": round(t_reopened - t_imports, 3),
    "start_up_s": round(marks["first"] - t_reopened, 3),
    "rebuild_s": round(marks["rebuild_s"], 3),
    "rss_at_first_proposal_mb": round(marks["rss_mb"], 1),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}}))
"""


def measure(path: Path) -> dict:
    conn = sqlite3.connect(path / "archive.sqlite")
    admitted = conn.execute("SELECT COUNT(*) FROM candidates WHERE status='evaluated'").fetchone()[0]
    conn.close()
    env = bench_env()
    code = MEASURE.format(repo=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), repr(time.time()), str(admitted + 5)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"resume failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def store_of(root: Path, n: int) -> Path:
    path = root / f"resume-{n}"
    if not (path / "archive.sqlite").is_file() or not (path / ".built").is_file():
        shutil.rmtree(path, ignore_errors=True)
        t = time.monotonic()
        print(f"building a store of {n} candidates in {path}", file=sys.stderr)
        rows = build(path, n)
        (path / ".built").write_text(json.dumps({"build_s": round(time.monotonic() - t), "rss": rows}) + "\n")
    return path


def copy_without_snapshot(path: Path) -> Path:
    copy = path.with_name(path.name + "-replay")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(path, copy)
    conn = sqlite3.connect(copy / "archive.sqlite")
    conn.execute("DELETE FROM resume")
    conn.commit()
    conn.close()
    return copy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/evoengine-resume-bench"))
    ap.add_argument("--replay", action="store_true", help="also time a resume that replays every closing")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    results = []
    for n in args.candidates:
        path = store_of(args.dir, n)
        for _ in range(args.repeat):
            # a measured resume adds 5 candidates: measure a copy, so every repeat starts alike
            work = path.with_name(path.name + "-work")
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(path, work)
            row = {"candidates": n, "snapshot": True, "load": round(os.getloadavg()[0], 2), **measure(work)}
            print(json.dumps(row), flush=True)
            results.append(row)
        if args.replay:
            copy = copy_without_snapshot(path)
            row = {"candidates": n, "snapshot": False, "load": round(os.getloadavg()[0], 2), **measure(copy)}
            print(json.dumps(row), flush=True)
            results.append(row)
    print(json.dumps({"machine": os.uname().nodename, "results": results}, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
