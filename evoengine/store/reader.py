"""The read API of a run's store: everything `status`, `lineage`, `best`, the report and the
live viewer read, as plain records and dicts. It opens the file read-only, so it can read
while a run writes (WAL mode); `snapshot()` makes several reads see one moment of the run.

What became of a proposal is decided here once, by `outcome`: valid or invalid (admitted
and evaluated), screened (admitted, but stopped by the minibatch gate before the full
evaluation), rejected (a near-duplicate or exact copy, never evaluated) or failed (no child:
the model call or its patch failed), with the kind of failure.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from typing_extensions import Self

from ..errors import StoreError
from ..records import Candidate
from .db import StoreFile

STATUSES = ("valid", "invalid", "screened", "rejected", "failed")
EXACT_COPY = "novelty: the same program"  # the reason's start for an exact copy (vs a near-duplicate)


def _kind(row: Mapping[str, Any]) -> str | None:
    """Why a closed proposal did not become a valid candidate (None: it did): the store's `kind`
    (patch, model, syntax, novelty, gate, evaluation; `copy`, a valid child that behaved as a kept
    candidate and was pooled into it), or for a store written before kinds were
    kept (opened read-only, so not upgraded), what its reason or feedback says."""
    if "kind" in row.keys() and row["kind"]:
        return row["kind"]
    reason = row["reason"] or ""
    if row["status"] == "failed":
        if reason.startswith("novelty:"):
            return "novelty"
        return "model" if reason.startswith("model ") and " reply unusable " not in reason else "patch"
    if row["status"] != "evaluated" or row["valid"]:
        return None
    return "gate" if (row["feedback"] or "").startswith("gate:") else "evaluation"


def outcome(row: Mapping[str, Any]) -> tuple[str, str | None]:
    """(status, kind) of a proposal's row (columns status, valid, reason, feedback): status is
    one of STATUSES, or `pending`/`abandoned` for proposals that never closed."""
    kind = _kind(row)
    if row["status"] == "failed":
        return ("rejected" if kind == "novelty" else "failed"), kind
    if row["status"] != "evaluated":
        return row["status"], None
    if kind == "gate":
        return "screened", kind
    return ("valid" if row["valid"] else "invalid"), kind


def _loads(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


class RunReader(StoreFile):
    """One run's store, opened read-only: `RunReader.open(run_dir)`."""

    @classmethod
    def open(cls, run_dir: Path, readonly: bool = True) -> Self:
        reader = super().open(run_dir, readonly=True)
        columns = {r[1] for r in reader.conn.execute("PRAGMA table_info(candidates)")}
        reader.kind = "kind" if "kind" in columns else "NULL AS kind"  # a store from before schema 3
        return reader

    @contextmanager
    def snapshot(self) -> Iterator[Self]:
        """One short read transaction: every query inside sees the same moment of the run."""
        if self.conn.in_transaction:
            yield self
            return
        self.conn.execute("BEGIN")
        try:
            yield self
        finally:
            self.conn.execute("COMMIT")

    def version(self) -> str:
        """Changes whenever anything a report shows changes; cheap enough to poll."""
        q = self.conn.execute
        seq, rows, closed = q(
            "SELECT COALESCE(MAX(seq), 0), COUNT(*), SUM(status != 'pending') FROM candidates"
        ).fetchone()
        calls = q("SELECT COALESCE(MAX(id), 0) FROM model_calls").fetchone()[0]
        events = q("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
        # The engine rewrites state (elapsed time, bandit, elites) with admissions and at the end.
        n, size = q("SELECT COUNT(*), COALESCE(SUM(LENGTH(value)), 0) FROM state").fetchone()
        return f"{seq}.{rows}.{closed or 0}.{calls}.{events}.{n}.{size}.{self.get_state('elapsed_s', '')}"

    # ------------------------------------------------------------ candidates

    def get(self, candidate_id: int) -> Candidate:
        """An admitted candidate; a proposal that was not admitted is named for what it was."""
        found = next(self._admitted("AND id=?", (candidate_id,)), None)
        if found is not None:
            return found
        other = self.proposal(candidate_id)
        if other is None:
            raise StoreError(f"no candidate or proposal with id {candidate_id} in {self.path}")
        why = f": {other['reason']}" if other["reason"] else ""
        raise StoreError(f"#{candidate_id} is a {other['outcome']} proposal, not an admitted candidate{why}")

    def seed(self) -> Candidate | None:
        """The first admitted candidate (the seed, or the first import of `--from`)."""
        return next(self._admitted("ORDER BY seq LIMIT 1"), None)

    def proposal(self, proposal_id: int) -> dict[str, Any] | None:
        """Any proposal's row (admitted or not) as a dict with its `outcome` and `kind`."""
        row = self.conn.execute("SELECT * FROM candidates WHERE id=?", (proposal_id,)).fetchone()
        if row is None:
            return None
        status, kind = outcome(row)
        return {**dict(row), "parents": _loads(row["parents"], []), "outcome": status, "kind": kind}

    def proposals(self) -> list[dict[str, Any]]:
        """Every closed proposal (admitted or not) without its text, by id, with its outcome,
        kind, model tokens and calls, and a one-line note (the reason, or the feedback's first line)."""
        rows = self.conn.execute(
            "SELECT c.id, c.seq, c.status, c.parents, c.island, c.generation, c.operator, c.model, c.score, c.valid,"
            f" c.cost, c.reward, c.created, c.finished, c.origin, c.reason, {self.kind}, substr(c.feedback, 1, 200)"
            " AS feedback, c.features, COALESCE(m.tokens, 0) AS tokens, COALESCE(m.calls, 0) AS calls FROM candidates c"
            " LEFT JOIN (SELECT proposal_id, SUM(tokens_in + tokens_out) AS tokens, COUNT(*) AS calls"
            " FROM model_calls WHERE purpose != 'evaluate' GROUP BY proposal_id) m ON m.proposal_id = c.id"
            " WHERE c.status IN ('evaluated', 'failed') ORDER BY c.id"
        )
        out = []
        for r in rows:
            status, kind = outcome(r)
            note = r["reason"] if r["status"] == "failed" else (r["feedback"] or "").split("\n", 1)[0]
            parsed = {"parents": _loads(r["parents"], []), "features": _loads(r["features"], {})}
            out.append({**dict(r), **parsed, "outcome": status, "kind": kind, "note": note})
        return out

    def details(self, finished_after: float | None = None) -> list[dict[str, Any]]:
        """Closed proposals in full (text, feedback, reason, metrics, ...) with every model call
        that made them; only those finished after `finished_after` if given."""
        where = "status IN ('evaluated', 'failed')" + (" AND finished > ?" if finished_after is not None else "")
        params = () if finished_after is None else (finished_after,)
        rows = self.conn.execute(
            "SELECT id, text, feedback, reason, change, metrics, features, artifacts, instances, timings,"
            f" created, finished FROM candidates WHERE {where}",
            params,
        ).fetchall()
        calls = self._calls(f"SELECT id FROM candidates WHERE {where}", params)
        parsed = ("metrics", "features", "artifacts", "instances", "timings")
        return [{**dict(r), **{k: _loads(r[k], {}) for k in parsed}, "calls": calls.get(r["id"], [])} for r in rows]

    def calls(self, proposal_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        """The model calls that made these proposals, in call order, by proposal id (not their
        evaluators' calls, purpose "evaluate": those are counted in `model_usage`)."""
        return self._calls(",".join("?" * len(proposal_ids)), tuple(proposal_ids))

    def _calls(self, ids_sql: str, params: tuple[Any, ...]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        rows = self.conn.execute(
            "SELECT proposal_id, model, purpose, messages, reply, error, tokens_in, tokens_out, cost, latency_s"
            f" FROM model_calls WHERE proposal_id IN ({ids_sql}) AND purpose != 'evaluate' ORDER BY id",
            params,
        )
        for r in rows:
            out.setdefault(r["proposal_id"], []).append({**dict(r), "messages": _loads(r["messages"], [])})
        return out

    def best_curve(self) -> list[tuple[int, int | None]]:
        """(seq, id of the run's best after it) for every admission in order: the run's answer as
        it changed. The engine's own, from its `best` events (with rechecks, a noisy run's best
        is the best of those scored more than once, not the highest single score, and it can
        give way when scored again); for a store written before those events, the highest score
        of a valid candidate that is not a copy."""
        admissions = self.conn.execute(
            f"SELECT seq, id, valid, score, {self.kind} FROM candidates WHERE seq IS NOT NULL ORDER BY seq"
        ).fetchall()
        told = [(e["seq"], e["data"]["id"]) for e in self.events("best")]
        curve: list[tuple[int, int | None]] = []
        best, high, k = None, None, 0
        for seq, candidate_id, valid, score, kind in admissions:
            while k < len(told) and told[k][0] <= seq:
                best, k = told[k][1], k + 1
            if not told and valid and score is not None and kind != "copy" and (high is None or score > high):
                best, high = candidate_id, score
            curve.append((seq, best))
        return curve

    # ------------------------------------------------------------ counts

    def outcome_counts(self) -> dict[str, Any]:
        """How many proposals ended each way: admitted, the STATUSES, pending, abandoned, the
        failure kinds (`kinds`) and, of the rejected, how many were exact copies."""
        counts: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        exact = 0
        rows = self.conn.execute(
            "SELECT status, valid, substr(reason, 1, 80) AS reason, substr(feedback, 1, 5) AS feedback,"
            f" {self.kind}, COUNT(*) AS n FROM candidates GROUP BY 1, 2, 3, 4, 5"
        )
        for r in rows:
            status, kind = outcome(r)
            counts[status] += r["n"]
            if kind:
                kinds[kind] += r["n"]
            if (r["reason"] or "").startswith(EXACT_COPY):
                exact += r["n"]
        out: dict[str, Any] = {s: counts[s] for s in (*STATUSES, "pending", "abandoned")}
        out["admitted"] = counts["valid"] + counts["invalid"] + counts["screened"]
        out["kinds"] = dict(kinds)
        out["exact_copies"] = exact
        out["near_duplicates"] = counts["rejected"] - exact
        return out

    # ------------------------------------------------------------ models

    def model_usage(self) -> list[dict[str, Any]]:
        """Model calls by (model, purpose): calls, errors, tokens, cost and mean latency."""
        rows = self.conn.execute(
            "SELECT model, purpose, COUNT(*) AS calls, SUM(error IS NOT NULL) AS errors, SUM(tokens_in) AS tokens_in,"
            " SUM(tokens_out) AS tokens_out, SUM(cost) AS cost, AVG(latency_s) AS latency_s FROM model_calls"
            " GROUP BY model, purpose ORDER BY model, purpose"
        )
        return [dict(r) for r in rows]

    def arm_picks(self) -> list[str]:
        """The arm (model, or "offline") that made each closed proposal, in id order."""
        rows = self.conn.execute(
            "SELECT model FROM candidates WHERE status != 'pending' AND model IS NOT NULL ORDER BY id"
        )
        return [r[0] for r in rows]

    # ------------------------------------------------------------ events

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT seq, kind, data FROM events" + (" WHERE kind=?" if kind else "") + " ORDER BY id"
        rows = self.conn.execute(sql, (kind,) if kind else ())
        return [{"seq": s, "kind": k, "data": _loads(d, None)} for s, k, d in rows]

    def event_counts(self) -> dict[str, int]:
        return {kind: n for kind, n in self.conn.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind")}
