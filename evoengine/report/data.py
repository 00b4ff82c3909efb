"""What the report page shows, as plain JSON-ready data read through the store's `RunReader`.

`run_summary` is everything but the texts: one row per closed proposal (admitted or not)
in columns, the lineage layout, MAP-Elites maps, arms, model usage and bandit state.
`detail_chunks` holds the texts: each proposal's code, feedback, reason, metrics and every
model call that made it (prompt and reply, with the edit parsed from the reply), as
gzip-compressed JSON chunks the page opens when it needs them. Siblings sit next to each
other in the chunks, so their shared text compresses to little.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..lineage import migrations
from ..patches import PatchError, parse_diff
from ..store import STATUSES, RunReader
from .elites import elites_from_candidates, elites_from_engine

CHUNK_BYTES = 400_000  # uncompressed JSON per detail chunk: each opens in a few milliseconds
NOTE_CHARS = 160
ROW_COLUMNS = (  # the columns of `run_summary`'s rows, as the page reads them
    "id", "seq", "status", "kind", "parents", "island", "generation", "operator", "model", "score", "cost", "reward",
    "tokens", "calls", "t", "note", "y", "origin", "migrated_to",
)  # fmt: skip


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


def arm_shares(picks: Sequence[str], points: int = 300) -> dict[str, Any]:
    """Each arm's share of the last `window` proposals, at up to `points` proposal counts:
    how the bandit shifted its choices over a run, without sending every proposal."""
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
                share[a].append(round(running[a] / seen, 4))
            target = next(x_iter, None)
    return {"x": xs, "share": share, "window": window, "total": n}


def arms(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per bandit arm: proposals and their outcomes, mean reward, improvements and spend.
    Seeds and imports (no arm made them) are left out."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["model"] is None:
            continue
        a = out.setdefault(
            r["model"], {"arm": r["model"], "proposals": 0, **dict.fromkeys(STATUSES, 0), "improved": 0, "cost": 0.0}
        )
        a["proposals"] += 1
        a[r["outcome"]] += 1
        a["cost"] += r["cost"] or 0.0
        a["improved"] += int((r["reward"] or 0) > 0)
        if r["reward"] is not None:
            a.setdefault("rewards", []).append(r["reward"])
    for a in out.values():
        rewards = a.pop("rewards", [])
        a["mean_reward"] = sum(rewards) / len(rewards) if rewards else None
    return sorted(out.values(), key=lambda a: -a["proposals"])


def _elites(state: Any, archive: Any, meta: dict[str, Any], admitted: list[dict[str, Any]]) -> dict[str, Any]:
    """The MAP-Elites maps from the engine's archive (state `elites`), else from the candidates' features."""
    stats = archive.get("elites") if isinstance(archive, dict) else None
    maps = elites_from_engine(state) if isinstance(state, dict) and state.get("dimensions") else []
    if maps:
        source = {"source": "engine", "kind": state.get("kind"), "cells": state.get("cells")}
    else:  # bin the admitted candidates' own features
        source = {"source": "candidates", "kind": "grid", "cells": None}
        ids, scores = [r["id"] for r in admitted], [r["score"] for r in admitted]
        valid = [r["outcome"] == "valid" for r in admitted]
        maps = elites_from_candidates(ids, scores, valid, [r["features"] for r in admitted], meta.get("features"))
    return {**source, "stats": stats, "maps": maps}


def run_summary(reader: RunReader, run_dir: Path, live: bool = False) -> dict[str, Any]:
    """Everything the page shows except texts, read in one snapshot."""
    run_dir = Path(run_dir)
    with reader.snapshot():
        rows = reader.proposals()
        meta = reader.meta()
        counts = reader.outcome_counts()
        moves = migrations(reader)
        resets = reader.events("reset")
        bests = reader.best_curve()
        usage = reader.model_usage()
        picks = reader.arm_picks()
        spend = reader.spend()
        best = reader.best(1)
        state = {k: reader.get_state(k) for k in ("archive", "elites", "novelty", "bandit", "elapsed_s", "stopped")}
        stamp = reader.version()
    admitted = sorted((r for r in rows if r["seq"] is not None), key=lambda r: r["seq"])
    start = meta.get("created") or min((r["created"] for r in rows), default=time.time())
    ids = [r["id"] for r in admitted]
    y = dict(zip(ids, tree_layout(ids, [r["parents"][0] if r["parents"] else None for r in admitted]), strict=True))
    migrated: dict[int, list[int]] = {}
    for m in moves:
        if m.target is not None:
            migrated.setdefault(m.candidate, []).append(m.target)
    for r in rows:
        r["status"] = STATUSES.index(r["outcome"])
        r["t"] = round(r["created"] - start, 3)
        r["y"] = y.get(r["id"])
        r["note"] = (r["note"] or "")[:NOTE_CHARS]
        r["migrated_to"] = migrated.get(r["id"], [])
    config = run_dir / "config.yaml"
    changes = zip(bests, [(0, None), *bests[:-1]], strict=True)  # as it changed
    return {
        "version": stamp,
        "live": live,
        "generated": time.time(),
        "statuses": STATUSES,
        "run": {
            "name": run_dir.resolve().name,
            "meta": meta,
            "counts": counts,
            "spend": spend,
            "best": best[0].summary() if best else None,
            "config": config.read_text(errors="replace") if config.is_file() else None,
            "start": start,
            "elapsed_s": state["elapsed_s"],
            "stopped": state["stopped"],  # {reason, message}; None while under way or after a kill
        },
        "rows": {k: [r[k] for r in rows] for k in ROW_COLUMNS},
        "bests": [{"seq": seq, "id": i} for (seq, i), (_, before) in changes if i != before],  # the run's best
        "events": [{"seq": m.seq, "kind": "migration"} for m in moves]
        + [{"seq": e["seq"], "kind": "reset"} for e in resets],
        "elites": _elites(state["elites"], state["archive"], meta, admitted),
        "islands": state["archive"].get("islands") if isinstance(state["archive"], dict) else None,
        "novelty": state["novelty"],
        "models": {"arms": arms(rows), "picks": arm_shares(picks), "calls": usage, "bandit": state["bandit"]},
    }


# ---------------------------------------------------------------- texts


def _with_edits(call: dict[str, Any]) -> dict[str, Any]:
    """A model call with the SEARCH/REPLACE edits parsed from its reply (or why they could not be)."""
    reply = call.get("reply") or ""
    if "<<<<<<< SEARCH" not in reply:
        return call
    try:
        return {**call, "edits": [[e.search, e.replace] for e in parse_diff(reply)]}
    except PatchError as exc:
        return {**call, "edit_error": str(exc)}


def _pack(details: list[dict[str, Any]]) -> dict[str, Any]:
    raw = json.dumps(details, separators=(",", ":"), default=str).encode()
    return {"ids": [d["id"] for d in details], "gz": base64.b64encode(gzip.compress(raw, 6, mtime=0)).decode()}


def detail_chunks(reader: RunReader, order: Sequence[int] = (), finished_after: float | None = None) -> dict[str, Any]:
    """Every closed proposal in full (or those finished after `finished_after`), in gzip
    chunks of JSON; `order` (ids, e.g. the lineage's top-to-bottom order) keeps relatives
    together. `until` is the latest finishing time included, to ask for what came after."""
    with reader.snapshot():
        details = reader.details(finished_after)
    rank = {cid: k for k, cid in enumerate(order)}
    details.sort(key=lambda d: (rank.get(d["id"], len(rank)), d["id"]))
    chunks, current, size = [], [], 0
    for d in details:
        d["calls"] = [_with_edits(c) for c in d["calls"]]
        current.append(d)
        size += len(d["text"] or "") + sum(
            len(m.get("content") or "") for c in d["calls"] for m in c["messages"] if isinstance(m, dict)
        )
        if size >= CHUNK_BYTES:
            chunks.append(_pack(current))
            current, size = [], 0
    if current:
        chunks.append(_pack(current))
    until = max((d["finished"] or 0 for d in details), default=finished_after)
    return {"chunks": chunks, "until": until}


def lineage_order(summary: dict[str, Any]) -> list[int]:
    """Ids top to bottom in the lineage (a proposal that was not admitted beside its parent)."""
    rows = summary["rows"]
    y = dict(zip(rows["id"], rows["y"], strict=True))

    def place(k: int) -> tuple[float, int]:
        own = rows["y"][k]
        parents = rows["parents"][k]
        return (own if own is not None else y.get(parents[0], 0.0) if parents else 0.0, rows["generation"][k])

    return [rows["id"][k] for k in sorted(range(len(rows["id"])), key=place)]
