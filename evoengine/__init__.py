"""evoengine: evolutionary program search with language models as operators.

The public API: `Problem`, `Feature` and `EvalResult` for problem files; `run(...)` to run a
search from a script or notebook; `open_run(run_dir)` to read one.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import Run, open_run, run  # noqa: E402
from .problem import EvalResult, Feature, Problem  # noqa: E402

__all__ = ["EvalResult", "Feature", "Problem", "Run", "open_run", "run", "__version__"]
