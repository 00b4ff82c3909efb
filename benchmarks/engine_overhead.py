"""How much the engine adds to a run, against a simulated model with a fixed latency.

A scripted OpenAI-compatible server (tests/scripted_server.py) runs in its own process and
answers every chat request `--latency` seconds after it arrived (its own work included)
with a one-line SEARCH/REPLACE edit; the engine runs in this process through the real
`openai` client, on the cheap test problem tests/problems/quadratic. We report:

- busy fraction: the concurrency bound ((N - 1) x latency / proposals in flight: the seed
  needs no model) divided by the wall time, for the whole run (start-up included: imports,
  warming the sandboxes, checking the model, evaluating the seed) and for the search alone
  (from the seed's admission to the last one);
- slots busy: the time model calls were actually in flight (their measured latency, which
  includes the simulated server's own work) over proposals-in-flight x search wall time;
- engine CPU per candidate: this process's CPU time (select, prompt, HTTP client, parse,
  screening, store, archive, bandit, bookkeeping) per candidate, during the search alone;
- total CPU per candidate: the same plus every evaluator worker and sandbox process, for
  the whole run, start-up included.

    python benchmarks/engine_overhead.py --candidates 200 --latency 0.2 --proposals 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
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


def cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--proposals", type=int, default=4)
    ap.add_argument("--evaluations", type=int, default=2)
    args = ap.parse_args()

    t_start = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(tests=str(REPO / "tests")), str(args.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = json.loads(server.stdout.readline())["url"]
    try:
        cpu0_self, cpu0_children = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        from evoengine.config import load_config
        from evoengine.engine import Engine

        marks: dict[str, float] = {}
        commit = Engine._commit

        def timed_commit(self, candidate, reward):  # mark the end of start-up: the seed's admission
            commit(self, candidate, reward)
            if "search" not in marks:
                marks.update(search=time.monotonic(), cpu=cpu(resource.RUSAGE_SELF))

        Engine._commit = timed_commit
        config = load_config(
            None,
            [
                f"budget.candidates={args.candidates}",
                f"concurrency.proposals={args.proposals}",
                f"concurrency.evaluations={args.evaluations}",
                "operators.diff=1",
                "operators.full=0",
                "operators.crossover=0",
            ],
            base={"models": [{"name": "sim", "base_url": url, "api_key_env": None, "timeout_s": 30}]},
        )
        with tempfile.TemporaryDirectory() as tmp:
            engine = Engine.create(REPO / "tests" / "problems" / "quadratic", config, run_dir=Path(tmp) / "run")
            summary = asyncio.run(engine.run())
            calls = (
                sqlite3.connect(Path(tmp) / "run" / "archive.sqlite")
                .execute("SELECT COUNT(*), SUM(latency_s) FROM model_calls")
                .fetchone()
            )
        wall = time.monotonic() - t0
        search_wall = time.monotonic() - marks["search"]
        search_cpu = cpu(resource.RUSAGE_SELF) - marks["cpu"]
        self_cpu = cpu(resource.RUSAGE_SELF) - cpu0_self
        child_cpu = cpu(resource.RUSAGE_CHILDREN) - cpu0_children
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    n = summary.admitted
    proposals = n - 1  # the seed needs no model call
    bound = proposals * args.latency / args.proposals
    print(
        json.dumps(
            {
                "candidates": n,
                "latency_s": args.latency,
                "proposals_in_flight": args.proposals,
                "evaluations_in_flight": args.evaluations,
                "wall_s": round(wall, 3),
                "start_up_s": round(wall - search_wall, 3),
                "wall_s_with_interpreter_start": round(time.monotonic() - t_start, 3),
                "concurrency_bound_s": round(bound, 3),
                "busy_fraction_whole_run": round(bound / wall, 3),
                "busy_fraction_search": round(bound / search_wall, 3),
                "model_calls": calls[0],
                "mean_call_latency_s": round(calls[1] / calls[0], 4),
                "slots_busy_search": round(calls[1] / (args.proposals * search_wall), 3),
                "slots_busy_whole_run": round(calls[1] / (args.proposals * wall), 3),
                "engine_cpu_ms_per_candidate_search": round(1000 * search_cpu / proposals, 2),
                "total_cpu_ms_per_candidate_whole_run": round(1000 * (self_cpu + child_cpu) / n, 2),
                "best_score": summary.best.score if summary.best else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
