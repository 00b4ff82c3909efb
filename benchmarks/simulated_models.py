"""Simulated models of known behaviour, served over real HTTP as an OpenAI-compatible endpoint.

The search-quality benchmark needs models whose quality is known, so that what a search
does with them can be judged. Each model here reads the prompt the engine sent (the current
program is the first fenced block after its `(candidate N)` heading; a diff is asked for when
the reply format shows a SEARCH/REPLACE block), makes a child with evoengine's offline
operators, and answers in the requested format: SEARCH/REPLACE edits, or the whole program
in a fence. The behaviours:

- ``good``: makes 4 offline edits, scores each with the problem's own evaluator (in a warm
  sandbox pool in this process) and proposes the best; 0.1 s per reply at least.
- ``useless``: never changes what the program computes; it adds an unused assignment, so
  the child is new text, is evaluated, and scores what its parent did (on a problem whose
  score is deterministic). 0.05 s.
- ``noisy``: one offline edit, unscored (better, worse or broken, as chance has it). 0.05 s.
- ``broken``: 60% of replies cannot be used: half have a syntax error, half are SEARCH
  texts that are not in the program (or, for whole programs, change the frozen text);
  the rest are as ``noisy``. 0.05 s.
- ``slow``: ``good`` at 1 s per reply; ``fast``: ``noisy`` at 0.01 s.

A model id names the behaviour and the problem, ``good/cap_set``, and is served for every
problem given at start-up. Randomness comes from a hash of the request and how often that
exact request was seen before, so a repeated prompt gets a new edit.

    python benchmarks/simulated_models.py cap_set deceptive_ridge
    # prints {"url": "http://127.0.0.1:PORT/v1", "models": [...]} and serves until stdin closes

From Python: `SimulatedModels(["cap_set"]).start()`, then `.url` and `.stop()`; a `models:` entry
names one as `{"name": "good", "model": "good/cap_set", "base_url": url, "api_key_env": None}`.
"""

from __future__ import annotations

import asyncio
import collections
import difflib
import hashlib
import json
import random
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from scripted_server import ScriptedServer  # noqa: E402

from evoengine.config import Evaluation  # noqa: E402
from evoengine.evaluation.pool import EvaluatorPool  # noqa: E402
from evoengine.evaluation.sandbox import Limits  # noqa: E402
from evoengine.operators.offline import OfflineProposer  # noqa: E402
from evoengine.patches import evolve_blocks  # noqa: E402
from evoengine.problem import LoadedProblem, load_problem  # noqa: E402
from evoengine.records import Candidate, ProposalContext, ProposalFailed  # noqa: E402

TITLE = re.compile(r"^#+ (?:Current \w+|Parent A) \(candidate \d+\)\s*$", re.M)
FENCE = re.compile(r"^(`{3,})[\w+-]*\n(.*?)\n\1\s*$", re.M | re.S)
DIFF_FORMAT = "<<<<<<< SEARCH"


@dataclass(frozen=True)
class Behaviour:
    """What a simulated model does: how many scored edits it picks from (0: one unscored edit,
    -1: a no-op edit), the share of replies it breaks, and its least reply time."""

    edits: int
    broken: float
    latency_s: float
    about: str


BEHAVIOURS = {
    "good": Behaviour(4, 0.0, 0.1, "best of 4 offline edits, each scored by the problem's evaluator"),
    "useless": Behaviour(-1, 0.0, 0.05, "adds an unused assignment: never changes the score"),
    "noisy": Behaviour(0, 0.0, 0.05, "one unscored offline edit"),
    "broken": Behaviour(0, 0.6, 0.05, "60% syntax errors or unappliable edits, else one unscored edit"),
    "slow": Behaviour(4, 0.0, 1.0, "good, at 1 s per reply"),
    "fast": Behaviour(0, 0.0, 0.01, "noisy, at 0.01 s per reply"),
}


