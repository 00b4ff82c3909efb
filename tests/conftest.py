"""Shared fixtures: the repository's paths and a way to drive the real `evoengine` command."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_PROBLEMS = Path(__file__).resolve().parent / "problems"


EVOENGINE = [sys.executable, "-m", "evoengine.cli"]  # the command, as a user runs it


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `evoengine ARGS...` as a user would, in a subprocess."""
    proc = subprocess.run(
        [*EVOENGINE, *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"evoengine {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def status(run_dir: Path) -> dict:
    return json.loads(cli("status", str(run_dir), "--json", check=True).stdout)


@pytest.fixture
def quadratic() -> Path:
    return TEST_PROBLEMS / "quadratic"


def problem_folder(folder: Path, problem: str, initial: str) -> Path:
    """A problem folder made from the texts of its problem.py and initial.py."""
    folder.mkdir()
    (folder / "problem.py").write_text(problem)
    (folder / "initial.py").write_text(initial)
    return folder


def as_schema_1(run_dir: Path) -> None:
    """Make a run's store look as evoengine 0.1 wrote it (schema 1: no schedule, kinds, digests or
    resume snapshot), to check that older stores still open and are upgraded."""
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    for index in ("candidates_closed", "candidates_digest", "model_calls_cost"):
        conn.execute(f"DROP INDEX {index}")
    conn.execute("DROP TABLE resume")
    for column in ("basis", "attempt", "closed", "kind", "digest"):
        conn.execute(f"ALTER TABLE candidates DROP COLUMN {column}")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.commit()
    conn.close()
