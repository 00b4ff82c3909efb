"""What the report page shows, as plain JSON-ready data read from a run store.

`run_summary` is everything but the candidates' texts (the lineage in columns with a
layered layout, best-score curves, MAP-Elites maps, model usage and bandit state);
`candidate_detail` is one candidate's text, diffs against its parents, metrics and
feedback. The static report embeds both; the live viewer serves them as JSON.

Every query here only reads, inside one short read transaction (a consistent snapshot
that never blocks the run's writer in WAL mode).
"""

from __future__ import annotations

import difflib
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ..lineage import migrations
from ..store import RunStore

_SUMMARY_COLUMNS = (
    "id, seq, parents, island, generation, operator, model, score, valid, cost, reward, features, created, origin"
)


@contextmanager
def snapshot(store: RunStore) -> Iterator[RunStore]:
    """A short read transaction, so that every query sees the same moment of the run."""
    if store.conn.in_transaction:
        yield store
        return
    store.conn.execute("BEGIN")
    try:
        yield store
    finally:
        store.conn.execute("COMMIT")


def version(store: RunStore) -> str:
    """Changes whenever anything the page shows changes; cheap enough to poll."""
    conn = store.conn
    seq, rows, closed = conn.execute(
        "SELECT COALESCE(MAX(seq), 0), COUNT(*), SUM(status != 'pending') FROM candidates"
    ).fetchone()
    calls = conn.execute("SELECT COALESCE(MAX(id), 0) FROM model_calls").fetchone()[0]
    events = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
    # The engine rewrites state (elapsed time, bandit, elites) with admissions and at the end.
    state = conn.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(value)), 0) FROM state").fetchone()
    elapsed = conn.execute("SELECT value FROM state WHERE key='elapsed_s'").fetchone()
    return f"{seq}.{rows}.{closed or 0}.{calls}.{events}.{state[0]}.{state[1]}.{elapsed[0] if elapsed else ''}"


# ---------------------------------------------------------------- layout


