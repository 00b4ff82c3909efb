"""Seeds pooled from several recorded search-quality results: the paired comparison of each
setup with `search` (or `--reference`) over the union of their seeds.

    python benchmarks/pooled.py --problem cap_set --mode offline --budget 1000 \\
        benchmarks/results-search-quality-default-size.json \\
        benchmarks/results-search-quality-cap-sr-current20.json \\
        benchmarks/results-search-quality-cap-fresh20.json

Every results JSON that `search_quality.py` writes keeps each run's figures per budget
(`runs[].at`), so a comparison over fifty seeds can be read from three recorded samples of
twenty or ten. A setup must mean the same overrides in every file, and a seed must come from
one file only (two runs of one seed are not two pairs); either is an error naming the files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from evoengine.report.compare import paired  # noqa: E402


def pooled(files: list[Path], problem: str, mode: str, budget: int, measure: str) -> dict[str, dict[int, float]]:
    """Setup -> seed -> the measure at the budget, over all files."""
    values: dict[str, dict[int, float]] = {}
    seen: dict[tuple[str, int], Path] = {}
    overrides: dict[str, tuple[list[str], Path]] = {}
    for path in files:
        for run in json.loads(path.read_text())["runs"]:
            at = run["at"].get(str(budget))
            if run["problem"] != problem or run["mode"] != mode or at is None:
                continue
            setup, seed = run["setup"], run["seed"]
            first = overrides.setdefault(setup, (run["overrides"], path))
            if first[0] != run["overrides"]:
                sys.exit(f"setup {setup!r} is {first[0]} in {first[1]} but {run['overrides']} in {path}")
            if seen.setdefault((setup, seed), path) != path:
                sys.exit(f"seed {seed} of {setup!r} is in both {seen[setup, seed]} and {path}: pool disjoint samples")
            values.setdefault(setup, {})[seed] = float(at[measure])
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="results JSON files written by search_quality.py")
    parser.add_argument("--problem", required=True)
    parser.add_argument("--mode", default="offline", choices=["offline", "models"])
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--measure", default="best", choices=["best", "auc"])
    parser.add_argument("--reference", default="search", help="the setup the others are compared with")
    args = parser.parse_args()
    values = pooled(args.files, args.problem, args.mode, args.budget, args.measure)
    name = args.reference
    if name not in values:
        sys.exit(f"no `{name}` runs of {args.problem} ({args.mode}, {args.budget}) in these files")
    reference = values[name]
    print(f"{args.problem}, {args.mode}, {args.measure} at {args.budget:,}, {len(args.files)} files")
    for setup, by_seed in values.items():
        line = f"{setup:>12}: {len(by_seed)} seeds, mean {statistics.fmean(by_seed.values()):.4g}"
        common = sorted(set(by_seed) & set(reference))
        if setup != name and len(common) > 1:
            d = paired([reference[s] for s in common], [by_seed[s] for s in common])
            line += (
                f"; {setup} - {name} over {d['n']} seeds: {d['mean']:+.4g} [{d['low']:+.4g}, {d['high']:+.4g}]"
                f" {d['higher']}/{d['lower']}"
            )
        print(line)


if __name__ == "__main__":
    main()
