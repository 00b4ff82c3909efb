"""How much the engine adds to a run, against a simulated model with a fixed latency.

A scripted OpenAI-compatible server (tests/scripted_server.py) runs in its own process and
answers every chat request `--latency` seconds after it arrived (its own work included)
with a one-line SEARCH/REPLACE edit. Each run is a fresh interpreter that does what
`evoengine run` does (the first worker launched early, imports, config, the run directory,
the engine) through the engine's model client, on the cheap test problem tests/problems/quadratic (evaluation ≈ 20 ms in
the sandbox). Reported per run:

- ratio: the concurrency limit N × latency ÷ proposals in flight (N: candidates) over the
  whole run's wall time, from the interpreter's start to the run's end;
- the same over the search alone (from the seed's admission) with N − 1 (the seed needs
  no model call), and the model slots busy (measured call time ÷ (proposals × search wall));
- start-up, split: interpreter and imports, config and run directory, the first worker up,
  the seed's evaluation, the proposer built (the `openai` import is most of it, in a thread
  beside the worker), the model pre-flight, the first model request; `overhead_s` is the
  time to the first model request less the seed's evaluation;
- engine CPU per candidate during the search, and all CPU (evaluation workers included)
  per candidate over the whole run.

    python benchmarks/engine_overhead.py --candidates 300 --proposals 8
    python benchmarks/engine_overhead.py --candidates 80 300 1000 --proposals 4 8 --repeat 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SERVER = r"""
import json, random, re, sys, time
sys.path.insert(0, {tests!r})
from scripted_server import ScriptedServer
latency = float(sys.argv[1])
LINE = re.compile(r"^(\s*)([abc]) = (-?[0-9.e-]+)\s*$", re.M)
def reply(request):
    prompt = request["messages"][-1]["content"]
    parent = re.search(r"```[a-z]*\n(.*?)\n```", prompt, re.S).group(1)
    m = random.choice(list(LINE.finditer(parent)))
    new = f"{{m.group(1)}}{{m.group(2)}} = {{float(m.group(3)) + random.gauss(0, 0.3):.6f}}"
    return f"<<<<<<< SEARCH\n{{m.group(0)}}\n=======\n{{new}}\n>>>>>>> REPLACE\n"
server = ScriptedServer(latency_s=latency).start()
server.script("sim", reply)
print(json.dumps({{"url": server.url}}), flush=True)
sys.stdin.read()
"""

# One run in a fresh interpreter: argv = url, candidates, proposals, evaluations, run dir, spawn time.
RUN = r"""
import sys, time
t_spawn = float(sys.argv[6])
t_main = time.time()
import asyncio, json, resource, sqlite3
from pathlib import Path
import evoengine.cli  # what `evoengine run` imports before it starts
from evoengine.evaluation.early import EarlyWorker
runner = asyncio.Runner()  # as `evoengine run`: the first worker launched before the engine's imports
early = runner.run(EarlyWorker.start(@PROBLEM@, Path(sys.argv[5])))
from evoengine.config import load_config
from evoengine.engine import create
from evoengine.porting import prepare_run
marks = {"imports": time.time()}

def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime

url, n, proposals, evaluations, run_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
problem, _ = prepare_run(@PROBLEM@)
config = load_config(None, [
    f"budget.candidates={n}", f"concurrency.proposals={proposals}", f"concurrency.evaluations={evaluations}",
    "operators.diff=1", "operators.full=0", "operators.crossover=0",
], base={"models": [] if url == "offline" else [{"name": "sim", "base_url": url, "api_key_env": None, "timeout_s": 30}]})
eng = create(problem, config, run_dir=Path(run_dir), early=early)
marks["created"] = time.time()

pool_start, evaluate = eng.pool.start, eng.pool.evaluate
async def start():
    await pool_start()
    marks.setdefault("worker_up", time.time())
async def timed_evaluate(text, **kw):
    t = time.time()
    result = await evaluate(text, **kw)
    if kw.get("label") == "seed":
        marks["seed_eval_s"] = time.time() - t
    return result
eng.pool.start, eng.pool.evaluate = start, timed_evaluate

prepare = eng._prepare
def timed_prepare(seed):
    t = time.time()
    prepare(seed)
    marks["prepared"], marks["prepare_s"] = time.time(), time.time() - t
    proposer = eng.proposer
    preflight = proposer.start
    async def timed_start():
        await preflight()
        marks["preflight_done"] = time.time()
    proposer.start = timed_start
    for client in proposer.pool.clients.values() if hasattr(proposer, "pool") else ():
        chat = client.chat
        async def timed_chat(*a, _chat=chat, **kw):
            marks.setdefault("first_request", time.time())
            return await _chat(*a, **kw)
        client.chat = timed_chat
    if not hasattr(proposer, "pool"):  # offline: the first proposal stands for the first request
        propose = proposer.propose
        async def timed_propose(ctx, _propose=propose):
            marks.setdefault("first_request", time.time())
            return await _propose(ctx)
        proposer.propose = timed_propose
