"""The run store's file: one SQLite file per run (`archive.sqlite`), the truth of a run.

Every proposal gets a row in `candidates` when it starts (status `pending`) and is closed
in one transaction: `evaluated` (admitted, with its result and admission number `seq`),
`failed` (no usable child: the reason is kept) or, after a kill, `abandoned`. Each row also
keeps the run's schedule: `basis`, how many proposals were closed when it was started (its
parent was selected from that state), `attempt` (0, or the retry after a novelty
rejection) and `closed`, its place in the order proposals were closed; a replay follows
that schedule to make the same candidates as a concurrent run did. Model calls,
archive events (migrations, resets) and engine state live beside them. Only the engine's
loop writes (one writer); readers (status, report, viewer) open the file read-only, which
WAL mode lets them do while a run is writing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from typing_extensions import Self

from ..errors import StoreError
from ..problem import safe_text
from ..records import Candidate

# 2: basis, attempt, closed; 3: kind; 4: digest, the resume snapshot (older stores are upgraded on opening for writing)
SCHEMA_VERSION = 4
FILENAME = "archive.sqlite"

# What schema 4 adds: the normal-form digest of each evaluated text (the copy check asks the
# store, not a set of every digest), indexes a resume reads through, and the resume snapshot.
SCHEMA_4 = """
CREATE INDEX IF NOT EXISTS candidates_closed ON candidates(closed);
CREATE INDEX IF NOT EXISTS candidates_digest ON candidates(digest) WHERE digest IS NOT NULL;
CREATE INDEX IF NOT EXISTS model_calls_cost ON model_calls(cost);
CREATE TABLE IF NOT EXISTS resume (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    closed INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    data TEXT NOT NULL,
    created REAL NOT NULL
);
"""

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    seq INTEGER UNIQUE,
    text TEXT,
    parents TEXT NOT NULL DEFAULT '[]',
    island INTEGER NOT NULL DEFAULT 0,
    generation INTEGER NOT NULL DEFAULT 0,
    operator TEXT,
    model TEXT,
    score REAL,
    valid INTEGER NOT NULL DEFAULT 0,
    metrics TEXT NOT NULL DEFAULT '{}',
    features TEXT NOT NULL DEFAULT '{}',
    feedback TEXT NOT NULL DEFAULT '',
    artifacts TEXT NOT NULL DEFAULT '{}',
    instances TEXT NOT NULL DEFAULT '{}',
    timings TEXT NOT NULL DEFAULT '{}',
    cost REAL NOT NULL DEFAULT 0,
    reward REAL,
    change TEXT NOT NULL DEFAULT '',
    origin TEXT,
    reason TEXT,
    created REAL NOT NULL,
    finished REAL,
    basis INTEGER,
    attempt INTEGER NOT NULL DEFAULT 0,
    closed INTEGER,
    kind TEXT,
    digest BLOB
);
CREATE INDEX IF NOT EXISTS candidates_status ON candidates(status);
CREATE TABLE IF NOT EXISTS model_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    proposal_id INTEGER,
    model TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    messages TEXT NOT NULL,
    reply TEXT,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    latency_s REAL NOT NULL DEFAULT 0,
    error TEXT,
    purpose TEXT NOT NULL DEFAULT 'propose',
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS model_calls_hash ON model_calls(request_hash);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
    + SCHEMA_4
)


CANDIDATE_COLUMNS = (
    "id, text, parents, island, generation, operator, model, score, valid, metrics, features,"
    " feedback, artifacts, instances, timings, cost, change, origin, created"
)


def _raise_store_error(exc: sqlite3.DatabaseError, path: str) -> None:
    """Re-raise SQLite's complaints about the file (damaged, unreadable, locked, missing
    tables) as a `StoreError` that names it; constraint and API misuse errors stay bugs."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
        raise exc
    text = str(exc)
    if "malformed" in text or "not a database" in text:
        raise StoreError(
            f"{path} is damaged ({text}): it is not a readable evoengine store. Restore a copy, "
            f"or salvage what is left with `sqlite3 {path} .recover`"
        ) from exc
    if "disk is full" in text:  # what was admitted before is kept whole (one transaction each)
        run = Path(path).parent
        raise StoreError(
            f"cannot write {path}: {text}. Nothing admitted is lost: free space on the disk that holds "
            f"{run}, then `evoengine resume {run}` goes on"
        ) from exc
    raise StoreError(f"cannot read or write {path}: {text}") from exc


