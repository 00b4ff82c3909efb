"""The search-quality benchmark at its quick size: one command runs setups against each other on
problems of the suite, offline and with the simulated models over real HTTP, and writes a
table with paired comparisons; run again, it makes nothing it has already recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def benchmark(work: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "search_quality.py"),
            "--quick",
            "--setup",
            "search",
            "--setup",
            "greedy",
            "selection.strategy=hill_climb",
            "islands.count=1",
            "--work",
            str(work),
            "--out",
            str(work / "results.json"),
            "--table",
            str(work / "RESULTS.md"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@pytest.mark.slow
def test_quick_benchmark_compares_setups_with_both_operator_kinds_and_resumes(tmp_path):
    first = benchmark(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    table = (tmp_path / "RESULTS.md").read_text()
    assert "## offline operators, 60 evaluations" in table
    assert "## simulated models (good, useless, noisy, broken), 60 evaluations" in table
    assert "| problem | `search` | `greedy` |" in table
    assert "`greedy` − `search`" in table
    for problem in ("deceptive_ridge", "sorting_network"):
        assert f"| {problem} |" in table

    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]
    assert len(runs) == 2 * 2 * 2 * 2  # modes x problems x setups x seeds
    assert all(r["evaluations"] == 60 for r in runs)
    compared = [row for row in results["summary"] if row["setup"] == "greedy"]
    assert compared and all(row["best_vs_search"]["n"] == 2 for row in compared)
    model_runs = [r for r in runs if r["mode"] == "models"]
    assert all(r["at"]["60"]["model_calls"] >= 59 for r in model_runs)

    # The simulated models behave as documented: the good one improves on its parent far more
    # often than the noisy one, and the useless one never does.
    made: dict[str, list[int]] = {}
    for run in model_runs:
        for model, (children, better) in run["children"].items():
            made.setdefault(model, [0, 0])
            made[model][0] += children
            made[model][1] += better
    assert made["useless"][0] > 0 and made["useless"][1] == 0
    assert made["good"][1] / made["good"][0] > 2 * made["noisy"][1] / made["noisy"][0]

    # Run again, it makes nothing; setups recorded earlier join its tables under new names.
    earlier = f"{tmp_path / 'records.jsonl'}:greedy=greedy-earlier"
    again = benchmark(tmp_path, "--compare-with", earlier)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "16 runs in the matrix, 16 already recorded" in again.stderr
    assert "`greedy-earlier` − `search`" in (tmp_path / "RESULTS.md").read_text()
    rows = {
        (r["mode"], r["problem"], r["budget"], r["setup"]): r
        for r in json.loads((tmp_path / "results.json").read_text())["summary"]
    }
    same = [
        (rows[k]["best_vs_search"], rows[(*k[:3], "greedy-earlier")]["best_vs_search"])
        for k in rows
        if k[3] == "greedy"
    ]
    assert same and all(a == b for a, b in same)


def test_a_second_benchmark_in_the_same_work_folder_is_refused_before_it_runs_anything(tmp_path):
    import fcntl

    work = tmp_path / "work"
    work.mkdir()
    with (work / "lock").open("a+") as held:  # as a benchmark still running there holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242\n")
        held.flush()
        refused = benchmark(work)
    assert refused.returncode != 0
    assert f"{work} is in use by pid 4242" in refused.stderr and "another --work" in refused.stderr
    assert not (work / "records.jsonl").exists() and not (work / "results.json").exists()


def test_seeds_pooled_from_several_recorded_results_are_compared_pair_by_pair(tmp_path):
    def results(name: str, seeds: range, shift: float, overrides: list[str] | None = None) -> Path:
        runs = [
            {"problem": "cap_set", "mode": "offline", "setup": setup, "seed": seed, "at": {"1000": {"best": best}}}
            | {"overrides": overrides if overrides is not None and setup == "greedy" else []}
            for seed in seeds
            for setup, best in (("search", 36.0 + seed % 3), ("greedy", 36.0 + seed % 3 + shift))
        ]
        path = tmp_path / name
        path.write_text(json.dumps({"runs": runs}))
        return path

    def pooled(*files: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, str(REPO / "benchmarks" / "pooled.py"), "--problem", "cap_set", *map(str, files)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    ten, twenty = results("a.json", range(10), -1.0), results("b.json", range(30, 50), -2.0)
    out = pooled(ten, twenty)
    assert out.returncode == 0, out.stderr
    assert "search: 30 seeds" in out.stdout and "greedy - search over 30 seeds: -1.667" in out.stdout
    again = pooled(ten, results("c.json", range(5, 15), 0.0))
    assert again.returncode != 0 and "seed 5 of 'search' is in both" in again.stderr
    other = pooled(ten, results("d.json", range(30, 40), 0.0, ["selection.strategy=greedy"]))
    assert other.returncode != 0 and "setup 'greedy' is [] in" in other.stderr
