"""Peers' problem folders, run as they are.

OpenEvolve's shape: `evaluator.py` whose `evaluate(program_path)` returns a dict of metrics
(`combined_score` first among them) or an `EvaluationResult` (metrics plus artifacts), with
optional cascade stages `evaluate_stage1/2/3`, beside the seed `initial_program.<ext>` and an
optional `config.yaml`. ShinkaEvolve's shape: `evaluate.py`, a script run as
`evaluate.py --program_path P --results_dir R` that writes `metrics.json` (`combined_score`,
`public`, `private`, `text_feedback`) and `correct.json`, beside the seed `initial.<ext>` and
an optional `shinka.yaml`.

`find_peer` recognises such a folder (or a file in it) and `load_peer` turns it into a
`LoadedProblem` whose `evaluate(candidate_path)` calls theirs. This runs inside the sandboxed
evaluation worker, which rebuilds the problem from `LoadedProblem.path` (their evaluator file)
in the same way. Their evaluators are trusted code and usually import the candidate into
their own process; docs/porting.md says what isolation the candidate then has.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import runpy
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from .errors import ProblemError
from .problem import EvalResult, LoadedProblem, Problem, import_file

log = logging.getLogger("evoengine.peers")

# Language by seed suffix (ShinkaEvolve's list and a few more); anything else is text.
LANGUAGES = {
    ".py": "python",
    ".go": "go",
    ".rs": "rust",
    ".c": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".cxx": "cpp",
    ".cu": "cuda",
    ".jl": "julia",
    ".swift": "swift",
    ".f90": "fortran",
    ".f95": "fortran",
    ".f03": "fortran",
    ".f08": "fortran",
    ".sv": "verilog",
    ".v": "verilog",
    ".r": "r",
    ".java": "java",
    ".js": "javascript",
    ".ts": "typescript",
    ".lua": "lua",
    ".sh": "shell",
}
INSTALL = {
    "openevolve": "pip install 'evoengine[openevolve]'  (openevolve==0.4.0)",
    "shinka": "pip install 'evoengine[shinka]'  (shinka-evolve==0.0.7)",
}
SHAPES = {
    "openevolve": ("evaluator.py", "initial_program", "config.yaml"),
    "shinka": ("evaluate.py", "initial", "shinka.yaml"),
}
DEFAULT_TIMEOUT_S = 300.0  # OpenEvolve's default evaluator.timeout
MAX_FEEDBACK = 4000


@dataclass(frozen=True)
class PeerFolder:
    """A peer's problem: which engine's shape, their evaluator, the seed, their config file."""

    shape: str  # "openevolve" | "shinka"
    evaluator: Path
    seed: Path
    config: Path | None = None

    def settings(self) -> dict[str, Any]:
        """Their config file as a mapping ({} when there is none)."""
        if self.config is None:
            return {}
        try:
            data = yaml.safe_load(self.config.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ProblemError(f"{self.config}: cannot be read as YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ProblemError(f"{self.config}: expected a mapping of keys at the top level")
        return data


def find_peer(spec: str | Path) -> PeerFolder | None:
    """The peer's problem at `spec` (its folder, its evaluator or its seed), or None.
    A folder holding a native `problem.py` is never a peer's."""
    path = Path(spec)
    if not (path.is_dir() or path.is_file()):
        return None
    folder = path if path.is_dir() else path.parent
    if (folder / "problem.py").is_file():
        return None
    for shape, (evaluator, stem, config) in SHAPES.items():
        seeds = seed_files(folder, stem)
        if not (folder / evaluator).is_file() or not seeds:
            continue
        if path.is_file() and path.name != evaluator and path not in seeds:
            return None
        seed = path if path in seeds else seeds[0]
        config_path = folder / config if (folder / config).is_file() else None
        return PeerFolder(shape, (folder / evaluator).resolve(), seed.resolve(), config_path)
    return None


def seed_files(folder: Path, stem: str) -> list[Path]:
    """`stem.<ext>` files in `folder`, Python first, then in the order of LANGUAGES."""
    order = list(LANGUAGES)
    found = [p for p in folder.glob(f"{stem}.*") if p.is_file() and p.suffix not in (".pyc", ".yaml", ".yml")]
    return sorted(found, key=lambda p: (order.index(p.suffix) if p.suffix in order else len(order), p.name))


