"""The problem contract: `Problem` (what is searched), `EvalResult` (how a candidate scored)
and `load_problem` (turning `problems/<name>/problem.py` into both).

A problem file is a Python module with a module-level `problem = Problem(...)` and a
function `evaluate(candidate_path) -> EvalResult | dict`. `evaluate` is trusted code; it
runs inside the evaluation sandbox and should call candidate code through
`evoengine.evaluation.call_candidate` so that the candidate cannot touch its own score.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ProblemError
from .files import FilesError, join_files, language_of, read_folder

KINDS = ("program", "prompt", "reward", "harness")

# The artifact in which an evaluator may say what a candidate did (a fingerprint of its outputs):
# two valid candidates of one run with the same non-empty `behaviour` are one program to the
# search, and the later is counted as one more evaluation of the earlier (evoengine/engine/ledger.py).
BEHAVIOUR = "behaviour"

# Line-comment syntax per language, used for the EVOLVE-BLOCK markers.
COMMENT_PREFIX = {
    **dict.fromkeys(("python", "text", "yaml", "shell", "julia", "r"), "#"),
    **dict.fromkeys(("c", "cpp", "cuda", "rust", "go", "java", "javascript", "typescript", "swift", "verilog"), "//"),
    **dict.fromkeys(("lua", "sql"), "--"),
    "fortran": "!",
}


@dataclass(frozen=True)
class Feature:
    """A MAP-Elites descriptor the evaluator reports in `EvalResult.features`."""

    name: str
    low: float
    high: float
    bins: int = 10

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ProblemError(f"feature {self.name!r}: high ({self.high}) must exceed low ({self.low})")
        if self.bins < 1:
            raise ProblemError(f"feature {self.name!r}: bins must be >= 1 (got {self.bins})")


@dataclass
class Problem:
    """What a search is about. `initial` names the seed beside `problem.py`: a file, or a folder
    of files for candidates of several files (`folder`; see `evoengine.files`)."""

    name: str
    description: str
    initial: str
    language: str = "python"
    kind: str = "program"
    features: tuple[Feature, ...] = ()
    timeout_s: float = 60.0
    memory_mb: int = 2048
    # For an evaluator whose score varies from one run to the next: evaluations more of a child
    # that would be the run's best, which is admitted with the mean (evoengine/engine/recheck.py).
    rechecks: int = 0
    # Optional file beside problem.py of snippets, one per line, that offline text operators
    # may insert into a candidate (blank lines and lines starting with "#" are skipped).
    vocabulary: str | None = None
    # Environment variables the evaluator needs (a dataset path, a model id), passed through to
    # evaluations by name; everything else but a short allow-list (PATH, LANG, ...) is withheld.
    env: tuple[str, ...] = ()
    # Models the evaluator asks (by name): the run's `evaluator_models:` config entries give each an
    # endpoint, and the evaluator reaches them through the engine (evoengine.evaluation.models);
    # a name the config leaves out is unavailable, and the evaluator falls back as it sees fit.
    evaluator_models: tuple[str, ...] = ()
    # Files or folders outside the problem's folder that the evaluator reads (a dataset, the
    # problems a self-evolution suite searches), shown read-only in the sandbox's filesystem
    # view; relative paths are taken from the problem's folder.
    reads: tuple[str, ...] = ()
    # Set by `load_problem`: the folder holding problem.py and the seed.
    root: Path = field(default=Path("."), compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ProblemError(f"problem {self.name!r}: kind must be one of {KINDS} (got {self.kind!r})")
        if self.language not in COMMENT_PREFIX:
            raise ProblemError(
                f"problem {self.name!r}: unknown language {self.language!r}; known: {', '.join(sorted(COMMENT_PREFIX))}"
            )
        self.features = tuple(self.features)
        self.env, self.evaluator_models, self.reads = (  # each a name, or several
            (names,) if isinstance(names, str) else tuple(map(str, names))
            for names in (self.env, self.evaluator_models, self.reads)
        )
        if self.timeout_s <= 0 or self.memory_mb <= 0:
            raise ProblemError(f"problem {self.name!r}: timeout_s and memory_mb must be positive")
        if not isinstance(self.rechecks, int) or self.rechecks < 0:
            raise ProblemError(f"problem {self.name!r}: rechecks must be a whole number >= 0 (got {self.rechecks!r})")

    @property
    def comment(self) -> str:
        return COMMENT_PREFIX[self.language]

    @property
    def initial_path(self) -> Path:
        return self.root / self.initial

    @property
    def suffix(self) -> str:
        """File suffix a candidate is written with, taken from the seed file."""
        return Path(self.initial).suffix or ".txt"

    @property
    def folder(self) -> bool:
        """True when a candidate is a folder of files (the seed is a folder)."""
        return self.initial_path.is_dir()

    def file_comment(self, name: str) -> str:
        """The comment syntax of file `name`'s EVOLVE-BLOCK markers."""
        return COMMENT_PREFIX[language_of(name)]

    def seed_text(self) -> str:
        """The seed: the file's text, or a folder's files as one text (`evoengine.files`)."""
        path = self.initial_path
        try:
            return join_files(read_folder(path)) if path.is_dir() else path.read_text()
        except (OSError, FilesError) as exc:
            raise ProblemError(f"{self.root / 'problem.py'}: cannot read the seed {path}: {exc}") from exc


