"""Runs compared: `evoengine report RUN_A RUN_B ...` puts their best-so-far curves (by
admission, by spend and by time), spend and outcomes side by side, with the config keys in
which they differ (e.g. `selection.strategy: iid` vs `greedy` for the search baselines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import EvoError
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
    """One run's outcomes and its best-so-far score at every admission, with the spend and
    seconds of search up to it (proposals in the order they closed)."""
    with RunReader.open(run_dir) as reader, reader.snapshot():
        rows = reader.proposals()
        counts = reader.outcome_counts()
        meta = reader.meta()
        spend = reader.spend()
        elapsed = reader.get_state("elapsed_s")
    start = meta.get("created") or min((r["created"] for r in rows), default=0.0)
    best, spent, curve = None, 0.0, {"seq": [], "best": [], "spend": [], "t": []}
    for r in sorted(rows, key=lambda r: (r["finished"] or 0, r["id"])):
        spent += r["cost"] or 0.0
        if r["seq"] is None:
            continue
        if r["outcome"] == "valid" and r["score"] is not None and (best is None or r["score"] > best):
            best = r["score"]
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
        "seed_score": seed["score"] if seed else None,
        "best_score": best,
        "curve": curve,
    }


def comparison(run_dirs: list[Path]) -> dict[str, Any]:
    if len(run_dirs) < 2:
        raise EvoError("a comparison needs two or more run directories")
    runs = [run_curves(Path(d)) for d in run_dirs]
    configs = [_config(Path(d)) for d in run_dirs]
    keys = sorted({k for c in configs for k in c})
    differs = {k: [c.get(k) for c in configs] for k in keys if len({repr(c.get(k)) for c in configs}) > 1}
    return {"compare": True, "runs": runs, "differs": differs}


def write_comparison(run_dirs: list[str | Path], out_path: str | Path | None = None) -> Path:
    """Write one page comparing the runs (default `compare.html` beside the first run)."""
    dirs = [Path(d) for d in run_dirs]
    data = comparison(dirs)
    out = Path(out_path) if out_path is not None else dirs[0].parent / "compare.html"
    return write_page(render_page(data, " vs ".join(r["name"] for r in data["runs"])), out)


def comparison_table(run_dirs: list[str | Path]) -> str:
    """The runs side by side as text: what differs in their configs, candidates, best score,
    the best at the budget they all reached (the fair comparison), the mean best-so-far over
    those admissions (area under the curve) and spend."""
    data = comparison([Path(d) for d in run_dirs])
    runs, differs = data["runs"], data["differs"]
    common = min(len(r["curve"]["best"]) for r in runs)
    header = ["run", *differs, "candidates", "valid", "best", f"best@{common}", f"mean best@{common}", "spend $"]
    rows = [header]
    for i, r in enumerate(runs):
        curve = [b for b in r["curve"]["best"][:common] if b is not None]
        rows.append([
            r["name"], *(str(v[i]) for v in differs.values()), str(r["counts"]["admitted"]), str(r["counts"]["valid"]),
            _num(r["best_score"]), _num(curve[-1] if curve else None),
            _num(sum(curve) / len(curve) if curve else None), f"{r['spend']:.4f}",
        ])  # fmt: skip
    widths = [max(len(row[k]) for row in rows) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
