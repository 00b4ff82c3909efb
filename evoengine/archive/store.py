"""The run store: one SQLite file per run (`archive.sqlite`), the truth of a run.

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..records import Candidate, ModelCall

SCHEMA_VERSION = 2  # 2: basis, attempt, closed (a version-1 store is upgraded on opening)
FILENAME = "archive.sqlite"

SCHEMA = """
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
    closed INTEGER
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

_CLOSING_ORDER = "closed IS NOT NULL, closed, id"  # rows from before schema 2 first, by id
_CANDIDATE_COLUMNS = (
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
    raise StoreError(f"cannot read or write {path}: {text}") from exc


class _Cursor(sqlite3.Cursor):
    """A cursor whose SQLite errors about the file are `StoreError`s (`_raise_store_error`)."""

    def execute(self, sql: str, parameters: Any = ()) -> _Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as exc:
            _raise_store_error(exc, self.connection.store_path)

    def executemany(self, sql: str, seq: Any) -> _Cursor:
        try:
            return super().executemany(sql, seq)
        except sqlite3.DatabaseError as exc:
            _raise_store_error(exc, self.connection.store_path)

    def executescript(self, script: str) -> _Cursor:
        try:
            return super().executescript(script)
        except sqlite3.DatabaseError as exc:
            _raise_store_error(exc, self.connection.store_path)

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as exc:
            _raise_store_error(exc, self.connection.store_path)

    def fetchmany(self, size: int | None = None) -> list[Any]:
        try:
            return super().fetchmany(self.arraysize if size is None else size)
        except sqlite3.DatabaseError as exc:
            _raise_store_error(exc, self.connection.store_path)

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as exc:
            _raise_store_error(exc, self.connection.store_path)

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.DatabaseError as exc:
            _raise_store_error(exc, self.connection.store_path)


class _Connection(sqlite3.Connection):
    """A connection whose statements run on `_Cursor`s; `store_path` names the file in errors."""

    store_path = ""

    def cursor(self, factory: Any = None) -> _Cursor:
        return super().cursor(factory or _Cursor)

    def execute(self, sql: str, parameters: Any = ()) -> _Cursor:
        return super().cursor(_Cursor).execute(sql, parameters)

    def executemany(self, sql: str, seq: Any) -> _Cursor:
        return super().cursor(_Cursor).executemany(sql, seq)

    def executescript(self, script: str) -> _Cursor:
        return super().cursor(_Cursor).executescript(script)


def _row_to_candidate(row: sqlite3.Row) -> Candidate:
    metrics = json.loads(row["metrics"])
    return Candidate(
        id=row["id"],
        text=row["text"] or "",
        parents=tuple(json.loads(row["parents"])),
        island=row["island"],
        generation=row["generation"],
        operator=row["operator"] or "",
        model=row["model"],
        score=row["score"],
        valid=bool(row["valid"]),
        metrics=metrics,
        features=json.loads(row["features"]),
        feedback=row["feedback"],
        artifacts=json.loads(row["artifacts"]),
        instances=json.loads(row["instances"]),
        timings=json.loads(row["timings"]),
        cost=row["cost"],
        change=row["change"],
        origin=row["origin"],
        created=row["created"],
    )


class RunStore:
    """Read and write one run's `archive.sqlite`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool):
        self.path = path
        self.conn = conn
        self.readonly = readonly

    # ------------------------------------------------------------ opening

    @classmethod
    def create(cls, run_dir: Path, meta: dict[str, Any]) -> RunStore:
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
                conn.executescript(SCHEMA)
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        (k, json.dumps(v))
                        for k, v in {**meta, "schema_version": SCHEMA_VERSION, "created": time.time()}.items()
                    ],
                )
                conn.execute("COMMIT")
            finally:
                conn.close()
            os.replace(tmp, path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot write a run store in {run_dir}: {exc}; choose another with --run-dir") from exc
        return cls._connect(path, readonly=False)

    @classmethod
    def open(cls, run_dir: Path, readonly: bool = False) -> RunStore:
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
            if version == 1 and not readonly:
                store._upgrade_from_1()
            elif version not in (1, SCHEMA_VERSION):
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
    def _connect(cls, path: Path, readonly: bool) -> RunStore:
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
        return cls(path, conn, readonly)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

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

    # ------------------------------------------------------------ writing

    def _upgrade_from_1(self) -> None:
        with self.transaction() as conn:
            for column in ("basis INTEGER", "attempt INTEGER NOT NULL DEFAULT 0", "closed INTEGER"):
                conn.execute(f"ALTER TABLE candidates ADD COLUMN {column}")
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (json.dumps(SCHEMA_VERSION),))

    def start_proposal(self, island: int, *, basis: int | None = None, attempt: int = 0) -> int:
        cur = self.conn.execute(
            "INSERT INTO candidates (status, island, created, basis, attempt) VALUES ('pending', ?, ?, ?, ?)",
            (island, time.time(), basis, attempt),
        )
        return int(cur.lastrowid)

    def record_call(self, proposal_id: int | None, call: ModelCall) -> None:
        self.conn.execute(
            "INSERT INTO model_calls (proposal_id, model, request_hash, messages, reply, tokens_in,"
            " tokens_out, cost, latency_s, error, purpose, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                proposal_id,
                call.model,
                call.request_hash,
                json.dumps(call.messages),
                call.reply,
                call.tokens_in,
                call.tokens_out,
                call.cost,
                call.latency_s,
                call.error,
                call.purpose,
                time.time(),
            ),
        )

    def fail(
        self,
        proposal_id: int,
        *,
        reason: str,
        operator: str,
        model: str | None,
        parents: tuple[int, ...],
        cost: float = 0.0,
        reward: float | None = None,
        text: str | None = None,
        island: int = 0,
        closed: int | None = None,
    ) -> None:
        """Close a proposal that produced no evaluated child; `reward` is what its arm earned."""
        self.conn.execute(
            "UPDATE candidates SET status='failed', reason=?, operator=?, model=?, parents=?, cost=?,"
            " reward=?, text=?, finished=?, island=?, closed=? WHERE id=?",
            (
                reason,
                operator,
                model,
                json.dumps(list(parents)),
                cost,
                reward,
                text,
                time.time(),
                island,
                closed,
                proposal_id,
            ),
        )

    def admit(
        self,
        c: Candidate,
        *,
        reward: float | None,
        events: list[tuple[str, dict[str, Any]]] = (),
        state: dict[str, Any] | None = None,
        closed: int | None = None,
    ) -> int:
        """Close proposal `c.id` as evaluated, in one transaction with its events and state."""
        with self.transaction() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM candidates").fetchone()[0]
            updated = conn.execute(
                "UPDATE candidates SET status='evaluated', seq=?, text=?, parents=?, island=?, generation=?,"
                " operator=?, model=?, score=?, valid=?, metrics=?, features=?, feedback=?, artifacts=?,"
                " instances=?, timings=?, cost=?, reward=?, change=?, origin=?, finished=?, closed=?"
                " WHERE id=? AND status='pending'",
                (
                    seq,
                    c.text,
                    json.dumps(list(c.parents)),
                    c.island,
                    c.generation,
                    c.operator,
                    c.model,
                    c.score,
                    int(c.valid),
                    json.dumps(c.metrics),
                    json.dumps(c.features),
                    c.feedback,
                    json.dumps(c.artifacts),
                    json.dumps(c.instances),
                    json.dumps(c.timings),
                    c.cost,
                    reward,
                    c.change,
                    c.origin,
                    time.time(),
                    closed,
                    c.id,
                ),
            ).rowcount
            if updated != 1:
                raise StoreError(f"candidate {c.id} is not a pending proposal in {self.path}")
            now = time.time()
            conn.executemany(
                "INSERT INTO events (seq, kind, data, created) VALUES (?, ?, ?, ?)",
                [(seq, kind, json.dumps(data), now) for kind, data in events],
            )
            if state:
                self._put_state(state)
        return int(seq)

    def abandon_pending(self) -> int:
        """Proposals that were in flight when a run died are closed as `abandoned`."""
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE candidates SET status='abandoned', finished=? WHERE status='pending'", (time.time(),)
            ).rowcount

    # ------------------------------------------------------------ reading

    def candidates(self, after_seq: int = 0) -> Iterator[Candidate]:
        """Admitted candidates in admission order."""
        rows = self.conn.execute(
            f"SELECT {_CANDIDATE_COLUMNS} FROM candidates WHERE status='evaluated' AND seq > ? ORDER BY seq",
            (after_seq,),
        )
        for row in rows:
            yield _row_to_candidate(row)

    def rewards(self) -> Iterator[tuple[str | None, float | None, float]]:
        """(model arm, reward, cost) of every closed proposal that earned one, for bandit replay."""
        yield from self.conn.execute(
            "SELECT model, reward, cost FROM candidates WHERE status IN ('evaluated', 'failed')"
            f" AND reward IS NOT NULL ORDER BY {_CLOSING_ORDER}"
        )

    def next_id(self) -> int:
        """The id the next proposal will get."""
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='candidates'").fetchone()
        return (int(row[0]) if row else 0) + 1

    def closed_count(self) -> int:
        return int(
            self.conn.execute("SELECT COUNT(*) FROM candidates WHERE status IN ('evaluated', 'failed')").fetchone()[0]
        )

    def setbacks(self) -> Iterator[sqlite3.Row]:
        """Failed proposals (novelty rejections aside) and invalid candidates, in closing order:
        what the prompts' "recent failures" are made of."""
        yield from self.conn.execute(
            "SELECT id, status, island, operator, reason, feedback FROM candidates"
            " WHERE (status='failed' AND reason NOT LIKE 'novelty:%') OR (status='evaluated' AND valid=0)"
            f" ORDER BY {_CLOSING_ORDER}"
        )

    def schedule(self) -> dict[int, sqlite3.Row] | None:
        """Every proposal's (id, status, basis, attempt, closed, reason), by id; None for a store that
        did not record its schedule (written before schema 2)."""
        try:
            rows = self.conn.execute("SELECT id, status, basis, attempt, closed, reason FROM candidates").fetchall()
        except StoreError:
            return None
        if any(r["basis"] is None and r["closed"] is None for r in rows):
            return None
        return {r["id"]: r for r in rows}

    def get(self, candidate_id: int) -> Candidate:
        row = self.conn.execute(
            f"SELECT {_CANDIDATE_COLUMNS} FROM candidates WHERE id=? AND status='evaluated'", (candidate_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"no admitted candidate with id {candidate_id} in {self.path}")
        return _row_to_candidate(row)

    def best(self, n: int = 1) -> list[Candidate]:
        rows = self.conn.execute(
            f"SELECT {_CANDIDATE_COLUMNS} FROM candidates WHERE status='evaluated' AND valid=1"
            " ORDER BY score DESC, seq ASC LIMIT ?",
            (n,),
        )
        return [_row_to_candidate(r) for r in rows]

    def seed(self) -> Candidate | None:
        row = self.conn.execute(
            f"SELECT {_CANDIDATE_COLUMNS} FROM candidates WHERE status='evaluated' ORDER BY seq LIMIT 1"
        ).fetchone()
        return _row_to_candidate(row) if row else None

    def counts(self) -> dict[str, int]:
        out = {"evaluated": 0, "valid": 0, "failed": 0, "pending": 0, "abandoned": 0}
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status"):
            out[status] = n
        out["valid"] = self.conn.execute(
            "SELECT COUNT(*) FROM candidates WHERE status='evaluated' AND valid=1"
        ).fetchone()[0]
        return out

    def spend(self) -> float:
        return float(self.conn.execute("SELECT COALESCE(SUM(cost), 0) FROM model_calls").fetchone()[0])

    def failures(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT id, operator, model, reason FROM candidates WHERE status='failed' ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [dict(r) for r in rows]

    def count_failed(self, reason_prefix: str) -> int:
        """Failed proposals whose reason starts with `reason_prefix`."""
        return self.conn.execute(
            "SELECT COUNT(*) FROM candidates WHERE status='failed' AND substr(reason, 1, ?) = ?",
            (len(reason_prefix), reason_prefix),
        ).fetchone()[0]

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT seq, kind, data FROM events" + (" WHERE kind=?" if kind else "") + " ORDER BY id"
        return [
            {"seq": s, "kind": k, "data": json.loads(d)} for s, k, d in self.conn.execute(sql, (kind,) if kind else ())
        ]

    def model_usage(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT model, purpose, COUNT(*) AS calls, SUM(error IS NOT NULL) AS errors, SUM(tokens_in) AS tokens_in,"
            " SUM(tokens_out) AS tokens_out, SUM(cost) AS cost FROM model_calls GROUP BY model, purpose"
        )
        return [dict(r) for r in rows]

    def recorded_replies(self) -> Iterator[tuple[str, str]]:
        """(request hash, reply) of successful model calls in call order, for replay."""
        yield from self.conn.execute("SELECT request_hash, reply FROM model_calls WHERE reply IS NOT NULL ORDER BY id")