def safe_text(text: str) -> str:
    """`text` as UTF-8 can carry it: lone surrogates (which a model reply or a candidate's
    output may hold, and which SQLite, files and browsers refuse) written as `\\udXXX` escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


@dataclass
class EvalResult:
    """How a candidate scored. Higher `score` is better; an invalid result says why in `feedback`.
    `artifacts[BEHAVIOUR]`, when set, fingerprints what the candidate did (see `BEHAVIOUR`)."""

    score: float | None = None
    valid: bool = True
    metrics: dict[str, float] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)
    feedback: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)
    # Optional per-instance scores (test case -> score), used by Pareto-per-instance selection.
    instances: dict[str, float] = field(default_factory=dict)

    @classmethod
    def invalid(cls, reason: str, **metrics: float) -> EvalResult:
        return cls(score=None, valid=False, feedback=reason, metrics=dict(metrics))

    @classmethod
    def coerce(cls, value: Any) -> EvalResult:
        """Turn what an evaluator returned into an `EvalResult`, or an invalid one saying why."""
        if isinstance(value, EvalResult):
            data = asdict(value)
        elif isinstance(value, Mapping):
            data = dict(value)
        else:
            return cls.invalid(f"evaluate() returned {type(value).__name__}, expected EvalResult or dict")
        unknown = set(data) - {"score", "valid", "metrics", "features", "feedback", "artifacts", "instances"}
        if unknown:
            return cls.invalid(f"evaluate() returned unknown keys {sorted(unknown)}")
        valid = data.get("valid", True)
        if not isinstance(valid, bool) and valid not in (0, 1):
            return cls.invalid(f"evaluate() returned valid={valid!r}; it must be True or False")
        valid = bool(valid)
        try:
            score = data.get("score")
            score = None if score is None else float(score)
            metrics = {safe_text(str(k)): float(v) for k, v in dict(data.get("metrics") or {}).items()}
            features = {safe_text(str(k)): float(v) for k, v in dict(data.get("features") or {}).items()}
            feedback = safe_text(str(data.get("feedback") or ""))
            artifacts = {safe_text(str(k)): safe_text(str(v)) for k, v in dict(data.get("artifacts") or {}).items()}
            instances = {safe_text(str(k)): float(v) for k, v in dict(data.get("instances") or {}).items()}
        except (TypeError, ValueError) as exc:
            return cls.invalid(f"evaluate() returned a malformed result: {exc}")
        if valid and score is None:
            return cls.invalid("evaluate() returned a valid result without a score")
        if score is not None and not math.isfinite(score):
            return cls.invalid(f"evaluate() returned a non-finite score ({score})")
        bad = [k for k, v in {**metrics, **features, **instances}.items() if not math.isfinite(v)]
        if bad:
            return cls.invalid(f"evaluate() returned non-finite metrics/features: {bad}")
        return cls(score, valid, metrics, features, feedback, artifacts, instances)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedProblem:
    """A problem module once imported: the spec, its evaluator and where it came from."""

    problem: Problem
    evaluate: Callable[[str], Any]
    path: Path  # the problem.py file
    module: Any


def resolve_problem_path(spec: str | Path) -> Path:
    """Find `problem.py` for a folder, a file, or the name of a bundled problem."""
    candidates = [Path(spec)]
    if not str(spec).endswith(".py") and "/" not in str(spec):
        candidates += [Path.cwd() / "problems" / str(spec), _repo_root() / "problems" / str(spec)]
    for c in candidates:
        if c.is_dir() and (c / "problem.py").is_file():
            return (c / "problem.py").resolve()
        if c.is_file() and c.suffix == ".py":
            return c.resolve()
    names = [folder.name for folder in bundled_problems()]
    near = difflib.get_close_matches(str(spec), names, n=1, cutoff=0.5) if "/" not in str(spec) else []
    hint = f"; did you mean {near[0]!r}?" if near else f" (bundled: {', '.join(names)})" if names else ""
    raise ProblemError(
        f"no problem found at {spec!r}: give a folder holding problem.py, a problem.py file, "
        f"or a bundled name (see `evoengine problems`){hint}"
    )


def import_file(path: Path, prefix: str) -> Any:
    """Import the Python file at `path` as a fresh module named after its resolved path.
    Whatever its code raises propagates, and the half-made module is forgotten."""
    name = f"{prefix}_{path.parent.name}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_problem(spec: str | Path) -> LoadedProblem:
    """Import a problem file and check its contract; errors name the file and the fix.
    (`evoengine.peers.open_problem` also takes peers' problem folders as they are.)"""
    path = resolve_problem_path(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    try:
        module = import_file(path, "evoengine_problem")
    except ProblemError as exc:
        raise ProblemError(f"{path}: {exc}") from exc
    except BaseException as exc:  # a broken problem file must not look like our crash
        raise ProblemError(f"{path}: importing it failed with {type(exc).__name__}: {exc}") from exc
    problem = getattr(module, "problem", None)
    if not isinstance(problem, Problem):
        raise ProblemError(f"{path}: define a module-level `problem = Problem(...)`")
    evaluate = getattr(module, "evaluate", None)
    if not callable(evaluate):
        raise ProblemError(f"{path}: define a function `evaluate(candidate_path)`")
    problem.root = path.parent
    if not problem.initial_path.exists():
        raise ProblemError(
            f"{path}: seed file {problem.initial!r} not found beside it (a file, or a folder of several files)"
        )
    if problem.vocabulary and not (problem.root / problem.vocabulary).is_file():
        raise ProblemError(f"{path}: vocabulary file {problem.vocabulary!r} not found beside it")
    return LoadedProblem(problem, evaluate, path, module)


def bundled_problems() -> list[Path]:
    """Folders under `problems/` (current directory first, then the repository's)."""
    seen: dict[str, Path] = {}
    for base in (Path.cwd() / "problems", _repo_root() / "problems"):
        if base.is_dir():
            for d in sorted(base.iterdir()):
                if (d / "problem.py").is_file():
                    seen.setdefault(d.name, d)
    return list(seen.values())


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