class SimulatedModels:
    """An OpenAI-compatible server on 127.0.0.1 answering as the behaviours above, for `problems`."""

    def __init__(self, problems: list[str], evaluation_slots: int = 2):
        self.problems: dict[str, LoadedProblem] = {}
        for spec in problems:
            loaded = load_problem(spec)
            self.problems[loaded.problem.name] = loaded
        self.slots = evaluation_slots
        self.server = ScriptedServer()
        self.loop = asyncio.new_event_loop()
        self.pools: dict[str, EvaluatorPool] = {}
        self.seen: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.proposer = OfflineProposer()
        for behaviour in BEHAVIOURS:
            for name in self.problems:
                self.server.script(f"{behaviour}/{name}", self._reply_for(behaviour, name))

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> SimulatedModels:
        threading.Thread(target=self.loop.run_forever, daemon=True, name="simulated-models-loop").start()
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        for pool in self.pools.values():
            asyncio.run_coroutine_threadsafe(pool.close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)

    # ------------------------------------------------------------ answering

    def _reply_for(self, behaviour: str, problem: str):
        spec = BEHAVIOURS[behaviour]
        loaded = self.problems[problem]

        def reply(request: dict[str, Any]) -> str:
            started = time.monotonic()
            text = self._answer(spec, loaded, request)
            time.sleep(max(0.0, spec.latency_s - (time.monotonic() - started)))
            return text

        return reply

    def _answer(self, spec: Behaviour, loaded: LoadedProblem, request: dict[str, Any]) -> str:
        messages = [m for m in request.get("messages", []) if m.get("role") == "user"]
        if not messages:
            return "I see no program to change."
        parent = parent_text(str(messages[0].get("content", "")))
        if parent is None:
            return "I could not find the current program in the prompt."
        wants_diff = DIFF_FORMAT in str(messages[-1].get("content", ""))
        rng = random.Random(self._seed(request))
        if rng.random() < spec.broken:
            return broken_reply(parent, loaded.problem.comment, wants_diff, rng)
        if spec.edits < 0:
            child = no_op_child(parent, loaded.problem.comment, rng)
        else:
            children = [self._edit(loaded, parent, rng) for _ in range(max(1, spec.edits))]
            children = [c for c in children if c is not None]
            if not children:
                return "I found no change worth making."
            child = children[0] if spec.edits == 0 else self._best(loaded, children)
        return diff_reply(parent, child) if wants_diff else f"```{loaded.problem.language}\n{child}```\n"

    def _seed(self, request: dict[str, Any]) -> int:
        key = hashlib.sha256(
            json.dumps([request.get("model"), request.get("messages"), request.get("temperature")]).encode()
        ).hexdigest()
        with self.lock:
            self.seen[key] += 1
            repeat = self.seen[key]
        return int(key[:16], 16) + repeat

    def _edit(self, loaded: LoadedProblem, parent: str, rng: random.Random) -> str | None:
        ctx = ProposalContext(loaded.problem, Candidate(id=0, text=parent, valid=True), [], [], rng, 0)
        try:
            return asyncio.run_coroutine_threadsafe(self.proposer.propose(ctx), self.loop).result().text
        except ProposalFailed:
            return None

    def _best(self, loaded: LoadedProblem, children: list[str]) -> str:
        """The child the problem's evaluator scores highest (invalid ones last)."""
        pool = self._pool(loaded)
        results = [
            asyncio.run_coroutine_threadsafe(pool.evaluate(c, label="simulated-model"), self.loop).result()
            for c in children
        ]
        ranked = [(r.score if r.valid and r.score is not None else float("-inf"), k) for k, r in enumerate(results)]
        return children[max(ranked)[1]]

    def _pool(self, loaded: LoadedProblem) -> EvaluatorPool:
        with self.lock:
            pool = self.pools.get(loaded.problem.name)
            if pool is None:
                limits = Limits.from_config(loaded.problem, Evaluation())
                pool = EvaluatorPool(loaded.path, self.slots, limits)
                asyncio.run_coroutine_threadsafe(pool.start(), self.loop).result(timeout=120)
                self.pools[loaded.problem.name] = pool
        return pool


# ---------------------------------------------------------------- reading prompts, writing replies


def parent_text(prompt: str) -> str | None:
    """The current program (or parent A) in a prompt: the first fenced block after its heading."""
    title = TITLE.search(prompt)
    found = FENCE.search(prompt, title.end() if title else 0)
    return found.group(2) + "\n" if found else None


def diff_reply(parent: str, child: str) -> str:
    """One SEARCH/REPLACE edit turning `parent` into `child`: the changed lines, with as much
    context as makes the SEARCH text occur exactly once in the parent."""
    old, new = parent.splitlines(), child.splitlines()
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    changes = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    if not changes:
        return "The program is fine as it is."
    i1, i2 = changes[0][1], changes[-1][2]
    j1, j2 = changes[0][3], changes[-1][4]
    while i1 == i2 or parent.count("\n".join(old[i1:i2]) + "\n") != 1:
        if i1 > 0:
            i1, j1 = i1 - 1, j1 - 1
        elif i2 < len(old):
            i2, j2 = i2 + 1, j2 + 1
        else:
            break
    search, replace = "\n".join(old[i1:i2]), "\n".join(new[j1:j2])
    return f"A small change.\n\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def block_lines(parent: str, comment: str) -> list[str]:
    """The code lines inside the EVOLVE-BLOCKs (the whole text when it has none)."""
    blocks = evolve_blocks(parent, comment)
    text = "".join(parent[b.start : b.end] for b in blocks) if blocks else parent
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith(comment)]


def no_op_child(parent: str, comment: str, rng: random.Random) -> str:
    """`parent` with an unused assignment as the first line of its first EVOLVE-BLOCK."""
    blocks = evolve_blocks(parent, comment)
    at = blocks[0].start if blocks else 0
    first = next(iter(block_lines(parent, comment)), "")
    indent = first[: len(first) - len(first.lstrip())]
    return parent[:at] + f"{indent}_unused_{rng.randrange(10**6)} = {rng.randrange(1000)}\n" + parent[at:]


def broken_reply(parent: str, comment: str, wants_diff: bool, rng: random.Random) -> str:
    """A reply that cannot become a valid child: a syntax error or an edit that does not apply."""
    lines = block_lines(parent, comment)
    line = rng.choice(lines) if lines else "x = 1"
    if rng.random() < 0.5:  # a syntax error
        broken = line + " = (("
        if wants_diff:
            return f"<<<<<<< SEARCH\n{line}\n=======\n{broken}\n>>>>>>> REPLACE\n"
        return f"```python\n{parent.replace(line, broken, 1)}```\n"
    if wants_diff:  # a SEARCH text the program does not contain
        return f"<<<<<<< SEARCH\n{line}  # as I remember it\n=======\n{line}\n>>>>>>> REPLACE\n"
    return f"```python\n# my version\n{parent}```\n"  # touches the frozen text


def main() -> None:
    problems = sys.argv[1:]
    if not problems:
        sys.exit("usage: simulated_models.py PROBLEM [PROBLEM ...]")
    models = SimulatedModels(problems).start()
    names = [f"{b}/{p}" for b in BEHAVIOURS for p in models.problems]
    print(json.dumps({"url": models.url, "models": names}), flush=True)
    try:
        sys.stdin.read()
    finally:
        models.stop()


if __name__ == "__main__":
    main()
