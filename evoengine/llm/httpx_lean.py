"""`httpx`, imported without the packages it loads for what evoengine does not use.

`httpx` imports `rich` and `click` for its command line, and `httpcore` imports `trio` when
it is installed; where those are (Ray, MLflow and wandb bring them) that is ~0.1 s of CPU on
the way to a run's first model request (benchmarks/README.md, start-up). Both imports are
optional and guarded, so hiding the packages while `httpx` loads makes them fail as if they
were absent. evoengine speaks asyncio only; a package already loaded is left alone, and a
hidden one can be imported normally afterwards."""

from __future__ import annotations

import sys

_NOT_NEEDED = ("rich", "click", "trio")


def _load():
    hidden = [name for name in _NOT_NEEDED if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))  # a None entry makes `import name` fail
    try:
        import httpcore  # noqa: F401  (loaded by the first client otherwise, with `trio`)
        import httpx
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return httpx


httpx = _load()