def _guarded(method: Any) -> Any:
    """`method` with SQLite's errors about the file raised as `StoreError`s and, for writes,
    text that UTF-8 cannot carry (lone surrogates) escaped instead of crashing the run."""

    def call(self: sqlite3.Cursor, *args: Any) -> Any:
        try:
            return method(self, *map(_safe_params, args))
        except sqlite3.DatabaseError as exc:
            _raise_store_error(exc, self.connection.store_path)

    return call


def _safe_params(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return [safe_text(v) if isinstance(v, str) else v for v in value]
    if isinstance(value, dict):
        return {k: safe_text(v) if isinstance(v, str) else v for k, v in value.items()}
    if isinstance(value, Iterable):  # executemany's rows
        return (_safe_params(row) for row in value)
    return value


class _Cursor(sqlite3.Cursor):
    """A cursor whose SQLite errors about the file are `StoreError`s (`_raise_store_error`)."""

    execute = _guarded(sqlite3.Cursor.execute)
    executemany = _guarded(sqlite3.Cursor.executemany)
    fetchone = _guarded(sqlite3.Cursor.fetchone)
    fetchall = _guarded(sqlite3.Cursor.fetchall)
    __next__ = _guarded(sqlite3.Cursor.__next__)


class _Connection(sqlite3.Connection):
    """A connection whose statements run on `_Cursor`s; `store_path` names the file in errors."""

    store_path = ""

    def execute(self, sql: str, parameters: Any = ()) -> _Cursor:
        return self.cursor(_Cursor).execute(sql, parameters)

    def executemany(self, sql: str, seq: Any) -> _Cursor:
        return self.cursor(_Cursor).executemany(sql, seq)


_FIELDS = tuple(column.strip() for column in CANDIDATE_COLUMNS.split(","))
_JSON_FIELDS = ("parents", "metrics", "features", "artifacts", "instances", "timings")


def row_to_candidate(row: sqlite3.Row) -> Candidate:
    c = {k: json.loads(row[k]) if k in _JSON_FIELDS else row[k] for k in _FIELDS}
    c.update(text=c["text"] or "", parents=tuple(c["parents"]), operator=c["operator"] or "", valid=bool(c["valid"]))
    return Candidate(**c)


class StoreFile:
    """One run's `archive.sqlite`, opened: the connection, its transactions, meta and state.
    `RunStore` (the writer) and `RunReader` (the read API for status, reports and the
    viewer) build on it."""

    kind = "kind"  # the `kind` column, or "NULL AS kind" in a store read from before schema 3

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn

    # ------------------------------------------------------------ opening

    @classmethod
    def create(cls, run_dir: Path, meta: dict[str, Any]) -> Self:
        """A new store, made whole in a temporary file and then renamed into place, so a kill
        at any moment leaves either no store or a complete empty one."""
        run_dir = Path(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create run directory {run_dir}: {exc}; choose another with --run-dir") from exc
        path = run_dir / FILENAME
        if path.exists():
            raise StoreError(
                f"{path} already exists: resume it with `evoengine resume {run_dir}` or pick a new --run-dir"
            )
        tmp = run_dir / f".{FILENAME}.new"
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                # One transaction, so one commit's syncs rather than one per statement (the
                # file is renamed into place only once whole anyway).
                conn.executescript(f"BEGIN;\n{SCHEMA}")
                meta = {**meta, "schema_version": SCHEMA_VERSION, "created": time.time()}
                conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
                conn.execute("COMMIT")
            finally:
                conn.close()
            os.replace(tmp, path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot write a run store in {run_dir}: {exc}; choose another with --run-dir") from exc
        return cls._connect(path, readonly=False)

    @classmethod
    def open(cls, run_dir: Path, readonly: bool = False) -> Self:
        run_dir = Path(run_dir)
        path = run_dir / FILENAME
        if not path.is_file():
            if not run_dir.exists():
                raise StoreError(f"{run_dir} does not exist; runs are under runs/ by default (`ls runs/`)")
            if not run_dir.is_dir():
                raise StoreError(f"{run_dir} is a file, not a run directory; runs are under runs/ by default")
            raise StoreError(
                f"{run_dir} is not a run directory (no {FILENAME}): no run was started there, or it was "
                f"stopped before its store was created. Start one with `evoengine run PROBLEM --run-dir {run_dir}`"
            )
        store = cls._connect(path, readonly=readonly)
        try:
            try:
                version = store.meta().get("schema_version")
            except StoreError as exc:
                if "no such table" not in str(exc):
                    raise
                raise StoreError(f"{path} is not an evoengine run store (it has no meta table)") from exc
            if version in (1, 2, 3) and not readonly:
                store._upgrade(version)
            elif version not in (1, 2, 3, SCHEMA_VERSION):
                raise StoreError(
                    f"{path} was written with store schema {version}; this evoengine reads schema "
                    f"{SCHEMA_VERSION}. Use the evoengine version that wrote it."
                    if version is not None
                    else f"{path} has no evoengine run metadata: it is not a run store"
                )
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def _connect(cls, path: Path, readonly: bool) -> Self:
        try:
            if readonly:
                conn = sqlite3.connect(
                    f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False, factory=_Connection
                )
            else:
                conn = sqlite3.connect(path, timeout=30, isolation_level=None, factory=_Connection)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        conn.store_path = str(path)
        conn.row_factory = sqlite3.Row
        if not readonly:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except StoreError:
                conn.close()
                raise
        return cls(path, conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ------------------------------------------------------------ what the writer and the reader both read

    def _admitted(self, where: str = "", params: Sequence[Any] = ()) -> Iterator[Candidate]:
        """Admitted candidates, with `where` adding conditions and an order (`AND valid=1 ORDER BY ...`)."""
        sql = f"SELECT {CANDIDATE_COLUMNS} FROM candidates WHERE status='evaluated' {where}"
        return map(row_to_candidate, self.conn.execute(sql, params))

    def candidates(self, after_seq: int = 0) -> Iterator[Candidate]:
        """Admitted candidates in admission order."""
        return self._admitted("AND seq > ? ORDER BY seq", (after_seq,))

    def best(self, n: int = 1) -> list[Candidate]:  # the engine's latest `best` event first, then by score
        event = self.conn.execute("SELECT data FROM events WHERE kind='best' ORDER BY id DESC LIMIT 1").fetchone()
        copies = "AND kind IS NOT 'copy'" if self.kind == "kind" else ""  # (a copy's score is another's sample)
        sql = f"AND valid=1 {copies} ORDER BY id = ? DESC, score DESC, seq ASC LIMIT ?"
        return list(self._admitted(sql, (json.loads(event[0])["id"] if event else -1, n)))

    def spend(self) -> float:
        return float(self.conn.execute("SELECT COALESCE(SUM(cost), 0) FROM model_calls").fetchone()[0])

    # ------------------------------------------------------------ meta and state

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def get_state(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def _put_state(self, state: dict[str, Any]) -> None:
        self.conn.executemany(
            "INSERT INTO state VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, json.dumps(v)) for k, v in state.items()],
        )

    def put_state(self, state: dict[str, Any]) -> None:
        with self.transaction():
            self._put_state(state)

    def _upgrade(self, version: int) -> None:
        """Bring a store written by an older evoengine up to `SCHEMA_VERSION`, in one transaction."""
        with self.transaction() as conn:
            if version < 2:
                for column in ("basis INTEGER", "attempt INTEGER NOT NULL DEFAULT 0", "closed INTEGER"):
                    conn.execute(f"ALTER TABLE candidates ADD COLUMN {column}")
            if version < 3:
                conn.execute("ALTER TABLE candidates ADD COLUMN kind TEXT")
                conn.execute(
                    "UPDATE candidates SET kind = CASE"
                    " WHEN status='failed' AND reason LIKE 'novelty:%' THEN 'novelty'"
                    " WHEN status='failed' AND model IS NOT NULL AND model != 'offline'"
                    "  AND reason NOT LIKE '%reply unusable%' THEN 'model'"
                    " WHEN status='failed' THEN 'patch'"
                    " WHEN status='evaluated' AND valid=0 AND feedback LIKE 'gate:%' THEN 'gate'"
                    " WHEN status='evaluated' AND valid=0 THEN 'evaluation' END"
                )
            if version < 4:  # digests are filled in by the engine, which knows the language
                conn.execute("ALTER TABLE candidates ADD COLUMN digest BLOB")
                for statement in SCHEMA_4.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('undigested', 'true')")
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (json.dumps(SCHEMA_VERSION),))
