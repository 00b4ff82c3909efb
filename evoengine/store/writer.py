"""The writer of a run's store: the engine's loop is its one user (one writer). It opens
proposals, records model calls, closes proposals as admitted or failed (one transaction
each) and reads back what a resumed run rebuilds its state from."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import StoreError
from ..records import Candidate, ModelCall
from .db import CANDIDATE_COLUMNS, StoreFile, row_to_candidate


class RunStore(StoreFile):
    """Write one run's `archive.sqlite` (and read what the engine needs back)."""

    # ------------------------------------------------------------ writing

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
                proposal_id, call.model, call.request_hash, json.dumps(call.messages), call.reply, call.tokens_in,
                call.tokens_out, call.cost, call.latency_s, call.error, call.purpose, time.time(),
            ),
        )  # fmt: skip

    def fail(
        self,
        proposal_id: int,
        *,
        reason: str,
        kind: str = "patch",
        operator: str,
        model: str | None,
        parents: tuple[int, ...],
        cost: float = 0.0,
        reward: float | None = None,
        text: str | None = None,
        island: int = 0,
        closed: int | None = None,
    ) -> None:
        """Close a proposal that produced no evaluated child: why (`kind`: patch, model, syntax,
        novelty; `reason`), and `reward`, what its arm earned."""
        self.conn.execute(
            "UPDATE candidates SET status='failed', reason=?, kind=?, operator=?, model=?, parents=?, cost=?,"
            " reward=?, text=?, finished=?, island=?, closed=? WHERE id=?",
            (
                reason, kind, operator, model, json.dumps(list(parents)), cost, reward, text, time.time(), island,
                closed, proposal_id,
            ),
        )  # fmt: skip

    def admit(
        self,
        c: Candidate,
        *,
        reward: float | None,
        kind: str | None = None,
        events: list[tuple[str, dict[str, Any]]] = (),
        state: dict[str, Any] | None = None,
        closed: int | None = None,
        digest: bytes | None = None,
        resume: tuple[str, str] | None = None,
        reason: str | None = None,
        rescored: Candidate | None = None,
    ) -> int:
        """Close proposal `c.id` as evaluated, in one transaction with its events and state;
        `kind` says why an invalid one is ("evaluation", or "gate": screened by the minibatch)
        or that it was not new ("copy": it behaves as `rescored`, whose new score and metrics
        are kept in the same transaction; `reason` says so), `digest` is its text's normal-form
        digest, and `resume` (fingerprint, data) the derived state after this admission, kept as
        the resume snapshot (`put_resume`)."""
        with self.transaction() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM candidates").fetchone()[0]
            updated = conn.execute(
                "UPDATE candidates SET status='evaluated', seq=?, text=?, parents=?, island=?, generation=?,"
                " operator=?, model=?, score=?, valid=?, metrics=?, features=?, feedback=?, artifacts=?,"
                " instances=?, timings=?, cost=?, reward=?, change=?, origin=?, finished=?, closed=?, kind=?,"
                " digest=?, reason=? WHERE id=? AND status='pending'",
                (
                    seq, c.text, json.dumps(list(c.parents)), c.island, c.generation, c.operator, c.model, c.score,
                    int(c.valid), json.dumps(c.metrics), json.dumps(c.features), c.feedback, json.dumps(c.artifacts),
                    json.dumps(c.instances), json.dumps(c.timings), c.cost, reward, c.change, c.origin, time.time(),
                    closed, kind, digest, reason, c.id,
                ),
            ).rowcount  # fmt: skip
            if updated != 1:
                raise StoreError(f"candidate {c.id} is not a pending proposal in {self.path}")
            if rescored is not None:
                self._rescore(rescored)
            self._events(seq, events)
            if state:
                self._put_state(state)
            if resume is not None:
                self._put_resume(closed or 0, seq, *resume)
        return int(seq)

    def rescore(self, c: Candidate, events: list[tuple[str, dict[str, Any]]] = ()) -> None:
        """Keep the new score and metrics of an evaluated candidate scored again (`rechecks`),
        with `events` after the last admission."""
        with self.transaction() as conn:
            self._rescore(c)
            if events:  # (most rescores move nothing)
                self._events(conn.execute("SELECT MAX(seq) FROM candidates").fetchone()[0], events)

    def _events(self, seq: int | None, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        now = time.time()
        self.conn.executemany(
            "INSERT INTO events (seq, kind, data, created) VALUES (?, ?, ?, ?)",
            [(seq, kind, json.dumps(data), now) for kind, data in events],
        )

    def _rescore(self, c: Candidate) -> None:
        self.conn.execute(
            "UPDATE candidates SET score=?, metrics=? WHERE id=? AND status='evaluated'",
            (c.score, json.dumps(c.metrics), c.id),
        )

    def put_resume(self, closed: int, fingerprint: str, data: str) -> None:
        """Keep `data`, the derived state after the first `closed` closings, as the resume
        snapshot (replacing the one before), with the admission number it follows: the last
        one (the one writer takes it after every closing it has written is in its state)."""
        with self.transaction() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM candidates").fetchone()
            self._put_resume(closed, seq[0], fingerprint, data)

    def _put_resume(self, closed: int, seq: int, fingerprint: str, data: str) -> None:
        self.conn.execute(
            "INSERT INTO resume VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET closed=excluded.closed,"
            " seq=excluded.seq, fingerprint=excluded.fingerprint, data=excluded.data, created=excluded.created",
            (closed, seq, fingerprint, data, time.time()),
        )

    def backfill_digests(self, digest_of: Callable[[str], bytes]) -> int:
        """Fill in the digests of rows evaluated before schema 4 (once: the upgrade marks the
        store `undigested`); returns how many were filled."""
        if not self.meta().get("undigested"):
            return 0
        with self.transaction() as conn:
            rows = conn.execute(
                "SELECT id, text FROM candidates WHERE status='evaluated' AND digest IS NULL"
            ).fetchall()
            conn.executemany("UPDATE candidates SET digest=? WHERE id=?", [(digest_of(t or ""), i) for i, t in rows])
            conn.execute("DELETE FROM meta WHERE key='undigested'")
        return len(rows)

    def abandon_pending(self) -> int:
        """Proposals that were in flight when a run died are closed as `abandoned`."""
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE candidates SET status='abandoned', finished=? WHERE status='pending'", (time.time(),)
            ).rowcount

    # ------------------------------------------------------------ reading

    def closings(self, after: int | None = None) -> Iterator[tuple[sqlite3.Row, Candidate | None]]:
        """Every closed proposal in the order it was closed (or those closed after the first
        `after`), with its candidate when it was admitted: what a resumed run rebuilds its
        state from."""
        columns = f"SELECT {CANDIDATE_COLUMNS}, status, kind, reason, reward FROM candidates"
        if after is None:  # rows from before schema 2 (closed NULL) first
            rows = self.conn.execute(
                f"{columns} WHERE status IN ('evaluated', 'failed')"
                " ORDER BY closed IS NOT NULL, closed, seq IS NULL, seq, id"
            )
        else:  # through the index on `closed`: only closed proposals have one
            rows = self.conn.execute(f"{columns} WHERE closed > ? ORDER BY closed", (after,))
        for row in rows:
            yield row, row_to_candidate(row) if row["status"] == "evaluated" else None

    def resume_point(self) -> tuple[int, str, str] | None:
        """The resume snapshot as (closed, fingerprint, data), if there is one and it still
        matches the store: the admission it follows is the last one among the first `closed`
        closings. Otherwise None (then the state is rebuilt by replaying every closing)."""
        row = self.conn.execute("SELECT closed, seq, fingerprint, data FROM resume WHERE id = 1").fetchone()
        if row is None:
            return None
        closed, seq = row["closed"], row["seq"]
        at = self.conn.execute("SELECT closed FROM candidates WHERE seq = ?", (seq,)).fetchone()
        if seq and (at is None or (at[0] is not None and at[0] > closed)):
            return None  # the admission it follows is gone, or was closed after the snapshot's closings
        if self.conn.execute(
            "SELECT COUNT(*) FROM candidates WHERE seq > ? AND +closed <= ?", (seq, closed)
        ).fetchone()[0]:
            return None  # an admission among its closings came after the one it follows
        if not self.conn.execute("SELECT 1 FROM candidates WHERE closed = ?", (closed,)).fetchone():
            return None  # its last closing is not in the store
        return closed, row["fingerprint"], row["data"]

    def candidates_by_id(self, ids: set[int]) -> dict[int, Candidate]:
        """The admitted candidates among `ids`, by id."""
        out: dict[int, Candidate] = {}
        ordered = sorted(ids)
        for start in range(0, len(ordered), 500):
            chunk = ordered[start : start + 500]
            out.update((c.id, c) for c in self._admitted(f"AND id IN ({','.join('?' * len(chunk))})", chunk))
        return out

    def evaluated_digest(self, digest: bytes) -> bool:
        """Has a text of this normal-form digest been evaluated?"""
        return self.conn.execute("SELECT 1 FROM candidates WHERE digest = ? LIMIT 1", (digest,)).fetchone() is not None

    def next_id(self) -> int:
        """The id the next proposal will get."""
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='candidates'").fetchone()
        return (int(row[0]) if row else 0) + 1

    def schedule(self) -> dict[int, dict[str, Any]] | None:
        """Every proposal's id, status, basis, attempt, closed, reason and kind, by id; None for
        a store that did not record its schedule (written before schema 2)."""
        rows = [dict(r) for r in self.conn.execute("SELECT * FROM candidates")]
        if any(r.get("basis") is None and r.get("closed") is None for r in rows):
            return None
        for r in rows:  # a store written before kinds were kept (read-only: not upgraded)
            r.setdefault("kind", "novelty" if (r["reason"] or "").startswith("novelty:") else None)
        return {r["id"]: r for r in rows}

    def evaluated_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM candidates WHERE status='evaluated'").fetchone()[0])