def tree_layout(ids: Sequence[int], parents: Sequence[int | None]) -> list[float]:
    """Vertical positions of a tidy tree over main parents (ids in admission order).

    Leaves get successive slots in depth-first order (children by admission); a parent
    sits at the middle of its first and last child. Roots (the seed, imports) each start a
    new block. Iterative, so ten thousand generations deep is fine.
    """
    index = {cid: i for i, cid in enumerate(ids)}
    children: list[list[int]] = [[] for _ in ids]
    roots: list[int] = []
    for i, parent in enumerate(parents):
        if parent is None or parent not in index or index[parent] == i:
            roots.append(i)
        else:
            children[index[parent]].append(i)
    y = [0.0] * len(ids)
    done = [False] * len(ids)
    next_slot = 0.0
    for root in roots:
        stack: list[tuple[int, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                kids = children[node]
                y[node] = (y[kids[0]] + y[kids[-1]]) / 2
                done[node] = True
            elif done[node]:
                continue
            elif not children[node]:
                y[node] = next_slot
                next_slot += 1
                done[node] = True
            else:
                stack.append((node, True))
                stack.extend((k, False) for k in reversed(children[node]))
    return y


# ---------------------------------------------------------------- MAP-Elites


@dataclass(frozen=True)
class Axis:
    """One MAP-Elites descriptor: its range, bins and scale (as the engine declares it)."""

    name: str
    low: float
    high: float
    bins: int
    scale: str = "linear"  # or "log"

    def bin(self, value: float) -> int:
        if self.scale == "log":
            lo, hi, v = math.log2(self.low), math.log2(self.high), math.log2(max(value, 1e-300))
        else:
            lo, hi, v = self.low, self.high, value
        t = (v - lo) / (hi - lo)
        return min(max(int(math.floor(t * self.bins)), 0), self.bins - 1)

    def centres(self) -> list[float]:
        if self.scale == "log":
            lo, hi = math.log2(self.low), math.log2(self.high)
            return [2 ** (lo + (hi - lo) * (i + 0.5) / self.bins) for i in range(self.bins)]
        step = (self.high - self.low) / self.bins
        return [self.low + step * (i + 0.5) for i in range(self.bins)]


def _axes(raw: Any) -> list[Axis]:
    """Axes from a list of {name, low, high, bins, scale}; malformed entries are skipped."""
    axes = []
    for item in raw if isinstance(raw, list) else []:
        try:
            axis = Axis(
                str(item["name"]),
                float(item["low"]),
                float(item["high"]),
                int(item.get("bins", 10)),
                "log" if item.get("scale") == "log" else "linear",
            )
        except (KeyError, TypeError, ValueError):
            continue
        if axis.high > axis.low and axis.bins >= 1 and (axis.scale == "linear" or axis.low > 0):
            axes.append(axis)
    return axes


def _pairs(axes: list[Axis]) -> list[tuple[Axis, Axis | None]]:
    return ([(a, b) for i, a in enumerate(axes) for b in axes[i + 1 :]] or [(a, None) for a in axes])[:6]


def _grid(fx: Axis, fy: Axis | None, cells: Iterator[tuple[int, int, float, int]]) -> dict[str, Any]:
    """A heatmap of the best score per (i, j) cell; `cells` yields (i, j, score, id)."""
    ny = fy.bins if fy else 1
    best: list[list[float | None]] = [[None] * fx.bins for _ in range(ny)]
    best_id: list[list[int | None]] = [[None] * fx.bins for _ in range(ny)]
    count = [[0] * fx.bins for _ in range(ny)]
    for i, j, score, cid in cells:
        count[j][i] += 1
        if best[j][i] is None or score > best[j][i]:
            best[j][i], best_id[j][i] = score, cid
    return {
        "type": "heatmap",
        "x": asdict(fx),
        "y": asdict(fy) if fy else None,
        "x_centres": fx.centres(),
        "y_centres": fy.centres() if fy else [0.0],
        "best": best,
        "best_id": best_id,
        "count": count,
    }


def elites_from_engine(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Maps of the engine's own MAP-Elites archive (state key `elites`).

    A grid of at most two descriptors is drawn as a heatmap of its cells; a CVT archive
    (or more descriptors) as its elites placed by each pair of descriptors.
    """
    axes = _axes(state.get("dimensions"))
    filled = [e for e in state.get("filled") or [] if isinstance(e, dict) and e.get("score") is not None]
    if not axes:
        return []
    if state.get("kind") == "grid" and len(axes) <= 2 and all(len(e.get("grid") or []) == len(axes) for e in filled):
        fx, fy = axes[0], axes[1] if len(axes) > 1 else None
        return [_grid(fx, fy, ((e["grid"][0], e["grid"][1] if fy else 0, e["score"], e["id"]) for e in filled))]
    maps = []
    for fx, fy in _pairs(axes):
        shown = [e for e in filled if fx.name in e.get("features", {}) and (fy is None or fy.name in e["features"])]
        maps.append(
            {
                "type": "scatter",
                "x": asdict(fx),
                "y": asdict(fy) if fy else None,
                "px": [e["features"][fx.name] for e in shown],
                "py": [e["features"][fy.name] if fy else e["score"] for e in shown],
                "score": [e["score"] for e in shown],
                "id": [e["id"] for e in shown],
            }
        )
    return maps


def elites_from_candidates(
    ids: Sequence[int],
    scores: Sequence[float | None],
    valid: Sequence[bool],
    features: Sequence[dict[str, float]],
    declared: Any = None,
) -> list[dict[str, Any]]:
    """Without the engine's archive: bin the admitted candidates' features into grids.

    Axes are the declared ones if given, else each feature's observed range in 10 bins.
    """
    axes = _axes(declared)
    if not axes:
        seen: dict[str, list[float]] = defaultdict(list)
        for f in features:
            for name, value in f.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    seen[name].append(float(value))
        axes = [Axis(n, min(v), max(v) if max(v) > min(v) else min(v) + 1.0, 10) for n, v in sorted(seen.items())]
    maps = []
    for fx, fy in _pairs(axes):

        def cells(fx: Axis = fx, fy: Axis | None = fy) -> Iterator[tuple[int, int, float, int]]:
            for cid, score, ok, f in zip(ids, scores, valid, features, strict=True):
                if ok and score is not None and fx.name in f and (fy is None or fy.name in f):
                    yield fx.bin(f[fx.name]), fy.bin(f[fy.name]) if fy else 0, score, cid

        maps.append(_grid(fx, fy, cells()))
    return maps


# ---------------------------------------------------------------- the summary


def _loads(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def _best_so_far(scores: Sequence[float | None], valid: Sequence[bool]) -> list[float | None]:
    out: list[float | None] = []
    best: float | None = None
    for s, ok in zip(scores, valid, strict=True):
        if ok and s is not None and (best is None or s > best):
            best = s
        out.append(best)
    return out


def arm_shares(picks: Sequence[str], points: int = 300) -> dict[str, Any]:
    """Each arm's share of the last `window` proposals, at up to `points` proposal counts.

    Shows how the bandit shifted its choices over a run without sending every proposal.
    """
    n = len(picks)
    window = max(10, n // 30)
    arms = sorted(set(picks))
    step = max(1, n // points)
    xs = sorted({*range(step, n + 1, step), n}) if n else []
    running: dict[str, int] = dict.fromkeys(arms, 0)
    share: dict[str, list[float]] = {a: [] for a in arms}
    x_iter = iter(xs)
    target = next(x_iter, None)
    for i, arm in enumerate(picks, start=1):
        running[arm] += 1
        if i > window:
            running[picks[i - window - 1]] -= 1
        if i == target:
            seen = min(i, window)
            for a in arms:
                share[a].append(running[a] / seen)
            target = next(x_iter, None)
    return {"x": xs, "share": share, "window": window, "total": n}


def _model_usage(store: RunStore) -> dict[str, Any]:
    """Per bandit arm: proposals and their outcomes, reward and spend; raw call totals.

    Seeds and imports (no arm made them) are left out.
    """
    conn = store.conn
    arms: dict[str, dict[str, Any]] = {}
    rows = conn.execute(
        "SELECT COALESCE(model, '(none)') AS arm, status, valid, COALESCE(reason LIKE 'novelty:%', 0) AS dup,"
        " COUNT(*) AS n, SUM(cost) AS cost, AVG(reward) AS mean_reward, SUM(reward > 0) AS improved"
        " FROM candidates WHERE status != 'pending' AND model IS NOT NULL GROUP BY arm, status, valid, dup"
    )
    for r in rows:
        a = arms.setdefault(
            r["arm"],
            {
                "arm": r["arm"],
                "proposals": 0,
                "valid": 0,
                "invalid": 0,
                "failed": 0,
                "rejected": 0,
                "abandoned": 0,
                "cost": 0.0,
                "reward_sum": 0.0,
                "rewarded": 0,
                "improved": 0,
            },
        )
        a["proposals"] += r["n"]
        a["cost"] += r["cost"] or 0.0
        if r["status"] == "evaluated":
            a["valid" if r["valid"] else "invalid"] += r["n"]
            if r["mean_reward"] is not None:
                a["reward_sum"] += r["mean_reward"] * r["n"]
                a["rewarded"] += r["n"]
            a["improved"] += r["improved"] or 0
        elif r["status"] == "failed":
            a["rejected" if r["dup"] else "failed"] += r["n"]  # near-duplicates vs broken proposals
        elif r["status"] == "abandoned":
            a["abandoned"] += r["n"]
    for a in arms.values():
        a["mean_reward"] = a.pop("reward_sum") / a["rewarded"] if a["rewarded"] else None
    # Which arm was asked, proposal after proposal (for the bandit's choices over time).
    picks = [
        r[0]
        for r in conn.execute(
            "SELECT model FROM candidates WHERE status != 'pending' AND model IS NOT NULL ORDER BY id"
        )
    ]
    return {
        "arms": sorted(arms.values(), key=lambda a: -a["proposals"]),
        "picks": arm_shares(picks),
        "calls": store.model_usage(),
        "bandit": store.get_state("bandit"),
    }


def _elites(
    state: Any,
    archive_stats: Any,
    meta: dict[str, Any],
    ids: Sequence[int],
    scores: Sequence[float | None],
    valid: Sequence[bool],
    features: Sequence[dict[str, float]],
) -> dict[str, Any]:
    stats = archive_stats.get("elites") if isinstance(archive_stats, dict) else None
    if isinstance(state, dict) and state.get("dimensions"):
        maps = elites_from_engine(state)
        if maps:
            return {
                "source": "engine",
                "kind": state.get("kind"),
                "cells": state.get("cells"),
                "maps": maps,
                "stats": stats,
            }
    return {
        "source": "candidates",
        "kind": "grid",
        "cells": None,
        "stats": stats,
        "maps": elites_from_candidates(ids, scores, valid, features, meta.get("features")),
    }


def run_summary(store: RunStore, run_dir: Path, live: bool = False) -> dict[str, Any]:
    """Everything the page shows except candidates' texts, read in one snapshot."""
    run_dir = Path(run_dir)
    with snapshot(store):
        rows = store.conn.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM candidates WHERE status='evaluated' ORDER BY seq"
        ).fetchall()
        ids = [r["id"] for r in rows]
        parent_lists = [[int(p) for p in _loads(r["parents"], [])] for r in rows]
        main = [p[0] if p else None for p in parent_lists]
        scores = [r["score"] for r in rows]
        valid = [bool(r["valid"]) for r in rows]
        features = [_loads(r["features"], {}) for r in rows]
        island = [r["island"] for r in rows]
        index = {cid: i for i, cid in enumerate(ids)}
        meta = store.meta()
        archive_stats = store.get_state("archive") or {}
        elite_state = store.get_state("elites")
        best = store.best(1)
        moves = migrations(store)
        events = store.conn.execute(
            "SELECT seq, kind FROM events WHERE kind IN ('migration', 'reset') ORDER BY id"
        ).fetchall()
        usage = _model_usage(store)
        novelty = store.get_state("novelty")
        counts = store.counts()
        counts["near_duplicates"] = store.conn.execute(
            "SELECT COUNT(*) FROM candidates WHERE status='failed' AND reason LIKE 'novelty:%'"
        ).fetchone()[0]
        spend = store.spend()
        failures = store.failures(50)
        stamp = version(store)
    created = [r["created"] for r in rows]
    start = meta.get("created") or (min(created) if created else time.time())
    migrated_to: dict[int, list[int]] = defaultdict(list)
    for m in moves:
        if m.target is not None:
            migrated_to[m.candidate].append(m.target)
    config_path = run_dir / "config.yaml"
    return {
        "version": stamp,
        "live": live,
        "generated": time.time(),
        "run": {
            "name": run_dir.resolve().name,
            "meta": meta,
            "counts": counts,
            "spend": spend,
            "best": best[0].summary() if best else None,
            "config": config_path.read_text(errors="replace") if config_path.is_file() else None,
            "start": start,
        },
        "nodes": {
            "id": ids,
            "seq": [r["seq"] for r in rows],
            "parent": main,
            "others": [p[1:] for p in parent_lists],
            "island": island,
            "generation": [r["generation"] for r in rows],
            "operator": [r["operator"] or "" for r in rows],
            "model": [r["model"] for r in rows],
            "score": scores,
            "valid": valid,
            "cost": [r["cost"] for r in rows],
            "reward": [r["reward"] for r in rows],
            "elapsed": [c - start for c in created],
            "origin": [r["origin"] for r in rows],
            "y": tree_layout(ids, main),
            "crosses": [
                p is not None and p in index and bool(parent_lists[index[p]]) and island[index[p]] != island[i]
                for i, p in enumerate(main)
            ],
            "migrated_to": [migrated_to.get(cid, []) for cid in ids],
            "best_so_far": _best_so_far(scores, valid),
        },
        "elites": _elites(elite_state, archive_stats, meta, ids, scores, valid, features),
        "islands": archive_stats.get("islands") if isinstance(archive_stats, dict) else None,
        "novelty": novelty,
        "models": usage,
        "events": [{"seq": seq, "kind": kind} for seq, kind in events],
        "failures": failures,
    }


# ---------------------------------------------------------------- one candidate


def unified_diff(parent_text: str, child_text: str, parent_id: int, child_id: int) -> str:
    return "\n".join(
        difflib.unified_diff(
            parent_text.splitlines(),
            child_text.splitlines(),
            f"#{parent_id}",
            f"#{child_id}",
            lineterm="",
        )
    )


def _detail(row: Any, parent_texts: dict[int, str]) -> dict[str, Any]:
    parents = [int(p) for p in _loads(row["parents"], [])]
    text = row["text"] or ""
    return {
        "id": row["id"],
        "seq": row["seq"],
        "text": text,
        "parents": parents,
        "diffs": [
            {"parent": p, "diff": unified_diff(parent_texts[p], text, p, row["id"])}
            for p in parents
            if p in parent_texts
        ],
        "island": row["island"],
        "generation": row["generation"],
        "operator": row["operator"],
        "model": row["model"],
        "score": row["score"],
        "valid": bool(row["valid"]),
        "metrics": _loads(row["metrics"], {}),
        "features": _loads(row["features"], {}),
        "feedback": row["feedback"] or "",
        "artifacts": _loads(row["artifacts"], {}),
        "instances": _loads(row["instances"], {}),
        "timings": _loads(row["timings"], {}),
        "cost": row["cost"],
        "reward": row["reward"],
        "change": row["change"] or "",
        "origin": row["origin"],
        "created": row["created"],
        "finished": row["finished"],
    }


def candidate_detail(store: RunStore, candidate_id: int) -> dict[str, Any]:
    """One admitted candidate in full, with unified diffs against each of its parents."""
    with snapshot(store):
        row = store.conn.execute(
            "SELECT * FROM candidates WHERE id=? AND status='evaluated'", (candidate_id,)
        ).fetchone()
        if row is None:
            raise StoreError(f"no admitted candidate with id {candidate_id} in {store.path}")
        parents = [int(p) for p in _loads(row["parents"], [])]
        texts = (
            {
                r[0]: r[1] or ""
                for r in store.conn.execute(
                    f"SELECT id, text FROM candidates WHERE id IN ({','.join('?' * len(parents))})", parents
                )
            }
            if parents
            else {}
        )
    return _detail(row, texts)


def all_details(store: RunStore) -> dict[str, dict[str, Any]]:
    """Every admitted candidate in full (keys are ids as strings, as in JSON)."""
    with snapshot(store):
        rows = store.conn.execute("SELECT * FROM candidates WHERE status='evaluated' ORDER BY seq").fetchall()
    texts = {r["id"]: r["text"] or "" for r in rows}
    return {str(r["id"]): _detail(r, texts) for r in rows}
