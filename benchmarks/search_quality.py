"""Search quality: evoengine's search against simple baselines and its own ablations, on a suite.

Every setup (a list of `--set` overrides) runs on every problem of the suite with seeds
0..N-1 (or K..K+N-1 with `--first-seed K`), once with the offline operators and once with a
panel of simulated models served over real HTTP (benchmarks/simulated_models.py: good,
useless, noisy, broken). Each run goes through `evoengine.run` to the largest budget; the
smaller budgets are read off the first evaluations of the same run (nothing in the engine
depends on its budget but when it stops).

Measured per run and budget B (B evaluations, the seed included):
- best: the quality of the best-scoring candidate among the first B (the score, except on
  noisy_knapsack, where it is the candidate's mean over the whole instance pool: what the
  search would hand its user, judged without noise);
- success: best reached the problem's known optimum (or target) where there is one;
- auc: the mean of the best-so-far curve over the first B evaluations (higher = earlier);
- evaluations, model calls and failed proposals spent, and the share of calls that went to
  the good model after the first 40 (model runs).
Setups are compared with the first one (`search`, the engine's defaults) seed by seed:
mean difference with a 95% t-interval.

Runs go in parallel (`--jobs`, default the number of cores). Each finished run is appended
to `<work>/records.jsonl` and skipped when the command runs again with the same code (a
fingerprint of evoengine/, the problem's folder and the simulated models is part of its
key), so an interrupted benchmark resumes where it stopped, and a changed engine is
measured afresh; the JSON and markdown results are rebuilt from the records of the current
matrix at the end of every invocation.

    python benchmarks/search_quality.py                 # default size (see benchmarks/README.md)
    python benchmarks/search_quality.py --quick         # a 1-2 minute smoke run
    python benchmarks/search_quality.py --ablations     # also the ablations (ABLATIONS below)
    python benchmarks/search_quality.py --setup search --setup hill selection.strategy=hill_climb
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import hashlib
import json
import math
import multiprocessing
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's evoengine, here, in the workers and in their sandboxes

os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)

from evoengine.report.compare import paired  # noqa: E402
from evoengine.store import RunReader  # noqa: E402


@dataclass(frozen=True)
class Target:
    """How a problem is judged: success at or above `success` (None: no known optimum), and where
    a candidate's quality comes from (`artifact`: an artifact holding it, else the score)."""

    success: float | None = None
    about: str = ""
    artifact: str | None = None


PROBLEMS = {
    "deceptive_ridge": Target(1.5, "the peak (score > 1.5)"),
    "symbolic_regression": Target(8.0, "the formula recovered (held-out NMSE < 1e-8)"),
    "cap_set": Target(45.0, "the optimal cap (45 vectors)"),
    "sorting_network": Target(1.0 - 0.012 - 1e-9, "an optimal network (sorts all with 12 comparators)"),
    "noisy_knapsack": Target(artifact="pool_mean"),
    "circle_packing": Target(),
    "bin_packing": Target(),
}
DEFAULT_PROBLEMS = [
    "deceptive_ridge",
    "symbolic_regression",
    "cap_set",
    "sorting_network",
    "noisy_knapsack",
    "circle_packing",
]
BASELINES = {"search": [], "iid": ["selection.strategy=iid"], "greedy": ["selection.strategy=greedy"]}
ABLATIONS = {
    "no-refine": ["selection.refine=false"],
    "no-min-gain": ["selection.min_gain=0"],  # every new best counts for refine, however small
    "no-drift": ["selection.drift=false"],  # refine keeps the first to reach the best score
    "no-cell-credit": ["selection.cell_credit=0"],  # only new bests count, not the mix's bettered cells
    "four-islands": ["islands.count=4"],  # off by default since it showed no effect: checked again
    "no-elite-parents": ["selection.elites=0"],  # the mix's parents by rank on the island instead
    "no-inspirations": ["selection.top_inspirations=0", "selection.diverse_inspirations=0"],
    "no-novelty": ["novelty.enabled=false"],
    "uniform-bandit": ["bandit.kind=uniform"],
    "no-crossover": ["operators.crossover=0"],
    "no-adapt": ["operators.adapt=false"],  # each model's operator odds fixed, not learnt from its record
    "offline-crossover": ["operators.offline_crossover=true"],  # off by default since it hurt: checked again
}
MODEL_ONLY = {"uniform-bandit", "no-crossover", "no-adapt"}  # keys that change nothing without models
OFFLINE_ONLY = {"offline-crossover"}  # the offline operators make no child in a models run
PANEL = ["good", "useless", "noisy", "broken"]
# Prices per million tokens in and out, as a provider would charge: the models that score their
# edits cost more, so `bandit.cost_aware=true` has a cheaper arm to be tempted by.
PRICES = {"good": (3.0, 15.0), "slow": (3.0, 15.0), "useless": (0.3, 1.2), "noisy": (0.3, 1.2)}
PRICES |= {"broken": (0.3, 1.2), "fast": (0.1, 0.4)}
# Sizes. `caps` stop some runs early to keep the default under an hour on two cores: model runs
# (the good model scores four edits per reply) and circle_packing (about 60 ms per evaluation,
# four to eight times the others) stop at 200 evaluations. `--full` lifts the caps.
SIZES = {
    "quick": {"budgets": [30, 60], "seeds": 2, "problems": ["deceptive_ridge", "sorting_network"], "caps": {}},
    "default": {
        "budgets": [200, 1000],
        "seeds": 10,
        "problems": DEFAULT_PROBLEMS,
        "caps": {"models": 200, "circle_packing": 200},
    },
    "full": {"budgets": [200, 1000], "seeds": 10, "problems": DEFAULT_PROBLEMS, "caps": {}},
}
GOOD_AFTER = 40  # calls after which the share going to the good model is counted
# A run's figures at a budget (`at_budget`) that a table row averages over seeds
AVERAGED = ("best", "auc", "evaluations", "model_calls", "failed_proposals", "copies", "good_share_after_40")


