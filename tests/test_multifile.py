"""Candidates of several files: one text of FILE-headed files, diffs that name their file, one
file per rewrite, EVOLVE-BLOCK rules per file, offline operators and crossover per file, and a
folder for the evaluator, best/ and `evoengine best -o`."""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
import yaml
from conftest import REPO, cli
from test_report_browser import browser, click_node, errors, open_page, shown_code  # noqa: F401 (browser is a fixture)

from evoengine.config import load_config
from evoengine.engine.screening import digest
from evoengine.files import FilesError, join_files, split_files, write_folder
from evoengine.harness import Plan, load_harness
from evoengine.operators.folder import FolderProposer, apply_folder_reply
from evoengine.operators.offline import OfflineProposer
from evoengine.operators.text import TextProposer
from evoengine.patches import PatchError, parse_diff
from evoengine.problem import EvalResult, load_problem
from evoengine.records import Candidate, ProposalContext
from evoengine.store import RunReader

pytest_plugins = ["scripted_server"]

PACKAGE = REPO / "problems" / "minimizer_package"


@pytest.fixture(scope="module")
def problem():
    return load_problem(PACKAGE).problem


def _edit(file: str, search: str, replace: str) -> str:
    head = f"FILE: {file}\n" if file else ""
    return f"{head}<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


# ---------------------------------------------------------------- the one text


def test_files_round_trip_through_one_text_exactly():
    files = {
        "pkg/__init__.py": "",
        "pkg/core.py": "x = 1\n",
        "notes.txt": "no newline at the end",
        "b.yaml": "a: 1\r\n",
    }
    text = join_files(files)
    assert text.startswith("=== FILE: pkg/__init__.py ===\n=== FILE: pkg/core.py ===\nx = 1\n")
    assert "=== FILE: notes.txt (no newline at end) ===\n" in text
    assert split_files(text) == files and list(split_files(text)) == list(files)


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ({"a.py": "=== FILE: b.py ===\n"}, "file a.py, line 1"),
        ({"../up.py": ""}, "not a usable file name"),
        ({"with space.py": ""}, "not a usable file name"),
    ],
)
def test_files_that_one_text_cannot_hold_are_refused_with_the_file(files, says):
    with pytest.raises(FilesError, match=re.escape(says)):
        join_files(files)


def test_a_text_without_file_headers_is_not_taken_for_files():
    with pytest.raises(FilesError, match="before any text"):
        split_files("x = 1\n=== FILE: a.py ===\n")


def test_a_folder_seed_reads_as_its_files_in_path_order(problem):
    assert problem.folder
    files = split_files(problem.seed_text())
    assert list(files) == ["minimizer.py", "settings.yaml"]
    assert files["settings.yaml"] == (PACKAGE / "seed" / "settings.yaml").read_text()


# ---------------------------------------------------------------- the bundled problem


def _score(tmp_path: Path, step: str = "0.002", momentum: str = "0.0", extra: str = "") -> EvalResult:
    loaded = load_problem(PACKAGE)
    files = split_files(loaded.problem.seed_text())
    files["settings.yaml"] = files["settings.yaml"].replace("step: 0.002", f"step: {step}")
    files["minimizer.py"] = files["minimizer.py"].replace("[0.0 * vi", f"[{momentum} * vi") + extra
    folder = write_folder(files, tmp_path / f"c{len(list(tmp_path.iterdir()))}")
    return EvalResult.coerce(loaded.evaluate(str(folder)))


def test_the_best_package_needs_a_larger_step_and_momentum_together(tmp_path):
    seed = _score(tmp_path)
    assert seed.valid and 1.0 < seed.score < 1.3
    step, momentum, both = (
        _score(tmp_path, step="0.045"),
        _score(tmp_path, momentum="0.6"),
        _score(tmp_path, "0.045", "0.6"),
    )
    assert both.score > max(step.score, momentum.score) + 2.5 > seed.score + 2.5
    assert both.features["log10_step"] == pytest.approx(math.log10(0.045))


def test_the_gradient_budget_and_a_broken_settings_file_make_the_package_invalid(tmp_path):
    greedy = _score(
        tmp_path, extra="\n\ndef minimize(grad, x0):\n    for _ in range(31):\n        grad(x0)\n    return x0\n"
    )
    assert not greedy.valid and "more than 30 times" in greedy.feedback
    broken = _score(tmp_path, step="[")
    assert not broken.valid and "minimize() failed" in broken.feedback


