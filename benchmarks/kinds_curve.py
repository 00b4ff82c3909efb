"""Best score so far at given candidate counts, read from runs' stores.

    python benchmarks/kinds_curve.py RUN_DIR [RUN_DIR ...] [--at 20,100,200]

Candidates are counted in admission order (`seq`), the seed included; invalid ones count
toward the total but never raise the best.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path


def best_so_far(run_dir: Path) -> list[float | None]:
    """The best valid score after each admitted candidate, in admission order."""
    conn = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT valid, score FROM candidates WHERE seq IS NOT NULL ORDER BY seq").fetchall()
    finally:
        conn.close()
    best: float | None = None
    curve = []
    for valid, score in rows:
        if valid and score is not None and (best is None or score > best):
            best = score
        curve.append(best)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--at", default="1,20,50,100,200", help="candidate counts, comma-separated")
    args = parser.parse_args()
    marks = [int(x) for x in args.at.split(",")]
    print("run | " + " | ".join(f"best at {m}" for m in marks))
    for run in args.runs:
        curve = best_so_far(run)
        cells = [f"{curve[m - 1]:.4g}" if m <= len(curve) and curve[m - 1] is not None else "-" for m in marks]
        print(f"{run.name} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
