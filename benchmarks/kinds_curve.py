"""Best score so far at given candidate counts, and what the minibatch gate stopped, from runs' stores.

    python benchmarks/kinds_curve.py RUN_DIR [RUN_DIR ...] [--at 1,20,50,100,200]
    python benchmarks/kinds_curve.py RUN_DIR --gate-what-if PROBLEM   # for a run made with the gate off

Candidates are counted in admission order (`seq`), the seed included; invalid ones count
toward the total but never raise the best. `--gate-what-if` scores every child and its
parent with the problem's `minibatch` and reports the share of children a gate would stop
that passes only strict improvements (evoengine's) and one that also passes ties.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
from pathlib import Path

from evoengine.problem import load_problem


def rows(run_dir: Path, columns: str) -> list[tuple]:
    conn = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT {columns} FROM candidates WHERE seq IS NOT NULL ORDER BY seq").fetchall()
    finally:
        conn.close()


def best_so_far(run_dir: Path) -> list[float | None]:
    """The best valid score after each admitted candidate, in admission order."""
    best: float | None = None
    curve = []
    for valid, score in rows(run_dir, "valid, score"):
        if valid and score is not None and (best is None or score > best):
            best = score
        curve.append(best)
    return curve


def gate_what_if(run_dir: Path, problem: str) -> tuple[float, float]:
    """Shares of children a strict gate and a ties-passing gate would stop."""
    minibatch = load_problem(problem).module.minibatch
    found = rows(run_dir, "id, parents, text")
    scores = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "candidate.txt"
        for cid, _, text in found:
            path.write_text(text)
            result = minibatch(str(path))
            scores[cid] = result.score if result.valid else None
    strict = ties = 0
    for cid, parents, _ in found[1:]:
        mine, theirs = scores[cid], scores.get(json.loads(parents)[0])
        strict += not (mine is not None and (theirs is None or mine > theirs))
        ties += not (mine is not None and (theirs is None or mine >= theirs))
    children = max(1, len(found) - 1)
    return strict / children, ties / children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--at", default="1,20,50,100,200", help="candidate counts, comma-separated")
    parser.add_argument("--gate-what-if", metavar="PROBLEM", help="replay a gate-off run's children through minibatch")
    args = parser.parse_args()
    if args.gate_what_if:
        for run in args.runs:
            strict, ties = gate_what_if(run, args.gate_what_if)
            print(f"{run.name}: a strict gate would stop {strict:.0%} of the children, a ties-passing one {ties:.0%}")
        return
    marks = [int(x) for x in args.at.split(",")]
    print("run | " + " | ".join(f"best at {m}" for m in marks) + " | gated")
    for run in args.runs:
        curve = best_so_far(run)
        cells = [f"{curve[m - 1]:.4g}" if m <= len(curve) and curve[m - 1] is not None else "-" for m in marks]
        gated = sum(fb.startswith("gate:") for (fb,) in rows(run, "feedback")[1:])
        print(f"{run.name} | " + " | ".join(cells) + f" | {gated}/{len(curve) - 1}")


if __name__ == "__main__":
    main()
