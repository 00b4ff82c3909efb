"""What `evoengine status` shows: a run's progress read from its store, as data or text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .store import RunReader, lock_holder


def run_status(run_dir: str | Path) -> dict[str, Any]:
    with RunReader.open(Path(run_dir)) as reader, reader.snapshot():
        counts = reader.outcome_counts()
        best = reader.best(1)
        seed = reader.seed()
        meta = reader.meta()
        return {
            "run_dir": str(run_dir),
            "problem": meta.get("problem"),
            **{k: counts[k] for k in ("admitted", "valid", "invalid", "screened")},
            "rejected_proposals": counts["rejected"],
            **{k: counts[k] for k in ("near_duplicates", "exact_copies")},
            "failed_proposals": counts["failed"] + counts["rejected"],  # every proposal not admitted
            "failure_kinds": counts["kinds"],
            "abandoned_proposals": counts["abandoned"],
            "in_flight": counts["pending"],
            "best_score": best[0].score if best else None,
            "best_id": best[0].id if best else None,
            "seed_score": seed.score if seed else None,
            "seed_id": seed.id if seed else None,
            "spend": reader.spend(),
            "elapsed_s": reader.get_state("elapsed_s", 0.0),
            "stopped": reader.get_state("stopped"),  # {reason, message}; None while under way or after a kill
            "running_pid": lock_holder(Path(run_dir)),
            "models": reader.model_usage(),
            "bandit": reader.get_state("bandit", {}),
            "archive": reader.get_state("archive", {}),
            "novelty": reader.get_state("novelty", {}),
            "events": reader.event_counts(),
        }


KIND_LABELS = {"copy": "copy (valid, behaved as a kept candidate: one more sample of its score)"}


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return "-" if x is None else str(x)


def _some(pairs: list[tuple[str, Any]]) -> str:
    return ", ".join(f"{n} {label}" for label, n in pairs if n)


def _state(s: dict[str, Any]) -> str:
    stopped = s.get("stopped")
    if stopped:
        return f"stopped    {stopped['reason']}" + (f": {stopped['message']}" if stopped["message"] else "")
    if s.get("running_pid"):
        return f"running    in process {s['running_pid']}"
    return f"stopped    without saying why (killed?); `evoengine resume {s['run_dir']}` goes on"


def render_status(s: dict[str, Any]) -> str:
    admitted = _some([("valid", s["valid"]), ("invalid", s["invalid"]), ("screened by the gate", s["screened"])])
    failed = s["failed_proposals"] - s["rejected_proposals"]
    not_admitted = _some([("rejected", s["rejected_proposals"]), ("failed", failed), ("in flight", s["in_flight"])])
    lines = [
        f"run        {s['run_dir']}  ({s['problem']})",
        f"candidates {s['admitted']} admitted"
        + (f" ({admitted})" if admitted else "")
        + (f"; proposals {not_admitted}" if not_admitted else ""),
        f"best       {_fmt(s['best_score'])} (candidate {_fmt(s['best_id'])}); "
        f"start {_fmt(s['seed_score'])} (candidate {_fmt(s['seed_id'])})",
        f"time       {s['elapsed_s']:.1f} s of search; spend ${s['spend']:.4f}",
        _state(s),
    ]
    kinds = s.get("failure_kinds") or {}
    if kinds:
        lines.append(
            "failures   "
            + ", ".join(f"{KIND_LABELS.get(k, k)} {n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
        )
    archive = s.get("archive") or {}
    islands = archive.get("islands") or []
    if islands:
        each = (
            f"#{i.get('island', n)}: best {_fmt(i.get('best_score'))} size {i.get('size')}"
            for n, i in enumerate(islands)
        )
        lines.append("islands    " + "  ".join(each))
    elites = archive.get("elites") if isinstance(archive.get("elites"), dict) else {}
    if elites.get("enabled"):
        coverage = elites.get("coverage")
        parts = (
            f"{elites['filled']} cells filled" if "filled" in elites else "",
            f"coverage {100 * coverage:.1f}%" if isinstance(coverage, int | float) else "",
            f"QD-score {_fmt(elites.get('qd_score'))}" if "qd_score" in elites else "",
        )
        lines.append("map-elites " + ", ".join(filter(None, parts)))
    shown = ("islands", "admitted", "valid", "invalid", "best_id", "best_score")
    extra = {k: v for k, v in archive.items() if k not in shown and not isinstance(v, dict | list)}
    if extra:
        lines.append("archive    " + ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items()))
    if s.get("events"):
        lines.append("events     " + ", ".join(f"{k} {v}" for k, v in s["events"].items()))
    nov = s.get("novelty") or {}
    if nov or s["rejected_proposals"]:
        checks = f", {nov['checks']} checks" if "checks" in nov else ""
        judge = f", {nov['judged']} judged by a model" if nov.get("judged") else ""
        lines.append(
            f"novelty    {s['rejected_proposals']} rejected: {s['near_duplicates']} near-duplicates, "
            f"{s['exact_copies']} exact copies"
            + (f" (embedder {nov['embedder']}{checks}{judge})" if "embedder" in nov else "")
        )
    evaluator = [u for u in s.get("models") or [] if u.get("purpose") == "evaluate"]
    each = (
        f"{u['model']}: {u['calls']} calls ({u['errors'] or 0} failed), "
        f"{(u['tokens_in'] or 0) + (u['tokens_out'] or 0)} tokens, ${u['cost'] or 0.0:.4f}"
        for u in evaluator
    )
    if evaluator:
        lines.append("evaluator  " + "; ".join(each))
    arms = s.get("bandit") or {}
    if arms:
        lines.append("models     arm                      calls  mean reward  cost      p(select)")
        for name, a in arms.items():
            lines.append(
                f"           {name:<24} {a.get('calls', 0):>5}  {_fmt(a.get('mean_reward')):>11}  "
                f"${a.get('cost', 0.0):<8.4f} {_fmt(a.get('probability'))}"
            )
    return "\n".join(lines)