@dataclass(frozen=True)
class RunSpec:
    mode: str  # "offline" or "models"
    problem: str
    setup: str
    overrides: tuple[str, ...]
    seed: int
    budget: int
    panel: tuple[str, ...] = ()
    code: str = ""  # fingerprint of the engine, the problem and the simulated models

    @property
    def key(self) -> str:
        fields = [self.mode, list(self.panel), self.problem, self.setup, list(self.overrides), self.seed, self.budget]
        return json.dumps([*fields, self.code])

    @property
    def name(self) -> str:
        return f"{self.mode}-{self.problem}-{self.setup}-s{self.seed}"


def fingerprint(problem: str) -> str:
    """A hash of everything a run's outcome depends on in this checkout: the engine's code and
    templates, the problem's folder and the simulated models. A record made with other code is
    not reused. The report's page (its scripts, styles and markup) is left out: it draws a run,
    it does not steer one."""
    digest = hashlib.sha256()
    files = [*sorted((REPO / "evoengine").rglob("*")), *sorted((REPO / "problems" / problem).rglob("*"))]
    for path in [*files, REPO / "benchmarks" / "simulated_models.py"]:
        page = path.parent == REPO / "evoengine" / "report" and path.suffix in {".js", ".css", ".html"}
        if path.is_file() and "__pycache__" not in path.parts and not page:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- one run (in a worker process)


def execute(spec: RunSpec, work: Path, url: str | None, keep: bool) -> dict[str, Any]:
    """Run one search through `evoengine.run` and measure it; returns the record."""
    import logging

    import evoengine
    from evoengine.config import load_config

    logging.getLogger("evoengine").setLevel(logging.WARNING)
    run_dir = work / "runs" / spec.name
    shutil.rmtree(run_dir, ignore_errors=True)  # a run killed half-way starts again
    overrides = [*spec.overrides, f"seed={spec.seed}", f"budget.candidates={spec.budget}"]
    if spec.mode == "models":
        models = [
            {"name": b, "model": f"{b}/{spec.problem}", "base_url": url, "api_key_env": None, "timeout_s": 60.0}
            | {"price_in": PRICES[b][0], "price_out": PRICES[b][1]}
            for b in spec.panel
        ]
        overrides.append(f"models={json.dumps(models)}")
    started = time.monotonic()
    run = evoengine.run(spec.problem, load_config(None, overrides), run_dir=run_dir)
    # A run the engine gave up on ("failing": a long streak of failed proposals) is a result of
    # its setup and is kept; any other early stop (interrupted, an error) is made again next time.
    if run.summary.stopped not in ("budget", "failing"):
        raise RuntimeError(f"the run stopped early ({run.summary.stopped}: {run.summary.message})")
    record = {"key": spec.key, **asdict(spec), "wall_s": round(time.monotonic() - started, 2)}
    record["stopped"] = run.summary.stopped
    record.update(measure(run_dir, PROBLEMS[spec.problem]))
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return record