@pytest.mark.slow
@pytest.mark.parametrize(
    ("breakage", "says"),
    [
        (lambda seed: (seed / "settings.yaml").write_text("# EVOLVE-BLOCK-START\nstep: 1\n"), "seed/settings.yaml"),
        (lambda seed: (seed / "notes.txt").write_text("=== FILE: x.py ===\n"), "file notes.txt, line 1"),
        (lambda seed: (seed / "blob.bin").write_bytes(b"\xff\xfe\x00"), "seed/blob.bin"),
    ],
)
def test_a_seed_folder_that_cannot_be_a_candidate_is_refused_naming_the_file(tmp_path, breakage, says):
    folder = tmp_path / "package"
    shutil.copytree(PACKAGE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    breakage(folder / "seed")
    proc = cli("run", str(folder), "--run-dir", str(tmp_path / "run"), "--budget", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert says in proc.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- diffs that name files


def test_each_edit_takes_the_file_named_before_it():
    reply = (
        "Two changes.\n\n**FILE: `settings.yaml`**\n"
        + _edit("", "step: 0.002", "step: 0.01")
        + "### File: minimizer.py\n"
        + _edit("", "a", "b")
        + _edit("", "c", "d")
    )
    assert [e.file for e in parse_diff(reply)] == ["settings.yaml", "minimizer.py", "minimizer.py"]


def test_a_diff_edits_two_files_each_under_its_own_rules(problem):
    line = "        v = [0.0 * vi - STEP * gi for vi, gi in zip(v, g)]"
    reply = _edit("settings.yaml", "step: 0.002", "step: 0.03") + _edit(
        "minimizer.py", line, line.replace("0.0", "0.6")
    )
    child = split_files(apply_folder_reply(problem.seed_text(), reply, problem, "diff"))
    assert "step: 0.03\n" in child["settings.yaml"] and "[0.6 * vi" in child["minimizer.py"]


def test_an_edit_of_a_frozen_line_is_refused_naming_the_file_and_the_line(problem):
    reply = _edit("settings.yaml", "steps: 30", "steps: 300")
    with pytest.raises(PatchError) as caught:
        apply_folder_reply(problem.seed_text(), reply, problem, "diff")
    message = str(caught.value)
    assert message.startswith("file settings.yaml: ") and "line 3 is frozen" in message
    assert "'steps: 300'" in message


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (_edit("solver.py", "x", "y"), "names the file 'solver.py', which the program does not have"),
        (_edit("", "# EVOLVE-BLOCK-START", "# x"), "edit 1 names no file; put a line 'FILE: name'"),
        ("I would raise the step.", "no SEARCH/REPLACE blocks found"),
    ],
)
def test_a_diff_that_cannot_find_its_file_says_what_to_write(problem, reply, says):
    with pytest.raises(PatchError, match=re.escape(says)):
        apply_folder_reply(problem.seed_text(), reply, problem, "diff")


def test_an_edit_naming_no_file_goes_to_the_one_file_holding_its_search_text(problem):
    child = apply_folder_reply(problem.seed_text(), _edit("", "step: 0.002", "step: 0.004"), problem, "diff")
    assert "step: 0.004" in split_files(child)["settings.yaml"]


def test_a_rewrite_returns_one_file_and_the_others_stay(problem):
    seed = split_files(problem.seed_text())
    new = seed["settings.yaml"].replace("0.002", "0.02")
    child = split_files(
        apply_folder_reply(problem.seed_text(), f"```yaml\n{new}```\n", problem, "full", "settings.yaml")
    )
    assert child == {**seed, "settings.yaml": new}
    noted = seed["minimizer.py"].replace("    x = list(x0)\n", "    # FILE: elsewhere.py\n    x = list(x0)\n")
    commented = f"FILE: minimizer.py\n```python\n{noted}```\n"
    child = split_files(apply_folder_reply(problem.seed_text(), commented, problem, "full", "settings.yaml"))
    assert child == {**seed, "minimizer.py": noted}
    both = f"FILE: settings.yaml\n```yaml\n{new}```\nFILE: minimizer.py\n```python\nx = 1\n```\n"
    with pytest.raises(PatchError, match="rewrite one file at a time"):
        apply_folder_reply(problem.seed_text(), both, problem, "full", "settings.yaml")


def test_a_package_equal_up_to_python_formatting_is_the_same_program(problem):
    seed = split_files(problem.seed_text())
    reformatted = join_files(
        {**seed, "minimizer.py": seed["minimizer.py"].replace("    x = list(x0)", "    x = list( x0 )  # a copy")}
    )
    other_step = join_files({**seed, "settings.yaml": seed["settings.yaml"].replace("0.002", "0.003")})
    assert digest(reformatted, "python", folder=True) == digest(problem.seed_text(), "python", folder=True)
    assert digest(other_step, "python", folder=True) != digest(problem.seed_text(), "python", folder=True)


