"""evoengine: evolutionary program search with language models as operators.

The public API: `Problem`, `Feature` and `EvalResult` for problem files; `run(...)` to run a
search from a script or notebook; `open_run(run_dir)` to read one. The run API is imported
on first use, so a problem file (and every sandbox worker) imports only what it needs.
"""

from __future__ import annotations

from typing import Any

from .problem import EvalResult, Feature, Problem

__version__ = "0.1.0"
__all__ = ["EvalResult", "Feature", "Problem", "Run", "open_run", "run", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("run", "open_run", "Run"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'evoengine' has no attribute {name!r}")