def measure(run_dir: Path, target: Target) -> dict[str, Any]:
    """The best-so-far curve (quality of the run's best after each evaluation), what was spent,
    and how each model's children compared with their parents. The run's best is the engine's
    own (`RunReader.best_curve`: a noisy run's best is the best of those scored more than once,
    not the highest single score). The evaluations a candidate's mean holds are its own
    (1 + rechecks, less its copies')."""
    with RunReader.open(run_dir) as reader, reader.snapshot():
        best_after = dict(reader.best_curve())
        q = reader.conn.execute
        rows = q(
            "SELECT id, score, valid, artifacts, parents, model, finished,"
            " 1 + coalesce(json_extract(metrics, '$.rechecks'), 0) - coalesce(json_extract(metrics, '$.pooled'), 0),"
            " digest, seq FROM candidates WHERE status = 'evaluated' ORDER BY seq"
        ).fetchall()
        calls = q("SELECT model, created FROM model_calls WHERE purpose = 'propose' ORDER BY created").fetchall()
        failed = q("SELECT finished FROM candidates WHERE status = 'failed'").fetchall()
    score_of = {r[0]: (r[1] if r[2] else None) for r in rows}
    quality_of = {r[0]: float(json.loads(r[3])[target.artifact]) if target.artifact else r[1] for r in rows if r[2]}
    curve: list[float | None] = []
    finished: list[float] = []
    quality = None
    children: dict[str, list[int]] = {}
    seen, copies = set(), []  # copies: where in the curve a program already evaluated was evaluated again
    for _, score, valid, _, parents, model, at, evaluations, digest, seq in rows:
        curve += [quality] * (int(evaluations) - 1)  # a rechecked candidate's extra evaluations come first
        if digest is not None and digest in seen:
            copies.append(len(curve))
        seen.add(digest)
        quality = quality_of.get(best_after[seq])  # the run's best as it was after this admission
        curve.append(quality)
        finished += [at] * int(evaluations)
        parent = json.loads(parents)[:1]
        if model and parent:
            before = score_of.get(parent[0])
            better = valid and score is not None and before is not None and score > before
            children.setdefault(model, [0, 0])
            children[model][0] += 1
            children[model][1] += int(better)
    return {
        "curve": curve,
        "evaluations": len(curve),
        "valid": sum(1 for r in rows if r[2]),
        "call_times": [c[1] for c in calls],
        "call_models": [c[0] for c in calls],
        "failed_times": [f[0] for f in failed if f[0] is not None],
        "finished": finished,
        "children": children,
        "copies": copies,
    }


def at_budget(record: dict[str, Any], budget: int, target: Target) -> dict[str, Any]:
    """The run's figures after its first `budget` evaluations. A run that stopped before (the engine
    gave up) keeps its last best for the rest of the budget."""
    curve = record["curve"][:budget]
    early = len(curve) < budget
    known = [q for q in curve if q is not None]
    best = known[-1] if known else None
    until = math.inf if early or not record["finished"] else record["finished"][budget - 1]
    models = [m for m, t in zip(record["call_models"], record["call_times"], strict=True) if t <= until]
    after = models[GOOD_AFTER:]
    return {
        "best": best,
        "success": None if target.success is None or best is None else best >= target.success,
        "auc": statistics.fmean([q if q is not None else known[0] for q in curve] + [best] * (budget - len(curve)))
        if known
        else None,
        "evaluations": len(curve),
        "stopped_early": early,
        "model_calls": len(models),
        "failed_proposals": sum(1 for t in record["failed_times"] if t <= until),
        # runs recorded before copies were counted have none to show
        "copies": sum(1 for at in record["copies"] if at < budget) if "copies" in record else None,
        "good_share_after_40": (after.count("good") / len(after)) if after and "good" in record["panel"] else None,
    }