# ---------------------------------------------------------------- prompts


def _ctx(problem, parent: str, other: str | None = None, seed: int = 0) -> ProposalContext:
    inspirations = [Candidate(id=2, text=other, valid=True, score=1.5)] if other else []
    return ProposalContext(
        problem=problem,
        parent=Candidate(id=1, text=parent, valid=True, score=1.0),
        inspirations=inspirations,
        failures=[],
        rng=random.Random(seed),
        island=0,
    )


def test_the_prompt_shows_each_file_under_its_header_and_asks_for_named_edits(problem):
    harness = load_harness(load_config(None, ["models=[{name: m, api_key_env: null}]"]))
    ctx = _ctx(problem, problem.seed_text())
    prompt = harness.messages(ctx, Plan("diff", 0))[-1]["content"]
    assert "FILE: minimizer.py\n```python\n" in prompt and "FILE: settings.yaml\n```yaml\n" in prompt
    assert "=== FILE:" not in prompt
    assert "FILE: name/of/the/file\n<<<<<<< SEARCH" in prompt and "EVOLVE-BLOCK-START` and" in prompt


def test_a_rewrite_plan_names_one_file_and_a_crossover_one_where_the_parents_differ(problem):
    harness = load_harness(load_config(None, ["models=[{name: m, api_key_env: null}]"]))
    seed = split_files(problem.seed_text())
    other = join_files({**seed, "settings.yaml": seed["settings.yaml"].replace("0.002", "0.02")})
    for k in range(10):
        ctx = _ctx(problem, problem.seed_text(), other, seed=k)
        ctx.operator_weights = {"diff": 0.0, "full": 0.0, "crossover": 1.0}
        plan = harness.plan(ctx, "m")
        assert plan.operator == "crossover" and plan.file == "settings.yaml"
    ctx.operator_weights = {"diff": 0.0, "full": 1.0, "crossover": 0.0}
    plan = harness.plan(ctx, "m")
    prompt = harness.messages(ctx, plan)[-1]["content"]
    assert f"write only the file `{plan.file}`, whole" in prompt and f"FILE: {plan.file}\n```" in prompt


# ---------------------------------------------------------------- offline, per file


def test_offline_children_change_one_file_or_cross_whole_files(problem):
    proposer = FolderProposer(OfflineProposer(), TextProposer())
    seed = split_files(problem.seed_text())
    other = join_files(
        {
            "minimizer.py": seed["minimizer.py"].replace("0.0 * vi", "0.5 * vi"),
            "settings.yaml": seed["settings.yaml"].replace("0.002", "0.02"),
        }
    )
    operators = set()
    for k in range(60):
        made = asyncio.run(proposer.propose(_ctx(problem, problem.seed_text(), other, seed=k)))
        child = split_files(made.text)
        changed = [name for name in seed if child[name] != seed[name]]
        operators.add(made.operator)
        if made.operator == "offline:file-crossover":
            assert made.parents == (1, 2) and len(changed) == 1
            assert all(child[n] == split_files(other)[n] for n in changed)
        else:
            assert len(changed) == 1 and made.change.startswith(f"{changed[0]}: ")
    assert {"offline:file-crossover", "offline:constant", "offline:number"} <= operators


# ---------------------------------------------------------------- whole runs


def _best_score(run: Path) -> tuple[float, float]:
    conn = sqlite3.connect(run / "archive.sqlite")
    seed = conn.execute("SELECT score FROM candidates WHERE seq = 1").fetchone()[0]
    best = conn.execute("SELECT max(score) FROM candidates WHERE status='evaluated' AND valid=1").fetchone()[0]
    return seed, best


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("offline") / "run"
    cli("run", "minimizer_package", "--budget", "200", "--run-dir", str(run), "-q", check=True)
    return run


@pytest.mark.slow
def test_an_offline_run_improves_the_package_and_writes_the_best_folder(offline_run, tmp_path):
    run = offline_run
    seed, best = _best_score(run)
    assert best > seed + 0.3
    kept = run / "best" / "minimizer_package"
    assert sorted(p.name for p in kept.iterdir()) == ["minimizer.py", "settings.yaml"]
    out = tmp_path / "mine"
    proc = cli("best", str(run), "-o", str(out), check=True)
    assert "as the folder" in proc.stderr
    assert {p.name: p.read_text() for p in out.iterdir()} == {p.name: p.read_text() for p in kept.iterdir()}
    assert "steps: 30\n" in (out / "settings.yaml").read_text()  # the frozen budget held
    printed = cli("best", str(run), check=True).stdout
    assert printed.startswith("=== FILE: minimizer.py ===\n")


