"""A compiled-language problem: an online bin-packing heuristic written in C.

The candidate is a C file whose `priority()` body lies between `// EVOLVE-BLOCK-START` and
`// EVOLVE-BLOCK-END`. The evaluator compiles it with gcc in the candidate's own temporary
folder (a compile error is an invalid result carrying the compiler's message), then plays
each instance with the program item by item over a pipe: an item is sent only after the
program has placed the one before, so it cannot look ahead. Every placement is replayed
and checked here; the score is computed from the replay, never from what the program says.
"""

from __future__ import annotations

import math
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from evoengine.problem import EvalResult, Feature, Problem

CAPACITY = 100
INSTANCES = 4
ITEMS = 2000
COMPILE_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 20.0  # all instances together
COMPILER_LINES = 25  # of the compiler's message kept as the invalid reason


def weibull_instance(seed: int) -> list[int]:
    """Item sizes from a Weibull(shape 3, scale 45) distribution, rounded, in [1, capacity]."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(45.0 * rng.weibull(3.0, ITEMS)), 1, CAPACITY).astype(int).tolist()


ITEM_LISTS = [weibull_instance(seed) for seed in range(INSTANCES)]

problem = Problem(
    name="bin_packing_c",
    description=f"""\
Online bin packing in C. Items (integer sizes 1-{CAPACITY}, Weibull-distributed, mean about
40) arrive one at a time and must be placed at once into a bin of capacity {CAPACITY}. For
each item, `priority(item, remaining, capacity, index, open_bins)` is called for every open
bin the item fits in (`remaining` is that bin's free space, `index` its position, 0 = the
first opened); the item goes to the bin with the highest priority, or to a new bin when it
fits none. Write the body of `priority` (C11, <math.h> available; the locals `slack`,
`gap` and `fill` are computed for you). The score is minus the average percentage of bins
used above the lower bound ceil(total size / capacity) on {INSTANCES} instances of {ITEMS}
items: fewer bins is better. First fit (the seed) and best fit are the usual baselines.
""",
    initial="initial.c",
    language="c",
    kind="program",
    features=(
        Feature("first_fit_agreement", 0.0, 1.0, 10),  # share of placements first fit would make
        Feature("best_fit_agreement", 0.0, 1.0, 10),  # share of placements best fit would make
    ),
    timeout_s=COMPILE_TIMEOUT_S + RUN_TIMEOUT_S + 10.0,
    memory_mb=1024,
    vocabulary="vocabulary.txt",  # terms the offline line operators may insert into priority()
)


def evaluate(candidate_path: str) -> EvalResult:
    """Compile the candidate, play every instance with it, score the replayed placements."""
    binary, error = compile_candidate(Path(candidate_path))
    if binary is None:
        return EvalResult.invalid(error)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    excess, first_fit, best_fit, placed = [], 0, 0, 0
    for number, items in enumerate(ITEM_LISTS):
        try:
            decisions = play(binary, items, deadline)
        except PlayError as exc:
            return EvalResult.invalid(f"instance {number}: {exc}")
        replay = replay_decisions(items, decisions)
        if isinstance(replay, str):
            return EvalResult.invalid(f"instance {number}: {replay}")
        bins, ff, bf = replay
        lower = math.ceil(sum(items) / CAPACITY)
        excess.append(100.0 * (bins - lower) / lower)
        first_fit, best_fit, placed = first_fit + ff, best_fit + bf, placed + len(items)
    mean_excess = float(np.mean(excess))
    return EvalResult(
        score=-mean_excess,
        metrics={"excess_percent": mean_excess, **{f"excess_{i}": e for i, e in enumerate(excess)}},
        features={"first_fit_agreement": first_fit / placed, "best_fit_agreement": best_fit / placed},
        feedback=(
            f"{mean_excess:.3f}% more bins than the lower bound on average "
            f"(per instance: {', '.join(f'{e:.2f}%' for e in excess)}); "
            f"{first_fit / placed:.0%} of placements agree with first fit, {best_fit / placed:.0%} with best fit."
        ),
        instances={f"instance{i}": -e for i, e in enumerate(excess)},
    )


def compile_candidate(source: Path) -> tuple[Path | None, str]:
    """gcc the candidate in its own folder; (binary, "") or (None, the reason)."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None, "no C compiler found: install gcc (Debian: apt-get install gcc)"
    binary = source.with_suffix(".bin")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(source.parent), "LC_ALL": "C"}
    try:
        done = subprocess.run(
            [compiler, "-std=c11", "-O2", "-o", str(binary), str(source), "-lm"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=COMPILE_TIMEOUT_S,
            cwd=source.parent,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return None, f"the compiler did not finish within {COMPILE_TIMEOUT_S:g} s"
    if done.returncode != 0:
        message = done.stderr.replace(str(source), "candidate.c").strip().splitlines()
        message = [line for line in message if "ld returned" not in line][:COMPILER_LINES]
        return None, "compile error (gcc -std=c11 -O2):\n" + "\n".join(message)
    return binary, ""


class PlayError(Exception):
    """The program crashed, hung, or answered something that is not a bin number."""


def play(binary: Path, items: list[int], deadline: float) -> list[int]:
    """Send the items one by one, each only after the program has placed the one before."""
    proc = subprocess.Popen(
        [str(binary)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=binary.parent,
        env={"LC_ALL": "C"},
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    out, buffer, decisions = proc.stdout.fileno(), b"", []
    try:
        proc.stdin.write(f"{CAPACITY}\n".encode())
        for item in items:
            proc.stdin.write(f"{item}\n".encode())
            proc.stdin.flush()
            while b"\n" not in buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([out], [], [], left)[0]:
                    raise PlayError(f"no placement within {RUN_TIMEOUT_S:g} s (item {len(decisions)})")
                chunk = os.read(out, 4096)
                if not chunk:
                    raise PlayError(_ended(proc, len(decisions)))
                buffer += chunk
            line, buffer = buffer.split(b"\n", 1)
            if not re.fullmatch(rb"\s*\d+\s*", line):
                raise PlayError(f"item {len(decisions)}: expected a bin number, got {line[:60]!r}")
            decisions.append(int(line))
    except BrokenPipeError:
        raise PlayError(_ended(proc, len(decisions))) from None
    finally:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    return decisions


def _ended(proc: subprocess.Popen, placed: int) -> str:
    code = proc.wait(timeout=5)
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    return f"the program {how} after placing {placed} items"


def replay_decisions(items: list[int], decisions: list[int]) -> tuple[int, int, int] | str:
    """Bins used, and how many placements first fit and best fit would also make; or what is wrong."""
    remaining: list[int] = []
    first_fit = best_fit = 0
    for i, (item, chosen) in enumerate(zip(items, decisions, strict=True)):
        fits = [j for j, r in enumerate(remaining) if r >= item]
        if chosen == len(remaining):
            if fits:
                return f"item {i} (size {item}) was put in a new bin although bin {fits[0]} had room"
            remaining.append(CAPACITY)
        elif chosen > len(remaining) or remaining[chosen] < item:
            return f"item {i} (size {item}) does not fit in bin {chosen}"
        first_fit += chosen == (fits[0] if fits else len(remaining) - 1)
        best_fit += chosen == (min(fits, key=lambda j: remaining[j]) if fits else len(remaining) - 1)
        remaining[chosen] -= item
    return len(remaining), first_fit, best_fit