# ---------------------------------------------------------------- statistics


def summarise(records: list[dict[str, Any]], budgets: list[int], setups: list[str]) -> list[dict[str, Any]]:
    """One row per mode, budget, problem and setup: means over seeds and the paired comparison
    with the first setup."""
    rows = []
    groups: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["mode"], r["problem"], r["setup"]), {})[r["seed"]] = r
    for (mode, problem, setup), by_seed in sorted(groups.items()):
        target = PROBLEMS[problem]
        reference = groups.get((mode, problem, setups[0]), {})
        for budget in budgets:
            figures = {s: at_budget(r, budget, target) for s, r in by_seed.items() if r["budget"] >= budget}
            if not figures:
                continue
            bests = [f["best"] for f in figures.values() if f["best"] is not None]
            row = {"mode": mode, "problem": problem, "setup": setup, "budget": budget, "seeds": len(figures)}
            for name in AVERAGED:
                values = [f[name] for f in figures.values() if f[name] is not None]
                row[name] = statistics.fmean(values) if values else None
            row["best_sd"] = statistics.stdev(bests) if len(bests) > 1 else None
            row["improved"] = {}
            for r in by_seed.values():
                for model, (made, better) in r["children"].items():
                    counts = row["improved"].setdefault(model, [0, 0])
                    counts[0] += made
                    counts[1] += better
            row["successes"] = sum(bool(f["success"]) for f in figures.values()) if target.success is not None else None
            row["stopped_early"] = sum(f["stopped_early"] for f in figures.values())
            common = sorted(s for s in figures if s in reference and figures[s]["best"] is not None)
            if setup != setups[0] and common:
                ref = {s: at_budget(reference[s], budget, target) for s in common if reference[s]["budget"] >= budget}
                common = [s for s in common if s in ref and ref[s]["best"] is not None]
                for name in ("best", "auc") if common else ():
                    row[f"{name}_vs_{setups[0]}"] = paired(
                        [ref[s][name] for s in common], [figures[s][name] for s in common]
                    )
            rows.append(row)
    return rows


# ---------------------------------------------------------------- the markdown table