def load_peer(found: PeerFolder) -> LoadedProblem:
    """The problem and evaluator of a peer's folder, as evoengine runs them."""
    settings = found.settings()
    evaluate: OpenEvolveEvaluator | ShinkaEvaluator
    if found.shape == "openevolve":
        evaluate = OpenEvolveEvaluator.from_settings(found.evaluator, settings)
    else:
        evaluate = ShinkaEvaluator(found.evaluator)
    problem = Problem(
        name=found.evaluator.parent.name,
        description=describe(found, settings),
        initial=found.seed.name if found.seed.parent == found.evaluator.parent else str(found.seed),
        language=LANGUAGES.get(found.seed.suffix.lower(), "text"),
        kind="program" if found.seed.suffix.lower() in LANGUAGES else "prompt",
        timeout_s=timeout_of(found, settings),
        memory_mb=int((settings.get("evaluator") or {}).get("memory_limit_mb") or 2048),
    )
    problem.root = found.evaluator.parent
    return LoadedProblem(problem, evaluate, found.evaluator, SimpleNamespace(problem=problem, evaluate=evaluate))


def describe(found: PeerFolder, settings: dict[str, Any]) -> str:
    """The task text for prompts: OpenEvolve's prompt.system_message, ShinkaEvolve's task_sys_msg."""
    if found.shape == "openevolve":
        text = (settings.get("prompt") or {}).get("system_message")
        if isinstance(text, str) and " " in text.strip():  # a bare word names one of their template files
            return text.strip()
    else:
        text = (settings.get("evo_config") or settings.get("evo") or {}).get("task_sys_msg")
        text = text or task_message(found.evaluator.parent / "run_evo.py")
        if isinstance(text, str) and text.strip():
            return text.strip()
    return (
        f"Improve the program in {found.seed.name}. Their evaluator {found.evaluator.name} scores it; "
        "a higher combined_score is better."
    )


def task_message(run_evo: Path) -> str | None:
    """`task_sys_msg` given as a string constant in ShinkaEvolve's run_evo.py, read without running it."""
    try:
        tree = ast.parse(run_evo.read_text())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    strings = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "task_sys_msg":
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
            if isinstance(node.value, ast.Name):
                return strings.get(node.value.id)
    return strings.get("task_sys_msg")


def timeout_of(found: PeerFolder, settings: dict[str, Any]) -> float:
    """Seconds for one whole evaluation: OpenEvolve's evaluator.timeout per stage, or
    ShinkaEvolve's job time (hh:mm:ss); 300 s when the config says nothing."""
    if found.shape == "openevolve":
        evaluator = settings.get("evaluator") or {}
        stages = 3 if evaluator.get("cascade_evaluation", True) else 1
        return float(evaluator.get("timeout") or DEFAULT_TIMEOUT_S) * stages
    time = str((settings.get("job_config") or settings.get("job") or {}).get("time") or "")
    parts = time.split(":")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return float(int(parts[0]) * 3600 + int(parts[1]) * 60 + int(parts[2])) or DEFAULT_TIMEOUT_S
    return DEFAULT_TIMEOUT_S


