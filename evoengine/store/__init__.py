"""The run store: one SQLite file per run (`archive.sqlite`), the truth of a run.

`db` owns the file (schema, upgrades, connections, errors); `RunStore` in `writer` is the
engine's one writer; `RunReader` in `reader` is the read API that status, lineage, reports
and the viewer go through. No SQL lives outside this package.
"""

from __future__ import annotations

from .db import FILENAME, SCHEMA_VERSION, StoreFile
from .lock import LOCK, lock_holder
from .reader import STATUSES, RunReader, outcome
from .writer import RunStore

__all__ = [
    "FILENAME",
    "LOCK",
    "SCHEMA_VERSION",
    "STATUSES",
    "RunReader",
    "RunStore",
    "StoreFile",
    "lock_holder",
    "outcome",
]
