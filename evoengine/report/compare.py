"""Runs compared: `evoengine report RUN_A RUN_B ...` (or a folder of runs) puts their
best-so-far curves (by admission, by spend and by time), spend and outcomes side by side, with
the config keys in which they differ (e.g. `selection.strategy: iid` vs `greedy` for the
search baselines).

One run per setup says little: two searches of one problem that differ only in their seed
often end further apart than two setups do. So when the runs are several seeds of each setup
(configs equal but for `seed`), `evoengine compare` also pairs them seed by seed: each setup
against the first run's, the mean difference of their best at the common budget with its 95%
t-interval, and whether that interval leaves out zero (`paired`, `_setups`)."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

import yaml

from ..errors import EvoError
from ..records import FINISHED
from ..store import RunReader
from ..trackers import flat
from .html import render_page, write_page


def _config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return {}
    return flat(data) if isinstance(data, dict) else {}


def run_curves(run_dir: Path) -> dict[str, Any]:
    """One run's outcomes and the score of its best (the engine's, `RunReader.best_curve`) after
    every admission, with the spend and seconds of search up to it (proposals in the order they
    closed)."""
    with RunReader.open(run_dir) as reader, reader.snapshot():
        rows = reader.proposals()
        bests = reader.best_curve()
        counts = reader.outcome_counts()
        meta = reader.meta()
        spend = reader.spend()
        elapsed = reader.get_state("elapsed_s")
        stopped = reader.get_state("stopped")
    start = meta.get("created") or min((r["created"] for r in rows), default=0.0)
    score_of, best_after = {r["id"]: r["score"] for r in rows}, dict(bests)
    spent, curve = 0.0, {"seq": [], "best": [], "spend": [], "t": []}
    for r in sorted(rows, key=lambda r: (r["finished"] or 0, r["id"])):
        spent += r["cost"] or 0.0
        if r["seq"] is None:
            continue
        best = score_of.get(best_after[r["seq"]])
        values = (r["seq"], best, round(spent, 6), round((r["finished"] or start) - start, 3))
        for key, value in zip(("seq", "best", "spend", "t"), values, strict=True):
            curve[key].append(value)
    seed = min((r for r in rows if r["seq"] is not None), key=lambda r: r["seq"], default=None)
    return {
        "name": run_dir.resolve().name,
        "path": str(run_dir),
        "problem": meta.get("problem"),
        "counts": counts,
        "spend": spend,
        "tokens": sum(r["tokens"] for r in rows),
        "elapsed_s": elapsed,
        "stopped": stopped,  # {reason, message}; None while under way or after a kill
        "seed_score": seed["score"] if seed else None,
        "best_score": score_of.get(bests[-1][1]) if bests else None,
        "curve": curve,
    }


def expand(run_dirs: list[Path]) -> list[Path]:
    """The run directories named, with a folder of runs (what `evoengine baselines` writes)
    standing for the runs in it: `search-*` first (the reference), then by name, seeds in order."""
    out = []
    for d in map(Path, run_dirs):
        inside = [] if (d / "archive.sqlite").exists() else [c for c in d.glob("*") if (c / "archive.sqlite").exists()]

        def order(run: Path) -> tuple:
            stem, _, seed = run.name.rpartition("-s")
            return (stem != "search", stem, int(seed)) if seed.isdigit() else (True, run.name, 0)

        out += sorted(inside, key=order) if inside else [d]
    return out


def comparison(run_dirs: list[Path]) -> dict[str, Any]:
    """The runs' curves and outcomes, the config keys in which they differ, their common budget
    and, with several seeds of each setup, the setups paired seed by seed (`_setups`)."""
    run_dirs = expand(run_dirs)
    if len(run_dirs) < 2:
        raise EvoError("a comparison needs two or more run directories (or a folder of runs)")
    runs = [run_curves(d) for d in run_dirs]
    configs = [_config(d) for d in run_dirs]
    keys = sorted({k for c in configs for k in c})
    differs = {k: [c.get(k) for c in configs] for k in keys if len({repr(c.get(k)) for c in configs}) > 1}
    common = min(len(r["curve"]["best"]) for r in runs)
    setups = _setups(runs, configs, [k for k in differs if k != "seed"], common)
    return {"compare": True, "runs": runs, "differs": differs, "common": common, "setups": setups}


def write_comparison(run_dirs: list[str | Path], out_path: str | Path | None = None) -> Path:
    """Write one page comparing the runs (default `compare.html` beside the first run, or in
    the folder of runs given)."""
    dirs = [Path(d) for d in run_dirs]
    data = comparison(dirs)
    folder = dirs[0] if len(dirs) == 1 else dirs[0].parent  # a folder of runs keeps its comparison
    out = Path(out_path) if out_path is not None else folder / "compare.html"
    return write_page(render_page(data, " vs ".join(r["name"] for r in data["runs"])), out)


def comparison_table(run_dirs: list[str | Path]) -> str:
    """The runs side by side as text: what differs in their configs, candidates, best score,
    the best at the budget they all reached (the fair comparison), the mean best-so-far over
    those admissions (area under the curve) and spend; then, when each setup was run with
    several seeds, the setups paired seed by seed (`_setups`)."""
    data = comparison([Path(d) for d in run_dirs])
    runs, differs, common, setups = data["runs"], data["differs"], data["common"], data["setups"]
    header = ["run", *differs, "candidates", "valid", "best", f"best@{common}", f"mean best@{common}", "spend $"]
    rows, short = [[*header, "stopped"]], []
    for i, r in enumerate(runs):
        curve = [b for b in r["curve"]["best"][:common] if b is not None]
        rows.append([
            r["name"], *(str(v[i]) for v in differs.values()), str(r["counts"]["admitted"]), str(r["counts"]["valid"]),
            _num(r["best_score"]), _num(curve[-1] if curve else None),
            _num(sum(curve) / len(curve) if curve else None), f"{r['spend']:.4f}", _stop(r["stopped"]),
        ])  # fmt: skip
        if r["stopped"] and r["stopped"]["reason"] not in FINISHED:
            why = f"{r['stopped']['reason']}: {r['stopped']['message']}".rstrip(": ")
            short.append(f"{r['name']} stopped short of its budget ({why}) after {r['counts']['admitted']} candidates")
    if short:
        short.append(f"(all are compared at {common} candidates, the fewest any has; `evoengine resume` goes on)")
    paired_rows = _columns(setups["rows"]) + setups["notes"] if setups else []
    return "\n".join(_columns(rows) + short + ([""] + paired_rows if paired_rows else []))


def _stop(stopped: dict[str, str] | None) -> str:
    return stopped["reason"] if stopped else "-"  # under way, killed, or from before runs said


def _setups(
    runs: list[dict[str, Any]], configs: list[dict[str, Any]], keys: list[str], common: int
) -> dict[str, list] | None:
    """The runs grouped by setup (their configs but for `seed`), each setup's best at `common`
    paired seed by seed with the first run's setup: a table's rows (header first) and notes on
    runs left out; None when no setup has two seeds. A setup is named by its runs' folder name
    less the seed (`greedy-s3` -> `greedy`) when its runs share one, else by the config keys in
    which the setups differ."""
    groups: dict[str, dict[Any, float | None]] = {}
    stems: dict[str, set[str]] = {}
    left_out = []
    for run, config in zip(runs, configs, strict=True):
        setup = ", ".join(f"{k}={config.get(k)}" for k in keys) or "(one setup)"
        by_seed = groups.setdefault(setup, {})
        if config.get("seed") in by_seed:
            left_out.append(f"left out: {run['name']}, a second run of seed {config.get('seed')} of {setup}")
            continue
        by_seed[config.get("seed")] = run["curve"]["best"][common - 1] if common else None
        stems.setdefault(setup, set()).add(re.sub(r"[-_.]?(s|seed)?\d+$", "", run["name"]))
    if max(len(by_seed) for by_seed in groups.values()) < 2:
        return None
    named = all(len(v) == 1 for v in stems.values()) and len({next(iter(v)) for v in stems.values()}) == len(stems)
    label = {setup: next(iter(stems[setup])) if named else setup for setup in groups}
    (first, reference), *_ = groups.items()
    rows = [["setup", "seeds", f"mean best@{common}", f"minus {label[first]}, seed by seed (95% interval)", ""]]
    for setup, by_seed in groups.items():
        scores = [v for v in by_seed.values() if v is not None]
        row = [label[setup], str(len(by_seed)), _num(statistics.fmean(scores) if scores else None), "-", ""]
        seeds = [s for s, v in by_seed.items() if v is not None and reference.get(s) is not None]
        if setup != first and not seeds:
            row[3] = "no seed in common"
        elif setup != first:
            d = paired([reference[s] for s in seeds], [by_seed[s] for s in seeds])
            interval = "" if d["low"] is None else f" [{d['low']:+.4g}, {d['high']:+.4g}]"
            row[3] = f"{d['mean']:+.4g}{interval} over {d['n']} (higher on {d['higher']}, lower on {d['lower']})"
            row[4] = verdict(d)
        rows.append(row)
    return {"rows": rows, "notes": left_out}


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """Mean of b - a over pairs, its 95% t-interval (None for one pair), and how often b was
    higher and lower."""
    from scipy.stats import t

    diffs = [y - x for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    mean = statistics.fmean(diffs)
    half = float(t.ppf(0.975, n - 1)) * statistics.stdev(diffs) / math.sqrt(n) if n > 1 else None
    return {
        "n": n,
        "mean": mean,
        "low": None if half is None else mean - half,
        "high": None if half is None else mean + half,
        "higher": sum(d > 0 for d in diffs),
        "lower": sum(d < 0 for d in diffs),
    }


def verdict(d: dict[str, Any]) -> str:
    """A paired difference in words: beyond the noise only when its interval leaves out zero."""
    if d["low"] is None:
        return "one seed: no interval"
    if d["low"] > 0:
        return "ahead, beyond the noise"
    if d["high"] < 0:
        return "behind, beyond the noise"
    return "level: within the noise"