def import_evaluator(path: Path) -> Any:
    """Import their evaluator module with its folder on sys.path (as both peers do); a missing
    peer package is a ProblemError naming the install command."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    try:
        return import_file(path, "evoengine_peer")
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root in INSTALL:
            raise ProblemError(f"{path} imports {exc.name}; install that package: {INSTALL[root]}") from exc
        raise ProblemError(f"{path}: importing it failed: {exc}") from exc
    except BaseException as exc:  # their file failing to import must not look like our crash
        raise ProblemError(f"{path}: importing it failed with {type(exc).__name__}: {exc}") from exc


class OpenEvolveEvaluator:
    """Calls OpenEvolve's `evaluate(program_path)`, or its cascade, and scores as OpenEvolve does."""

    def __init__(
        self,
        path: Path,
        *,
        cascade: bool = True,
        thresholds: Sequence[float] = (0.5, 0.75, 0.9),
        feature_dimensions: Sequence[str] = (),
    ) -> None:
        self.path = Path(path)
        self.module = import_evaluator(self.path)
        if not callable(getattr(self.module, "evaluate", None)):
            raise ProblemError(f"{self.path}: OpenEvolve's evaluator must define evaluate(program_path)")
        self.cascade = cascade and callable(getattr(self.module, "evaluate_stage1", None))
        self.thresholds = tuple(float(t) for t in thresholds)
        self.feature_dimensions = tuple(feature_dimensions)

    @classmethod
    def from_settings(cls, path: Path, settings: dict[str, Any]) -> OpenEvolveEvaluator:
        """As their config.yaml's evaluator.cascade_* and database.feature_dimensions say."""
        evaluator, database = settings.get("evaluator") or {}, settings.get("database") or {}
        return cls(
            path,
            cascade=bool(evaluator.get("cascade_evaluation", True)),
            thresholds=tuple(evaluator.get("cascade_thresholds") or (0.5, 0.75, 0.9)),
            feature_dimensions=tuple(database.get("feature_dimensions") or ()),
        )

    def __call__(self, candidate_path: str) -> EvalResult:
        if self.cascade:
            metrics, artifacts = self._cascade(candidate_path)
        else:
            metrics, artifacts = _parts(self.module.evaluate(candidate_path))
        return openevolve_result(metrics, artifacts, self.feature_dimensions)

    def _cascade(self, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """OpenEvolve's cascade: stage N+1 runs only if the result so far passes threshold N;
        a later stage that raises keeps the earlier stages' result, marked `stageN_passed: 0`."""
        metrics, artifacts = _parts(self.module.evaluate_stage1(path))
        for stage in (2, 3):
            function = getattr(self.module, f"evaluate_stage{stage}", None)
            if not callable(function) or len(self.thresholds) < stage - 1:
                break
            if not passes(metrics, self.thresholds[stage - 2]):
                break
            try:
                more, more_artifacts = _parts(function(path))
            except Exception as exc:  # their stage failed: theirs keeps what the earlier stages found
                metrics[f"stage{stage}_passed"] = 0.0
                artifacts.update(
                    {f"stage{stage}_stderr": f"{type(exc).__name__}: {exc}", "failure_stage": f"stage{stage}"}
                )
                break
            metrics = {k: float(v) for k, v in {**metrics, **more}.items() if _number(v) and k != "error"}
            artifacts.update(more_artifacts)
        return metrics, artifacts


def _parts(value: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, artifacts) of a dict or of anything shaped like OpenEvolve's EvaluationResult."""
    if isinstance(value, Mapping):
        return dict(value), {}
    metrics, artifacts = getattr(value, "metrics", None), getattr(value, "artifacts", None)
    if isinstance(metrics, Mapping) and isinstance(artifacts, Mapping):
        return dict(metrics), dict(artifacts)
    raise ProblemError(
        f"the evaluator returned {type(value).__name__}; expected a dict of metrics or an EvaluationResult"
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def passes(metrics: Mapping[str, Any], threshold: float) -> bool:
    """OpenEvolve's cascade test: combined_score, else the mean of the numbers but `error`."""
    if _number(metrics.get("combined_score")):
        return float(metrics["combined_score"]) >= threshold
    numbers = [float(v) for k, v in metrics.items() if k != "error" and _number(v)]
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
        return EvalResult.invalid(f"combined_score is {metrics['combined_score']!r}", **numbers)
    texts.update({str(k): _text(v) for k, v in artifacts.items()})
    return EvalResult(score=score, metrics=numbers, artifacts=texts, feedback=render(texts))


class ShinkaEvaluator:
    """Runs ShinkaEvolve's `evaluate.py` as its launcher does (`--program_path P --results_dir R`),
    in this process (imported once, so each run costs no interpreter start), and reads what it wrote."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.module = import_evaluator(self.path)

    def __call__(self, candidate_path: str) -> EvalResult:
        results = Path(candidate_path).parent / "results"
        results.mkdir(exist_ok=True)
        saved = sys.argv
        sys.argv = [str(self.path), "--program_path", str(candidate_path), "--results_dir", str(results)]
        try:
            runpy.run_path(str(self.path), run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (None, 0):
                return EvalResult.invalid(f"{self.path.name} exited with status {exc.code}")
        finally:
            sys.argv = saved
        return shinka_result(results)


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
        result = EvalResult.invalid("\n".join(filter(None, (reason, feedback))), **numbers)
        result.artifacts = texts
        return result
    if not _number(score):
        return EvalResult.invalid(f"metrics.json's combined_score is {score!r}; a finite number is needed", **numbers)
    return EvalResult(score=float(score), metrics=numbers, artifacts=texts, feedback=feedback or render(texts))


def split_values(values: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Finite numbers (bools as 0/1) as metrics; everything else as text."""
    numbers: dict[str, float] = {}
    texts: dict[str, str] = {}
    for key, value in values.items():
        if _number(value):
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