def _num(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _diff(d: dict[str, Any] | None) -> str:
    if not d:
        return "—"
    if d["low"] is None:
        return f"{d['mean']:+.3g} {d['higher']}/{d['lower']}"
    mark = " **+**" if d["low"] > 0 else " **−**" if d["high"] < 0 else ""
    return f"{d['mean']:+.3g} [{d['low']:+.3g}, {d['high']:+.3g}] {d['higher']}/{d['lower']}{mark}"


def _table(problems: list[str], columns: list[str], heads: list[str], cell) -> list[str]:
    """A markdown table: one row per problem, `cell(problem, column)` in each column."""
    out = ["", "| problem | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(columns)]
    return out + [f"| {p} | " + " | ".join(cell(p, c) for c in columns) + " |" for p in problems]


def _section(here: dict[tuple[str, str], dict[str, Any]], setups: list[str], order: list[str], mode: str) -> list[str]:
    """The tables of one mode and budget: best, paired differences, what was spent."""
    ref = setups[0]
    present = [s for s in setups if any(key[1] == s for key in here)]
    problems = [p for p in order if any(key[0] == p for key in here)]
    others = [s for s in present if s != ref]

    def best(p: str, s: str) -> str:
        r = here.get((p, s))
        if r is None:
            return "—"
        text = f"{_num(r['best'])} ± {_num(r['best_sd'], 2)}"
        return text + (f" · {r['successes']}/{r['seeds']}" if r["successes"] is not None else "")

    def spent(p: str, s: str) -> str:
        r = here.get((p, s))
        if r is None:
            return "—"
        text = f"{_num(r['evaluations'])} / {_num(r['model_calls'])} / {_num(r['failed_proposals'])}"
        text += f" / {_num(r.get('copies'))}"
        text += f" / {_num(r['good_share_after_40'], 2)}" if mode == "models" else ""
        return text + (f" ({r['stopped_early']} gave up)" if r["stopped_early"] else "")

    out = _table(problems, present, [f"`{s}`" for s in present], best)
    for measure, label in (("best", "best at budget"), ("auc", "area under the best-so-far curve")):
        if others:
            key = f"{measure}_vs_{ref}"
            out += ["", f"Paired difference from `{ref}`, {label}:"]
            out += _table(
                problems,
                others,
                [f"`{s}` − `{ref}`" for s in others],
                lambda p, s, key=key: _diff(here.get((p, s), {}).get(key)),
            )
    what = " / share of calls after the first 40 that went to `good`" if mode == "models" else ""
    out += [
        "",
        f"Spent per run (mean): evaluations / model calls / failed proposals / evaluations of a program "
        f"evaluated before (copies; — where not recorded){what}; runs the engine gave up on (a long streak of "
        "failed proposals) keep their last best for the rest of the budget",
    ]
    return out + _table(problems, present, [f"`{s}`" for s in present], spent)


def markdown(rows: list[dict[str, Any]], setups: list[str], meta: dict[str, Any]) -> str:
    ref = setups[0]
    out = [
        "# Search quality: evoengine's search against simple baselines",
        "",
        f"Command: `{meta['command']}`  ",
        f"Finished {meta['finished']} on {meta['machine']}; {meta['runs']} runs recorded, "
        f"{meta['new_runs']} made by this invocation in {meta['wall_s'] / 60:.1f} min "
        f"(load average at the end: {', '.join(map(str, meta['load_average_at_end']))}).",
        "",
        "Cells: mean best over seeds ± standard deviation, and successes (runs that reached the "
        "problem's optimum) where one is known. Paired: the mean difference from "
        f"`{ref}` on the same seeds, its 95% t-interval, and seeds higher/lower; **+** or **−** "
        "when the interval excludes zero. noisy_knapsack is judged by the pool mean of the "
        "candidate its noisy score put first.",
        "",
        "Success means reaching the optimum: "
        + "; ".join(f"{p}: {t['about']}" for p, t in meta["targets"].items() if t["about"])
        + ".",
        "",
        "Caps: " + (", ".join(f"{k} runs stop at {v} evaluations" for k, v in meta["caps"].items()) or "none") + ".",
        "",
        "Setups: " + "; ".join(f"`{name}` = {_described(name, meta)}" for name in setups),
    ]
    for mode in meta["modes"]:
        for budget in meta["budgets"]:
            here = {(r["problem"], r["setup"]): r for r in rows if r["mode"] == mode and r["budget"] == budget}
            if here:
                title = "offline operators" if mode == "offline" else f"simulated models ({', '.join(meta['panel'])})"
                out += ["", f"## {title}, {budget:,} evaluations", *_section(here, setups, meta["problems"], mode)]
    improved = [r for r in rows if r.get("improved") and r["budget"] == meta["budgets"][0]]  # whole runs
    if improved:
        out += ["", "## The simulated models: children that beat their parent", ""]
        out += ["Of each model's evaluated children, the share that scored above their parent (all setups and seeds):"]
        totals: dict[tuple[str, str], list[int]] = {}
        for r in improved:
            for model, (made, better) in r["improved"].items():
                t = totals.setdefault((r["problem"], model), [0, 0])
                t[0] += made
                t[1] += better
        models = list(meta["panel"])
        problems = [p for p in meta["problems"] if any(key[0] == p for key in totals)]

        def share(p: str, m: str) -> str:
            made, better = totals.get((p, m), (0, 0))
            return f"{better / made:.2f} of {made}" if made else "—"

        out += _table(problems, models, [f"`{m}`" for m in models], share)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the command


def _setups(args: argparse.Namespace) -> dict[str, list[str]]:
    chosen = {s[0]: s[1:] for s in args.setup} if args.setup else dict(BASELINES)
    if args.ablations:
        chosen.update(ABLATIONS)
    return chosen


def _valid(setups: dict[str, list[str]]) -> dict[str, list[str]]:
    """The setups this engine accepts; the others are reported and left out."""
    from evoengine.config import load_config
    from evoengine.errors import ConfigError

    kept = {}
    for name, overrides in setups.items():
        try:
            load_config(None, overrides)
        except ConfigError as exc:
            print(f"setup {name!r} left out: this engine does not accept it ({exc})", file=sys.stderr)
            continue
        kept[name] = overrides
    return kept


def _start_models(problems: list[str]) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "simulated_models.py"), *problems],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline()
    if not line:
        raise SystemExit("the simulated model server did not start")
    return server, json.loads(line)["url"]