eng._prepare = timed_prepare

admit_seeds = eng.ledger.admit_seeds
def timed_admit_seeds(*a, **kw):
    out = admit_seeds(*a, **kw)
    marks["search"], marks["search_cpu"] = time.time(), cpu(resource.RUSAGE_SELF)
    return out
eng.ledger.admit_seeds = timed_admit_seeds

summary = runner.run(eng.run())
marks["end"] = time.time()
conn = sqlite3.connect(f"{run_dir}/archive.sqlite")
calls, latency_sum = conn.execute("SELECT COUNT(*), SUM(latency_s) FROM model_calls WHERE purpose='propose'").fetchone()
print(json.dumps({
    "t_spawn": t_spawn, "t_main": t_main, **marks, "admitted": summary.admitted, "calls": calls,
    "latency_sum": latency_sum, "cpu_self": cpu(resource.RUSAGE_SELF), "cpu_children": cpu(resource.RUSAGE_CHILDREN),
    "best": summary.best.score if summary.best else None,
}))
"""


def one_run(url: str, n: int, latency: float, proposals: int, evaluations: int, tmp: Path) -> dict:
    run_dir = tmp / f"run-{n}-{proposals}-{time.time_ns()}"
    code = RUN.replace("@PROBLEM@", repr(str(REPO / "tests" / "problems" / "quadratic")))
    env = bench_env()
    args = [url, str(n), str(proposals), str(evaluations), str(run_dir)]
    load = os.getloadavg()[0]
    t = time.time()
    out = subprocess.run(
        [sys.executable, "-c", code, *args, repr(t)], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"the run failed:\n{out.stderr[-3000:]}")
    m = json.loads(out.stdout.strip().splitlines()[-1])
    wall = m["end"] - m["t_spawn"]
    search = m["end"] - m["search"]
    admitted = m["admitted"]
    bound = admitted * latency / proposals
    seed_eval = m["seed_eval_s"]
    t0 = m["t_spawn"]
    return {
        "candidates": admitted,
        "latency_s": latency,
        "proposals_in_flight": proposals,
        "evaluations_in_flight": evaluations,
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "wall_s": round(wall, 3),
        "limit_s": round(bound, 3),
        "ratio_whole_run": round(bound / wall, 3) if latency else None,
        "ratio_search": round((admitted - 1) * latency / proposals / search, 3) if latency else None,
        "slots_busy_search": round(m["latency_sum"] / (proposals * search), 3) if m["calls"] else None,
        "mean_call_s": round(m["latency_sum"] / m["calls"], 4) if m["calls"] else None,
        "start_up": {
            "interpreter_s": round(m["t_main"] - t0, 3),
            "imports_at_s": round(m["imports"] - t0, 3),
            "created_at_s": round(m["created"] - t0, 3),
            "worker_up_at_s": round(m["worker_up"] - t0, 3),
            "seed_eval_s": round(seed_eval, 3),
            "proposer_built_at_s": round(m["prepared"] - t0, 3),
            "prepare_thread_s": round(m["prepare_s"], 3),
            "preflight_done_at_s": round(m["preflight_done"] - t0, 3),
            "seed_admitted_at_s": round(m["search"] - t0, 3),
            "first_request_at_s": round(m["first_request"] - t0, 3),
            "overhead_s": round(m["first_request"] - t0 - seed_eval, 3),
        },
        "engine_cpu_ms_per_candidate_search": round(1000 * (m["cpu_self"] - m["search_cpu"]) / max(1, admitted - 1), 2),
        "all_cpu_ms_per_candidate": round(1000 * (m["cpu_self"] + m["cpu_children"]) / admitted, 2),
        "best_score": m["best"],
    }


def bench_env() -> dict[str, str]:
    """The environment of a measured run: this checkout first, and bytecode caches as an installed
    package has them (kept out of the tree; PYTHONDONTWRITEBYTECODE would compile every module on
    every start)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONPYCACHEPREFIX": "/tmp/evoengine-bench-pycache"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, nargs="+", default=[300])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--proposals", type=int, nargs="+", default=[4])
    ap.add_argument("--evaluations", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--offline", action="store_true", help="no model: the offline operators (start-up figures only)")
    ap.add_argument("--json", type=Path, help="append every run's figures to this file (a JSON list)")
    args = ap.parse_args()
    import tempfile

    server = None
    url = "offline"
    if not args.offline:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER.format(tests=str(REPO / "tests")), str(args.latency)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        url = json.loads(server.stdout.readline())["url"]
    latency = 0.0 if args.offline else args.latency
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for proposals in args.proposals:
                for n in args.candidates:
                    for _ in range(args.repeat):
                        row = one_run(url, n, latency, proposals, args.evaluations, Path(tmp))
                        print(json.dumps(row), flush=True)
                        rows.append(row)
    finally:
        if server is not None:
            server.stdin.close()
            server.wait(timeout=10)
    if args.json:
        old = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps(old + rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
