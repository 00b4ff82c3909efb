"""What `evoengine status` shows: a run's progress read from its store, as data or text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .store import RunStore


def run_status(run_dir: str | Path) -> dict[str, Any]:
    store = RunStore.open(Path(run_dir), readonly=True)
    try:
        counts = store.counts()
        best = store.best(1)
        seed = store.seed()
        meta = store.meta()
        return {
            "run_dir": str(run_dir),
            "problem": meta.get("problem"),
            "admitted": counts["evaluated"],
            "valid": counts["valid"],
            "failed_proposals": counts["failed"],
            "abandoned_proposals": counts["abandoned"],
            "in_flight": counts["pending"],
            "best_score": best[0].score if best else None,
            "best_id": best[0].id if best else None,
            "seed_score": seed.score if seed else None,
            "spend": store.spend(),
            "elapsed_s": store.get_state("elapsed_s", 0.0),
            "models": store.model_usage(),
            "bandit": store.get_state("bandit", {}),
            "archive": store.get_state("archive", {}),
            "novelty": store.get_state("novelty", {}),
            "events": {kind: n for kind, n in store.conn.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind")},
        }
    finally:
        store.close()


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return "-" if x is None else str(x)


def render_status(s: dict[str, Any]) -> str:
    lines = [
        f"run        {s['run_dir']}  ({s['problem']})",
        f"candidates {s['admitted']} admitted, {s['valid']} valid, {s['failed_proposals']} failed proposals"
        + (f", {s['in_flight']} in flight" if s["in_flight"] else ""),
        f"best       {_fmt(s['best_score'])} (candidate {_fmt(s['best_id'])}); seed {_fmt(s['seed_score'])}",
        f"time       {s['elapsed_s']:.1f} s; spend ${s['spend']:.4f}",
    ]
    islands = (s.get("archive") or {}).get("islands") or []
    if islands:
        lines.append(
            "islands    "
            + "  ".join(
                f"#{i.get('island', n)}: best {_fmt(i.get('best_score'))} size {i.get('size')}"
                for n, i in enumerate(islands)
            )
        )
    archive = s.get("archive") or {}
    if archive:
        extra = {k: v for k, v in archive.items() if k != "islands" and not isinstance(v, (dict, list))}
        if extra:
            lines.append("archive    " + ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items()))
    if s.get("events"):
        lines.append("events     " + ", ".join(f"{k} {v}" for k, v in s["events"].items()))
    nov = s.get("novelty") or {}
    if nov:
        lines.append(
            "novelty    " + ", ".join(f"{k} {_fmt(v)}" for k, v in nov.items() if not isinstance(v, (dict, list)))
        )
    arms = s.get("bandit") or {}
    if arms:
        lines.append("models     arm                      calls  mean reward  cost      p(select)")
        for name, a in arms.items():
            lines.append(
                f"           {name:<24} {a.get('calls', 0):>5}  {_fmt(a.get('mean_reward')):>11}  "
                f"${a.get('cost', 0.0):<8.4f} {_fmt(a.get('probability'))}"
            )
    return "\n".join(lines)
