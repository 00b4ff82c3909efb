"""Bad input gets one clear error through the real `evoengine` command: it names the file, key
or run, says what to do, exits with code 2, shows no traceback, and loses nothing.

We run as root, where a chmod 0o500 folder is still writable; an unwritable run directory is
made instead by putting it under a regular file (ENOTDIR) or under /proc (no directories can
be made there).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, cli
from test_crash_safety import wait_for_no_evaluators

from evoengine.store import SCHEMA_VERSION

READ_COMMANDS = (("resume",), ("status",), ("status", "--json"), ("best",), ("lineage",), ("report",))


def refused(proc, *needles: str) -> str:
    """`proc` failed as a user error: exit 2, `error: ...` with every needle, no traceback."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert "error: " in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not in:\n{proc.stderr}"
    return proc.stderr


def fingerprint(run_dir: Path) -> dict[str, str]:
    """What a run holds: its admitted rows and the bytes of its plain files."""
    out = {}
    for path in sorted(run_dir.rglob("*")):
        if path.is_file() and not path.name.startswith("archive.sqlite"):
            out[str(path.relative_to(run_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    conn = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT id, seq, text, parents, score FROM candidates WHERE status='evaluated' ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    out["rows"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    quadratic = Path(__file__).resolve().parent / "problems" / "quadratic"
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    cli("run", str(quadratic), "--budget", "8", "--run-dir", str(run_dir), "-q", check=True)
    return run_dir


def copy_run(run_dir: Path, to: Path) -> Path:
    shutil.copytree(run_dir, to)
    return to


# ---------------------------------------------------------------- problem files


def make_problem(folder: Path, quadratic: Path, problem: str | None = None, seed: str | bool | None = None) -> Path:
    folder.mkdir()
    (folder / "problem.py").write_text(problem if problem is not None else (quadratic / "problem.py").read_text())
    if seed is not False:
        (folder / "initial.py").write_text(seed if seed is not None else (quadratic / "initial.py").read_text())
    return folder


@pytest.mark.parametrize(
    "case, edit, says",
    [
        (
            "does_not_import",
            lambda t: "import no_such_module_here\n" + t,
            ["importing it failed with ModuleNotFoundError", "no_such_module_here"],
        ),
        ("syntax_error", lambda t: t + "\ndef broken(:\n", ["importing it failed with SyntaxError"]),
        (
            "no_evaluate",
            lambda t: t.replace("def evaluate(", "def score_it("),
            ["define a function `evaluate(candidate_path)`"],
        ),
        (
            "no_problem",
            lambda t: t.replace("problem = Problem(", "spec = Problem("),
            ["define a module-level `problem = Problem(...)`"],
        ),
        (
            "bad_feature",
            lambda t: t.replace('Feature("a", -5.0, 5.0, 8)', 'Feature("a", 5.0, -5.0, 8)'),
            ["feature 'a': high (-5.0) must exceed low (5.0)"],
        ),
    ],
)
def test_a_broken_problem_file_is_named_with_what_to_fix(tmp_path, quadratic, case, edit, says):
    folder = make_problem(tmp_path / case, quadratic, problem=edit((quadratic / "problem.py").read_text()))
    run_dir = tmp_path / "run"
    refused(cli("run", str(folder), "--run-dir", str(run_dir)), str(folder / "problem.py"), *says)
    assert not run_dir.exists()


def test_a_missing_seed_file_is_named(tmp_path, quadratic):
    folder = make_problem(tmp_path / "noseed", quadratic, seed=False)
    run_dir = tmp_path / "run"
    refused(
        cli("run", str(folder), "--run-dir", str(run_dir)),
        str(folder / "problem.py"),
        "seed file 'initial.py' not found",
    )
    assert not run_dir.exists()


def test_a_missing_problem_is_named_with_where_to_look(tmp_path):
    refused(
        cli("run", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "run")),
        "no problem found at",
        "evoengine problems",
    )


@pytest.mark.parametrize(
    "seed, says",
    [
        ("# EVOLVE-BLOCK-START\ndef params():\n    return (1, 2, 3)\n", "line 1: EVOLVE-BLOCK-START is never closed"),
        (
            "def params():\n    return (1, 2, 3)\n# EVOLVE-BLOCK-END\n",
            "line 3: EVOLVE-BLOCK-END without an EVOLVE-BLOCK-START",
        ),
        (
            "# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-START\ndef params():\n    return (1, 2, 3)\n# EVOLVE-BLOCK-END\n",
            "line 2",
        ),
    ],
)
def test_unbalanced_evolve_block_markers_name_the_seed_and_the_line(tmp_path, quadratic, seed, says):
    folder = make_problem(tmp_path / "markers", quadratic, seed=seed)
    run_dir = tmp_path / "run"
    refused(cli("run", str(folder), "--run-dir", str(run_dir)), str(folder / "initial.py"), says)
    assert not run_dir.exists()


@pytest.mark.slow
def test_an_invalid_seed_is_refused_with_its_feedback_and_the_run_can_be_resumed_once_fixed(tmp_path, quadratic):
    folder = make_problem(
        tmp_path / "badseed",
        quadratic,
        seed="# EVOLVE-BLOCK-START\ndef params():\n    return 'nope'\n# EVOLVE-BLOCK-END\n",
    )
    run_dir = tmp_path / "run"
    refused(
        cli("run", str(folder), "--budget", "3", "--run-dir", str(run_dir), "-q"),
        str(folder / "initial.py"),
        "the seed scores invalid",
        "params() must return three numbers",
    )
    # Nothing was admitted; fix the seed and carry on in the same directory.
    (folder / "initial.py").write_text((quadratic / "initial.py").read_text())
    cli("resume", str(run_dir), "-q", check=True)
    assert "3 admitted" in cli("status", str(run_dir), check=True).stdout


# ---------------------------------------------------------------- run directories


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_a_missing_run_directory_is_named(tmp_path, command):
    missing = tmp_path / "no_such_run"
    refused(cli(command[0], str(missing), *command[1:]), str(missing), "does not exist", "runs/")


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_a_folder_that_is_not_a_run_says_how_to_start_one(tmp_path, command):
    folder = tmp_path / "empty"
    folder.mkdir()
    refused(
        cli(command[0], str(folder), *command[1:]),
        str(folder),
        "not a run directory",
        f"evoengine run PROBLEM --run-dir {folder}",
    )


@pytest.mark.parametrize("where", ["under_a_file", "under_proc"])
def test_an_unwritable_run_directory_is_refused_before_anything_starts(tmp_path, quadratic, where):
    if where == "under_a_file":
        (tmp_path / "plain_file").write_text("not a folder\n")
        run_dir = tmp_path / "plain_file" / "run"
    else:
        run_dir = Path("/proc") / f"evoengine-test-{os.getpid()}" / "run"
    refused(
        cli("run", str(quadratic), "--run-dir", str(run_dir)),
        f"run directory {run_dir}",
        "choose another with --run-dir",
    )
    assert not run_dir.exists()


@pytest.mark.slow
def test_run_dir_of_an_existing_run_is_refused_and_suggests_resume(tmp_path, quadratic, finished_run):
    run_dir = copy_run(finished_run, tmp_path / "run")
    before = fingerprint(run_dir)
    refused(
        cli("run", str(quadratic), "--budget", "20", "--run-dir", str(run_dir), "--set", "seed=5"),
        str(run_dir),
        f"resume it with `evoengine resume {run_dir}`",
        "pick a new --run-dir",
    )
    assert fingerprint(run_dir) == before  # not a byte of config.yaml, best/ or the rows changed


@pytest.mark.slow
@pytest.mark.parametrize("command", READ_COMMANDS)
def test_a_store_from_another_schema_version_is_refused_untouched(tmp_path, finished_run, command):
    run_dir = copy_run(finished_run, tmp_path / "run")
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    before = fingerprint(run_dir)
    refused(
        cli(command[0], str(run_dir), *command[1:]),
        str(run_dir / "archive.sqlite"),
        "store schema 99",
        f"reads schema {SCHEMA_VERSION}",
        "Use the evoengine version that wrote it",
    )
    assert fingerprint(run_dir) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "text, says",
    [
        ("budget: [\n", "not valid YAML"),
        ("islands:\n  cuont: 3\n", "did you mean 'islands.count'"),
        ("- a list\n", "expected a mapping of keys"),
    ],
)
def test_a_hand_damaged_config_yaml_of_a_run_is_named(tmp_path, finished_run, text, says):
    run_dir = copy_run(finished_run, tmp_path / "run")
    (run_dir / "config.yaml").write_text(text)
    before = fingerprint(run_dir)
    refused(cli("resume", str(run_dir), "-q"), str(run_dir / "config.yaml"), says)
    assert fingerprint(run_dir) == before


def _damage(run_dir: Path, how: str) -> None:
    store = run_dir / "archive.sqlite"
    conn = sqlite3.connect(store)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    keep = {1, conn.execute("SELECT rootpage FROM sqlite_master WHERE name='meta'").fetchone()[0]}
    conn.close()
    for extra in ("-wal", "-shm"):
        Path(f"{store}{extra}").unlink(missing_ok=True)
    data = bytearray(store.read_bytes())
    garbage = bytes(range(256)) * (page_size // 256)
    if how == "garbage":  # the whole file
        data[:] = garbage * (len(data) // page_size)
    else:  # every page but the header and the meta table: the store opens, its rows do not read
        for page in range(1, len(data) // page_size + 1):
            if page not in keep:
                data[(page - 1) * page_size : page * page_size] = garbage
    store.write_bytes(bytes(data))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["garbage", "damaged_pages"])
@pytest.mark.parametrize("command", READ_COMMANDS)
def test_a_corrupted_store_is_a_clear_store_error(tmp_path, finished_run, how, command):
    run_dir = copy_run(finished_run, tmp_path / "run")
    _damage(run_dir, how)
    refused(
        cli(command[0], str(run_dir), *command[1:]), str(run_dir / "archive.sqlite"), "is damaged", "Restore a copy"
    )


# ---------------------------------------------------------------- models


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_unreachable_model_and_missing_key_stop_the_run_before_anything_is_spent(tmp_path, quadratic):
    port = _closed_port()
    unset = "EVOENGINE_TEST_KEY_THAT_IS_NOT_SET"
    assert unset not in os.environ
    config = tmp_path / "models.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        extends: default
        models:
          - name: m
            base_url: http://127.0.0.1:{port}/v1
            api_key_env: {unset}
          - name: local
            base_url: http://127.0.0.1:{port}/v1
            api_key_env: null
        """)
    )
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evoengine.cli",
            "run",
            str(quadratic),
            "-c",
            str(config),
            "--budget",
            "5",
            "--run-dir",
            str(run_dir),
            "-q",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=300)
    err = refused(
        subprocess.CompletedProcess(proc.args, proc.returncode, out, err),
        "model pre-flight check failed, nothing was spent",
        f"model 'm' (http://127.0.0.1:{port}/v1): the environment variable {unset}",
        f"export {unset}=<key>",
        f"model 'local': cannot reach http://127.0.0.1:{port}/v1",
    )
    assert err.count("error: ") == 1  # one error, listing both models
    assert not wait_for_no_evaluators({proc.pid})  # the workers started meanwhile are gone
    assert not run_dir.exists()  # nothing left behind: the same --run-dir can be used again at once