@pytest.mark.slow
def test_the_report_shows_a_package_file_by_file(browser, offline_run):  # noqa: F811
    from evoengine.report import write_report

    reader = RunReader.open(offline_run)
    best = reader.best(1)[0]
    reader.close()
    open_page(browser, write_report(offline_run).as_uri())
    click_node(browser, best.id)
    assert shown_code(browser, best.id) == best.text
    headers = browser.execute_script(
        "return [...document.querySelectorAll('#detail-code .tk-meta')].map(n => n.textContent)"
    )
    assert headers == ["=== FILE: minimizer.py ===\n", "=== FILE: settings.yaml ===\n"]
    lineage = cli("lineage", str(offline_run), check=True).stdout
    assert " in settings.yaml: step: " in lineage or " in minimizer.py: " in lineage
    assert errors(browser.get_log("browser")) == []


@pytest.mark.slow
def test_a_prompt_and_its_tool_definitions_evolve_together_offline(tmp_path):
    """Not only code: a text folder (prompt.txt + tools.json) gets the line operators file by file."""
    run = tmp_path / "run"
    cli(
        "run",
        str(REPO / "tests" / "problems" / "prompt_tools"),
        "--budget",
        "60",
        "--run-dir",
        str(run),
        "-q",
        check=True,
    )
    seed, best = _best_score(run)
    assert best >= seed + 2
    kept = run / "best" / "prompt_tools"
    assert "refund_order" in (kept / "prompt.txt").read_text()
    assert {t["name"] for t in json.loads((kept / "tools.json").read_text())["tools"]} >= {"refund_order"}


class _Model:
    """A scripted model: its first reply edits a frozen line (steps); after a refusal it fixes
    the reply; otherwise it raises the step and the momentum, editing both files, and once the
    momentum is as high as it goes it samples: each reply a slightly different step. (Always
    answering the highest step would make every child of a parent just below it a copy of
    one evaluated, and a run could end as failing on a model that never varies.)"""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0

    def __call__(self, request: dict) -> str:
        prompt = request["messages"][1]["content"]  # the task; a repair adds the error after it
        with self.lock:
            self.calls += 1
            call = self.calls
        if call == 1:
            return "More iterations help.\n" + _edit("settings.yaml", "steps: 30", "steps: 300")
        step = re.search(r"^step: (\S+)$", prompt, re.M).group(1)
        line, momentum = re.search(r"^( +v = \[(\S+) \* vi.*)$", prompt, re.M).groups()
        faster = line.replace(f"[{momentum} *", f"[{min(float(momentum) + 0.3, 0.6):g} *")
        larger = f"step: {min(float(step) * 3, 0.045):g}"
        if faster == line:
            larger = f"step: {min(float(step) * 3, 0.045) * (1 - call / 1000):.6g}"
        edits = _edit("settings.yaml", f"step: {step}", larger)
        return edits + (_edit("minimizer.py", line, faster) if faster != line else "")


@pytest.mark.slow
def test_a_model_run_edits_both_files_and_a_frozen_edit_goes_back_with_its_reason(tmp_path, scripted_server):
    scripted_server.script("m", _Model())
    cfg = {
        "extends": "default",
        "models": [scripted_server.model("m", timeout_s=10.0).dump()],
        "operators": {"diff": 1.0, "full": 0.0, "crossover": 0.0, "repair_attempts": 1},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    cli("run", "minimizer_package", "-c", str(path), "--budget", "12", "--run-dir", str(run), "-q", check=True)
    seed, best = _best_score(run)
    assert best > seed + 1.5
    first = scripted_server.calls("m")[0].body["messages"][1]["content"]
    assert "FILE: minimizer.py\n```python\n" in first and "FILE: settings.yaml\n```yaml\n" in first
    repairs = [
        c.body["messages"][-1]["content"]
        for c in scripted_server.calls("m")
        if c.body["messages"][-1]["content"].startswith("Your reply could not be used")
    ]
    assert repairs and "file settings.yaml: edit 1" in repairs[0] and "line 3 is frozen" in repairs[0]
    best_files = {p.name: p.read_text() for p in (run / "best" / "minimizer_package").iterdir()}
    assert "steps: 30\n" in best_files["settings.yaml"] and "step: 0.002" not in best_files["settings.yaml"]
    assert "[0.0 * vi" not in best_files["minimizer.py"]


def test_a_broken_child_is_named_as_the_child_not_the_parent():
    from evoengine.blocks import PatchError
    from evoengine.operators.folder import folder_change

    parent = join_files({"a.py": "x = 1\n", "b.txt": "hello\n"})
    with pytest.raises(PatchError, match="the child's files are broken"):
        folder_change(parent, "no header line at all\n")
