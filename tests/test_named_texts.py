"""A candidate made of several named texts mutates one text at a time."""

from __future__ import annotations

import random
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import cli

from evoengine.blocks import evolve_blocks
from evoengine.config import load_config
from evoengine.harness import load_harness
from evoengine.problem import load_problem
from evoengine.records import Candidate, ProposalContext

pytest_plugins = ["scripted_server"]

TWO = Path(__file__).resolve().parent / "problems" / "two_texts"


def _changed_blocks(parent: str, child: str) -> list[str]:
    a, b = evolve_blocks(parent), evolve_blocks(child)
    return [x.name for x, y in zip(a, b, strict=True) if parent[x.start : x.end] != child[y.start : y.end]]


def _evaluated(run: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(run / "archive.sqlite")
    texts = dict(conn.execute("SELECT id, text FROM candidates WHERE status='evaluated'"))
    out = []
    for cid, parents in conn.execute("SELECT id, parents FROM candidates WHERE status='evaluated' AND seq > 1"):
        parent = int(parents.strip("[]").split(",")[0])
        out.append((texts[parent], texts[cid]))
    return out


def test_the_harness_focuses_each_proposal_on_one_named_text():
    problem = load_problem(TWO).problem
    harness = load_harness(load_config(None, ["models=[{name: m, api_key_env: null}]"]))
    parent = Candidate(id=1, text=problem.seed_text(), valid=True, score=0.0)
    picks = Counter()
    for seed in range(200):
        ctx = ProposalContext(
            problem=problem, parent=parent, inspirations=[], failures=[], rng=random.Random(seed), island=0
        )
        plan = harness.plan(ctx, "m")
        picks[plan.block] += 1
        if seed == 0:
            prompt = harness.messages(ctx, plan)[-1]["content"]
            assert f"change only the section `{plan.block}`" in prompt
    assert set(picks) == {"system", "examples"} and min(picks.values()) > 60


@pytest.mark.slow
def test_offline_text_operators_change_one_named_text_per_child(tmp_path):
    run = tmp_path / "run"
    cli("run", str(TWO), "--budget", "25", "--run-dir", str(run), "-q", check=True)
    pairs = _evaluated(run)
    assert pairs
    assert all(len(_changed_blocks(p, c)) == 1 for p, c in pairs)


def _focused_model(request: dict) -> str:
    """Edits the section the prompt names; in every third reply it also edits the other one."""
    prompt = request["messages"][-1]["content"]
    focus = re.search(r"change only the section `(\w+)`", prompt).group(1)
    other = "examples" if focus == "system" else "system"
    n = len(prompt) % 3
    edits = [
        (
            f"# EVOLVE-BLOCK-START {focus}\n",
            f"# EVOLVE-BLOCK-START {focus}\nbilling refund shipping example: billing example: refund {len(prompt)}\n",
        )
    ]
    if n == 0:
        edits.append((f"# EVOLVE-BLOCK-START {other}\n", f"# EVOLVE-BLOCK-START {other}\nsneaky {len(prompt)}\n"))
    return "".join(f"<<<<<<< SEARCH\n{a}=======\n{b}>>>>>>> REPLACE\n" for a, b in edits)


@pytest.mark.slow
def test_a_model_edit_outside_the_focused_text_is_refused(tmp_path, scripted_server):
    scripted_server.script("m", _focused_model)
    cfg = {
        "extends": "default",
        "models": [scripted_server.model("m", timeout_s=10.0).dump()],
        "operators": {"diff": 1.0, "full": 0.0, "crossover": 0.0, "repair_attempts": 0},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    cli("run", str(TWO), "-c", str(path), "--budget", "12", "--run-dir", str(run), "-q")
    pairs = _evaluated(run)
    assert pairs and all(len(_changed_blocks(p, c)) == 1 for p, c in pairs)
    reasons = [
        r
        for (r,) in sqlite3.connect(run / "archive.sqlite").execute(
            "SELECT reason FROM candidates WHERE status='failed'"
        )
    ]
    assert any("change only the section" in r for r in reasons)