def _run_all(
    pending: list[RunSpec], args: argparse.Namespace, url: str | None, records_path: Path, done: dict[str, Any]
) -> None:
    """Run `pending` in parallel, appending each finished run's record to `records_path` at once.
    Ctrl-C (or SIGTERM) stops starting new runs; runs in flight are lost and made next time."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    context = multiprocessing.get_context("spawn")
    pool = futures.ProcessPoolExecutor(args.jobs, mp_context=context)
    try:
        jobs = {pool.submit(execute, s, args.work, url, args.keep_runs): s for s in pending}
        with records_path.open("a") as sink:
            for k, job in enumerate(futures.as_completed(jobs), 1):
                spec = jobs[job]
                try:
                    record = job.result()
                except Exception as exc:  # a run that failed is reported and left unrecorded
                    print(f"[{k}/{len(pending)}] {spec.name} FAILED: {exc}", file=sys.stderr)
                    continue
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                done[spec.key] = record
                best = [q for q in record["curve"] if q is not None]
                print(
                    f"[{k}/{len(pending)}] {spec.name}: best {best[-1] if best else None} in {record['wall_s']:.0f} s",
                    file=sys.stderr,
                )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size_flags = ap.add_mutually_exclusive_group()
    size_flags.add_argument(
        "--quick", action="store_true", help="the smoke size: 2 problems, 2 seeds, budgets 30 and 60"
    )
    size_flags.add_argument("--full", action="store_true", help="the default size without its caps (hours)")
    ap.add_argument("--budgets", help="comma-separated evaluation budgets (default 200,1000)")
    ap.add_argument("--seeds", type=int, help="seeds 0..N-1 per problem and setup (default 10)")
    ap.add_argument(
        "--first-seed", type=int, default=0, help="start the seeds there: K..K+N-1 (a fresh sample beside an old one)"
    )
    ap.add_argument("--problems", help=f"comma-separated (default {','.join(DEFAULT_PROBLEMS)}; also bin_packing)")
    ap.add_argument("--modes", default="offline,models", help="offline, models, or both (default)")
    ap.add_argument("--panel", default=",".join(PANEL), help="the simulated models of the models mode")
    ap.add_argument(
        "--setup",
        nargs="+",
        action="append",
        metavar=("NAME", "KEY=VALUE"),
        help="a setup: its name and --set overrides (repeatable; the first is the reference; "
        "default: search, iid, greedy)",
    )
    ap.add_argument("--ablations", action="store_true", help=f"add the {len(ABLATIONS)} ablations to the setups")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at once (default: the cores)")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "search-quality", help="records and run folders")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results-search-quality.json")
    ap.add_argument("--table", type=Path, default=REPO / "benchmarks" / "RESULTS-search-quality.md")
    ap.add_argument("--keep-runs", action="store_true", help="keep each run's folder (default: deleted once measured)")
    ap.add_argument(
        "--compare-with",
        action="append",
        default=[],
        metavar="RECORDS:SETUP=NAME,...",
        help="add setups recorded earlier (a records.jsonl) to the tables under new names, on the same "
        "modes, problems, seeds and budgets; nothing is run for them (repeatable)",
    )
    args = ap.parse_args()

    size = SIZES["quick" if args.quick else "full" if args.full else "default"]
    budgets = sorted(int(b) for b in args.budgets.split(",")) if args.budgets else size["budgets"]
    seeds = args.seeds if args.seeds is not None else size["seeds"]
    problems = args.problems.split(",") if args.problems else size["problems"]
    unknown = [p for p in problems if p not in PROBLEMS]
    if unknown:
        ap.error(f"unknown problems {unknown}; the suite has {sorted(PROBLEMS)}")
    modes = args.modes.split(",")
    panel = tuple(args.panel.split(","))
    setups = _valid(_setups(args))
    if not setups:
        ap.error("no setup is valid for this engine")
    caps = size["caps"]
    codes = {p: fingerprint(p) for p in problems}
    specs = [
        RunSpec(
            mode,
            problem,
            name,
            tuple(overrides),
            seed,
            min(budgets[-1], caps.get(mode, budgets[-1]), caps.get(problem, budgets[-1])),
            panel if mode == "models" else (),
            codes[problem],
        )
        for seed in range(args.first_seed, args.first_seed + seeds)
        for mode in modes
        for problem in problems
        for name, overrides in setups.items()
        if name not in (OFFLINE_ONLY if mode == "models" else MODEL_ONLY)
    ]
    args.work.mkdir(parents=True, exist_ok=True)
    _lock(args.work)
    records_path = args.work / "records.jsonl"
    done = {}
    if records_path.exists():
        for line in records_path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["key"]] = record
    pending = [s for s in specs if s.key not in done]
    print(f"{len(specs)} runs in the matrix, {len(specs) - len(pending)} already recorded", file=sys.stderr)

    started = time.monotonic()
    server, url = _start_models(problems) if any(s.mode == "models" for s in pending) else (None, None)
    try:
        _run_all(pending, args, url, records_path, done)
    finally:
        if server is not None:
            server.stdin.close()
            server.wait(timeout=60)
    wall = time.monotonic() - started

    records = [done[s.key] for s in specs if s.key in done]
    order = list(setups)
    earlier = _earlier(args.compare_with, specs, set(order))
    records += earlier
    order += [name for name in dict.fromkeys(r["setup"] for r in earlier)]
    rows = summarise(records, budgets, order)
    meta = {
        "command": " ".join(["python", "benchmarks/search_quality.py", *sys.argv[1:]]),
        "finished": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "runs": len(records),
        "new_runs": sum(1 for s in pending if s.key in done),
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "wall_s": round(wall, 1),
        "budgets": budgets,
        "seeds": seeds,
        "first_seed": args.first_seed,
        "problems": problems,
        "modes": modes,
        "panel": list(panel),
        "setups": setups,
        "compared_with": args.compare_with,
        "caps": caps,
        "targets": {p: asdict(PROBLEMS[p]) for p in problems},
    }
    slim = [
        {k: v for k, v in r.items() if k not in ("curve", "call_times", "call_models", "failed_times", "finished")}
        | {"at": {b: at_budget(r, b, PROBLEMS[r["problem"]]) for b in budgets if b <= r["budget"]}}
        for r in records
    ]
    args.out.write_text(json.dumps({"meta": meta, "summary": rows, "runs": slim}, indent=1) + "\n")
    args.table.write_text(markdown(rows, order, meta))
    print(f"wrote {args.out} and {args.table} ({wall / 60:.1f} min)", file=sys.stderr)


def _described(setup: str, meta: dict[str, Any]) -> str:
    if setup in meta["setups"]:
        return " ".join(meta["setups"][setup]) or "the defaults"
    renamed = (s for s in meta["compared_with"] if any(p.endswith(f"={setup}") for p in s.partition(":")[2].split(",")))
    return f"recorded earlier ({next(renamed)})"


_HELD: list[Any] = []  # the open lock files: a lock lasts as long as its file stays open


def _lock(work: Path) -> None:
    """An exclusive lock on the work folder, held until the process ends: two benchmarks in one
    folder would delete and write each other's run folders (same names) and interleave records."""
    import fcntl

    handle = (work / "lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        raise SystemExit(f"{work} is in use by {owner}: wait for it, stop it, or pass another --work") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    _HELD.append(handle)


def _earlier(sources: list[str], specs: list[RunSpec], taken: set[str]) -> list[dict[str, Any]]:
    """Records of setups recorded earlier ("records.jsonl:iid=iid-then,greedy=greedy-then"),
    renamed, for the runs of this matrix's modes, problems, seeds and budgets."""
    wanted = {(s.mode, s.problem, s.seed, s.budget) for s in specs}
    out = []
    for source in sources:
        path, _, names = source.partition(":")
        renames = dict(pair.split("=", 1) for pair in names.split(",") if pair)
        clash = set(renames.values()) & taken
        if not renames or clash:
            raise SystemExit(
                f"--compare-with {source}: name the setups to take (SETUP=NEW), new names only {clash or ''}"
            )
        for line in Path(path).read_text().splitlines():
            record = json.loads(line) if line.strip() else None
            if (
                record
                and record["setup"] in renames
                and (record["mode"], record["problem"], record["seed"], record["budget"]) in wanted
            ):
                out.append(record | {"setup": renames[record["setup"]]})
    return out


if __name__ == "__main__":
    main()
