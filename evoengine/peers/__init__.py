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
import runpy
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import ProblemError
from ..problem import EvalResult, LoadedProblem, Problem, import_file, load_problem
from .results import is_number, openevolve_result, parts, passes, shinka_result

# Language by seed suffix (ShinkaEvolve's list and a few more); anything else is text.
LANGUAGES = {
    ".py": "python", ".go": "go", ".rs": "rust", ".c": "c", ".cpp": "cpp", ".cc": "cpp", ".cxx": "cpp", ".cu": "cuda",
    ".jl": "julia", ".swift": "swift", ".f90": "fortran", ".f95": "fortran", ".f03": "fortran", ".f08": "fortran",
    ".sv": "verilog", ".v": "verilog", ".r": "r", ".java": "java", ".js": "javascript", ".ts": "typescript",
    ".lua": "lua", ".sh": "shell",
}  # fmt: skip
INSTALL = {
    "openevolve": "pip install 'evoengine[openevolve]'  (openevolve==0.4.0)",
    "shinka": "pip install 'evoengine[shinka]'  (shinka-evolve==0.0.7)",
}
SHAPES = {
    "openevolve": ("evaluator.py", "initial_program", "config.yaml"),
    "shinka": ("evaluate.py", "initial", "shinka.yaml"),
}
DEFAULT_TIMEOUT_S = 300.0  # OpenEvolve's default evaluator.timeout


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
        import yaml  # here: the evaluation worker imports this module and rarely reads a config

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
            metrics, artifacts = parts(self.module.evaluate(candidate_path))
        return openevolve_result(metrics, artifacts, self.feature_dimensions)

    def _cascade(self, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """OpenEvolve's cascade: stage N+1 runs only if the result so far passes threshold N;
        a later stage that raises keeps the earlier stages' result, marked `stageN_passed: 0`."""
        metrics, artifacts = parts(self.module.evaluate_stage1(path))
        for stage in (2, 3):
            function = getattr(self.module, f"evaluate_stage{stage}", None)
            if not callable(function) or len(self.thresholds) < stage - 1:
                break
            if not passes(metrics, self.thresholds[stage - 2]):
                break
            try:
                more, more_artifacts = parts(function(path))
            except Exception as exc:  # their stage failed: theirs keeps what the earlier stages found
                metrics[f"stage{stage}_passed"] = 0.0
                artifacts.update(
                    {f"stage{stage}_stderr": f"{type(exc).__name__}: {exc}", "failure_stage": f"stage{stage}"}
                )
                break
            metrics = {k: float(v) for k, v in {**metrics, **more}.items() if is_number(v) and k != "error"}
            artifacts.update(more_artifacts)
        return metrics, artifacts


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


def open_problem(spec: str | Path) -> LoadedProblem:
    """A problem as it is: a native problem.py (or its folder, or a bundled name), or a peer's
    folder (OpenEvolve's or ShinkaEvolve's shape), its evaluator or its seed."""
    peer = find_peer(spec)
    return load_peer(peer) if peer is not None else load_problem(spec)
