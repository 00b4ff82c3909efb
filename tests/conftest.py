"""Shared fixtures: the repository's paths and a way to drive the real `evoengine` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_PROBLEMS = Path(__file__).resolve().parent / "problems"


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 300, check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `evoengine ARGS...` as a user would, in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "evoengine.cli", *args],
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
