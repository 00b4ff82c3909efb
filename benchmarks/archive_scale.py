"""How the archive scales: time per admit, per select and per novelty check, and memory,
over a 100,000-candidate admission sequence of synthetic ~2 KB candidates.

    python benchmarks/archive_scale.py                      # both scenarios, 100,000 candidates
    python benchmarks/archive_scale.py --candidates 20000 --scenario default
    python benchmarks/archive_scale.py --append benchmarks/RESULTS-archive.md

Scenarios: "default" is the default config (4 islands x 200, ring migration every 50,
a 2-D grid over one problem feature and the length); "big" stresses selection with two
islands of up to 50,000 members each, the weighted strategy, FunSearch-style resets and
a 256-cell CVT over three problem features plus length and complexity (one reset at 60,000). Each step is the
engine's: select a parent, make a child, admit it. Novelty is timed on the first
`--novelty` candidates (check the child's text on its island, then add it), because its
cost depends on the window, not on the length of the run. Memory: resident set size
(RSS) at checkpoints and the candidates still referenced by the archive (which the caps
bound), not tracemalloc, which would slow every allocation several-fold.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import resource
import string
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evoengine.archive import Archive  # noqa: E402
from evoengine.config import Config  # noqa: E402
from evoengine.novelty import Novelty  # noqa: E402
from evoengine.problem import Feature, Problem  # noqa: E402
from evoengine.records import Candidate  # noqa: E402

SCENARIOS = {
    "default": {
        "config": {},
        "features": [Feature("f0", 0.0, 1.0, 10)],
    },
    "big": {
        "config": {
            "islands": {
                "count": 2,
                "population": 50_000,
                "topology": "ring",
                "migration_interval": 500,
                "migration_size": 5,
                "reset_interval": 60_000,
            },
            "selection": {"strategy": "weighted", "exploit": 0.7, "explore": 0.2, "elites": 0.1},
            "elites": {"kind": "cvt", "cells": 256, "builtin": ["length", "complexity"]},
        },
        "features": [Feature("f0", 0.0, 1.0), Feature("f1", 0.0, 1.0), Feature("f2", 0.0, 1.0)],
    },
}


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; peak from getrusage elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Texts:
    """Synthetic ~2 KB Python-like programs: a few bases, each child a unique variant."""

    def __init__(self, rng: random.Random, bases: int = 32):
        words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9))) for _ in range(200)]
        self.bases = []
        for _ in range(bases):
            lines = [
                f"    {rng.choice(words)} = {rng.choice(words)}({rng.randint(0, 999)}, {rng.choice(words)})"
                for _ in range(60)
            ]
            self.bases.append(["def solve(data):"] + lines + ["    return data"])
        self.rng = rng

    def make(self, cid: int) -> str:
        base = self.bases[cid % len(self.bases)]
        lines = list(base)
        for _ in range(3):
            i = self.rng.randrange(1, len(lines) - 1)
            lines[i] = f"    v{cid}_{i} = {self.rng.random():.6f} * {lines[i].split('=')[0].strip()}"
        cut = self.rng.randrange(0, 12)  # lengths vary a little
        return f"# candidate {cid}\n" + "\n".join(lines[: len(lines) - cut]) + "\n"


def summary(ns: list[int]) -> dict[str, float]:
    a = np.asarray(ns, dtype=np.float64) / 1e6  # ms
    return {
        "mean_ms": round(float(a.mean()), 4),
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
        "max_ms": round(float(a.max()), 3),
        "n": len(ns),
    }


def retained(archive: Archive) -> dict[str, int]:
    ids = {c.id for island in archive.islands.islands for c in island.members}
    if archive.elites is not None:
        ids |= {e.candidate.id for e in archive.elites.elites()}
    ids |= {c.id for f in archive._failures for c in f}
    chars = 0
    seen = set()
    for island in archive.islands.islands:
        for c in island.members:
            if c.id not in seen:
                seen.add(c.id)
                chars += len(c.text)
    return {"candidates_referenced": len(ids), "population_text_mb": round(chars / 2**20, 2)}


def run(name: str, n: int, novelty_n: int, seed: int = 0) -> dict:
    spec = SCENARIOS[name]
    cfg = Config(**{"seed": seed, **spec["config"]})
    problem = Problem(name="synthetic", description="synthetic", initial="seed.py", features=tuple(spec["features"]))
    rng = random.Random(seed)
    texts = Texts(rng)
    rss_start = rss_mb()

    t = time.perf_counter()
    archive = Archive(cfg, problem)
    novelty = Novelty(cfg.novelty)
    setup_s = time.perf_counter() - t

    def features() -> dict[str, float]:
        return {f.name: rng.random() for f in spec["features"]}

    seed_c = Candidate(0, texts.make(0), operator="seed", score=0.0, valid=True, features=features())
    t = time.perf_counter()
    archive.admit(seed_c)  # builds the MAP-Elites archive (CVT k-means)
    first_admit_s = time.perf_counter() - t
    novelty.add(seed_c)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(novelty.check("warm up", 0))  # imports done, libraries loaded
    gc.collect()
    rss0 = rss_mb()

    admit_ns, select_ns, check_ns = [], [], []  # CPU time of this thread, in ns
    admit_wall, select_wall, check_wall = [], [], []  # wall time, which load on the machine inflates
    load_before = os.getloadavg()[0]
    checkpoints = {}
    rejected = 0
    wall = time.perf_counter()
    for cid in range(1, n):
        w0, t0 = time.perf_counter_ns(), time.thread_time_ns()
        sel = archive.select(rng)
        select_ns.append(time.thread_time_ns() - t0)
        select_wall.append(time.perf_counter_ns() - w0)
        text = texts.make(cid)
        if cid < novelty_n:
            w2, t2 = time.perf_counter_ns(), time.thread_time_ns()
            verdict = loop.run_until_complete(novelty.check(text, sel.island))
            check_ns.append(time.thread_time_ns() - t2)
            check_wall.append(time.perf_counter_ns() - w2)
            rejected += not verdict.novel
        valid = rng.random() < 0.8
        parent_score = sel.parent.score if sel.parent.score is not None else 0.0
        child = Candidate(
            cid,
            text,
            parents=(sel.parent.id,),
            island=sel.island,
            generation=1,
            operator="diff",
            score=parent_score + rng.gauss(-0.05, 0.2) if valid else None,
            valid=valid,
            features=features() if valid else {},
            feedback="" if valid else "Traceback: synthetic failure",
        )
        w3, t3 = time.perf_counter_ns(), time.thread_time_ns()
        archive.admit(child)
        admit_ns.append(time.thread_time_ns() - t3)
        admit_wall.append(time.perf_counter_ns() - w3)
        if cid < novelty_n and valid:
            novelty.add(child)
        if (cid + 1) in (n // 10, n // 2, n):
            gc.collect()
            checkpoints[cid + 1] = round(rss_mb() - rss0, 1)
    loop.close()
    stats = archive.stats()
    return {
        "scenario": name,
        "candidates": n,
        "wall_s": round(time.perf_counter() - wall, 1),
        "setup_s": round(setup_s, 3),
        "first_admit_s": round(first_admit_s, 3),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "admit": summary(admit_ns),
        "select": summary(select_ns),
        "novelty_check": {**summary(check_ns), "rejected": rejected},
        "wall": {"admit": summary(admit_wall), "select": summary(select_wall), "novelty_check": summary(check_wall)},
        "rss_after_imports_mb": round(rss0 - rss_start, 1),
        "rss_growth_mb_at": checkpoints,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **retained(archive),
        "population_sizes": [i["size"] for i in stats["islands"]],
        "elites_filled": stats["elites"].get("filled"),
        "elite_cells": stats["elites"].get("cells"),
        "migrations": stats["migrations"],
        "resets": stats["resets"],
    }


def markdown(results: list[dict]) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        "## Archive at scale (benchmarks/archive_scale.py)",
        "",
        f"Machine: {cpu}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}. "
        "Milliseconds of CPU time per call (the thread's own, so that other work on the machine "
        "does not count; wall-clock figures are in the raw results); each step is select → make "
        "a ~2 KB child → admit. Novelty (n-gram embedder, window 256) is timed as check + add on "
        "the first candidates. RSS growth is measured after imports and the first admission.",
        "",
        "| scenario | candidates | admit mean / p99 | select mean / p99 | novelty check mean / p99 "
        "| first admit (s) | RSS growth MB at 10% / 50% / 100% | peak RSS MB | candidates referenced "
        "| island sizes | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        growth = " / ".join(str(v) for v in r["rss_growth_mb_at"].values())
        lines.append(
            f"| {r['scenario']} | {r['candidates']:,} | {r['admit']['mean_ms']} / {r['admit']['p99_ms']} "
            f"| {r['select']['mean_ms']} / {r['select']['p99_ms']} "
            f"| {r['novelty_check']['mean_ms']} / {r['novelty_check']['p99_ms']} (n={r['novelty_check']['n']:,}) "
            f"| {r['first_admit_s']} | {growth} | {r['peak_rss_mb']} | {r['candidates_referenced']:,} "
            f"| {r['population_sizes']} | {r['load_average'][0]} → {r['load_average'][1]} |"
        )
    lines += ["", "Raw results:", "", "```json", json.dumps(results, indent=1), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--novelty", type=int, default=10_000, help="candidates whose novelty is checked")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--append", type=Path, help="append a markdown section to this file")
    parser.add_argument("--json", action="store_true", help="run one scenario here, print its JSON")
    args = parser.parse_args()
    if args.json:
        json.dump(run(args.scenario, args.candidates, args.novelty), sys.stdout)
        return
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results = []
    for name in names:  # one process each, so peak memory is the scenario's own
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--json",
                "--scenario",
                name,
                "--candidates",
                str(args.candidates),
                "--novelty",
                str(args.novelty),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(json.loads(out))
    text = markdown(results)
    sys.stdout.write(text)
    if args.append:
        with args.append.open("a") as fh:
            fh.write(("\n" if args.append.exists() and args.append.stat().st_size else "") + text)


if __name__ == "__main__":
    main()
