"""The code stays ruff-clean (the rules are in pyproject.toml)."""

import shutil
import subprocess
import sys

import pytest
from conftest import REPO


def test_the_repository_is_ruff_clean():
    if shutil.which("ruff") is None:
        pytest.skip("ruff is not installed (it comes with the `test` extra)")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
