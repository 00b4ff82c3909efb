"""Peers' evaluation results as evoengine's `EvalResult`: OpenEvolve's metrics dict or
`EvaluationResult` (scored as OpenEvolve's fitness, cascade thresholds as theirs) and
ShinkaEvolve's results folder (`metrics.json`, `correct.json`). Used by evoengine.peers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..problem import EvalResult

MAX_FEEDBACK = 4000


def parts(value: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, artifacts) of a dict or of anything shaped like OpenEvolve's EvaluationResult."""
    if isinstance(value, Mapping):
        return dict(value), {}
    metrics, artifacts = getattr(value, "metrics", None), getattr(value, "artifacts", None)
    if isinstance(metrics, Mapping) and isinstance(artifacts, Mapping):
        return dict(metrics), dict(artifacts)
    raise TypeError(f"the evaluator returned {type(value).__name__}; expected a dict of metrics or an EvaluationResult")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def passes(metrics: Mapping[str, Any], threshold: float) -> bool:
    """OpenEvolve's cascade test: combined_score, else the mean of the numbers but `error`."""
    if is_number(metrics.get("combined_score")):
        return float(metrics["combined_score"]) >= threshold
    numbers = [float(v) for k, v in metrics.items() if k != "error" and is_number(v)]
    return bool(numbers) and sum(numbers) / len(numbers) >= threshold


def openevolve_result(metrics: dict[str, Any], artifacts: dict[str, Any], features: tuple[str, ...] = ()) -> EvalResult:
    """Score as OpenEvolve's fitness: combined_score, else the mean of the numeric metrics that are
    not MAP-Elites dimensions. Their text values and artifacts become the feedback."""
    numbers, texts = split_values(metrics)
    if "combined_score" in metrics:
        score = float(metrics["combined_score"]) if isinstance(metrics["combined_score"], (int, float)) else math.nan
    else:
        pool = [v for k, v in numbers.items() if k not in features] or list(numbers.values())
        if not pool:
            return EvalResult.invalid(f"the evaluator returned no numeric metric: {metrics!r}"[:MAX_FEEDBACK])
        score = sum(pool) / len(pool)
    if not math.isfinite(score):
        return EvalResult(valid=False, feedback=f"combined_score is {metrics['combined_score']!r}", metrics=numbers)
    texts.update({str(k): _text(v) for k, v in artifacts.items()})
    return EvalResult(score=score, metrics=numbers, artifacts=texts, feedback=render(texts))


def shinka_result(results: Path) -> EvalResult:
    """ShinkaEvolve's results folder as an EvalResult: `combined_score` is the score, `public`
    metrics are shown to the model, `private` ones are kept as an artifact, `text_feedback` is the
    feedback; `correct.json` saying false (or missing) makes the candidate invalid."""
    try:
        data = json.loads((results / "metrics.json").read_text())
    except FileNotFoundError:
        return EvalResult.invalid("evaluate.py wrote no metrics.json into its --results_dir")
    except (OSError, ValueError) as exc:
        return EvalResult.invalid(f"metrics.json cannot be read: {exc}")
    try:
        correct = json.loads((results / "correct.json").read_text())
    except (OSError, ValueError):
        correct = {"correct": False, "error": "evaluate.py wrote no readable correct.json"}
    if not isinstance(data, dict) or not isinstance(correct, dict):
        return EvalResult.invalid("metrics.json and correct.json must each hold a JSON object")
    public = data.get("public") if isinstance(data.get("public"), dict) else {}
    numbers, texts = split_values(public)
    if data.get("private"):
        texts["private"] = _text(data["private"])
    feedback = data.get("text_feedback") or ""
    feedback = "\n".join(map(str, feedback)) if isinstance(feedback, list) else str(feedback)
    score = data.get("combined_score")
    if not correct.get("correct"):
        reason = f"incorrect: {correct.get('error') or 'correct.json says false'}"
        return EvalResult(
            valid=False, feedback="\n".join(filter(None, (reason, feedback))), metrics=numbers, artifacts=texts
        )
    if not is_number(score):
        reason = f"metrics.json's combined_score is {score!r}; a finite number is needed"
        return EvalResult(valid=False, feedback=reason, metrics=numbers, artifacts=texts)
    return EvalResult(score=float(score), metrics=numbers, artifacts=texts, feedback=feedback or render(texts))


def split_values(values: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Finite numbers (bools as 0/1) as metrics; everything else as text."""
    numbers: dict[str, float] = {}
    texts: dict[str, str] = {}
    for key, value in values.items():
        if is_number(value):
            numbers[str(key)] = float(value)
        else:
            texts[str(key)] = _text(value)
    return numbers, texts


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def render(texts: Mapping[str, str]) -> str:
    """Named texts as feedback lines, capped."""
    text = "\n".join(f"{k}: {v}" for k, v in texts.items())
    return text if len(text) <= MAX_FEEDBACK else text[:MAX_FEEDBACK] + "\n[... cut]"
