"""Typed, validated run configuration.

A config is built in layers: the defaults below, then a YAML preset (`configs/<name>.yaml`
or a path, which may `extends:` another preset), then `--set key.path=value` overrides.
Every key is documented here, does something, and a typo is an error that names the key's
path and the nearest valid key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Budget(Section):
    """When a run stops. Any limit left empty is not applied; counts include the seed."""

    candidates: int | None = Field(200, ge=1, description="evaluated candidates in the run")
    wall_time_s: float | None = Field(None, gt=0, description="seconds of this process's run time")
    cost_usd: float | None = Field(None, gt=0, description="total model spend in US dollars")


class Concurrency(Section):
    proposals: int = Field(2, ge=1, description="model requests out at once (one more proposal waits ready)")
    evaluations: int = Field(2, ge=1, description="evaluations running at once, one sandbox each")
    deterministic: bool = Field(
        False,
        description="one candidate at a time (propose, evaluate, admit): slower, but with "
        "deterministic evaluators and models the run is a function of its seed",
    )


class Evaluation(Section):
    """Sandbox limits; `timeout_s`/`memory_mb` default to the problem's own values."""

    backend: Literal["local", "ray"] = "local"
    timeout_s: float | None = Field(None, gt=0)
    memory_mb: int | None = Field(None, gt=0)
    max_processes: int = Field(64, ge=1, description="processes a candidate may have at once")
    max_output_kb: int = Field(256, ge=1, description="captured stdout+stderr kept per candidate")
    max_file_mb: int = Field(64, ge=1, description="largest file a candidate may write")
    disk_mb: int = Field(
        512, ge=1, description="all an evaluation may write (its folder, /tmp, /dev/shm, /var/tmp; kept in memory)"
    )
    network: bool = Field(False, description="allow network access from candidates")
    gate: bool = Field(
        True,
        description="when the problem defines minibatch(candidate_path), score each child on it "
        "first and evaluate in full only children that beat their parent's minibatch score (the "
        "others are admitted invalid, with the reason); no effect on problems without minibatch",
    )


class Ray(Section):
    """The `ray` evaluation backend (evaluation.backend: ray); see docs/ray.md."""

    address: str | None = Field(
        None, description="Ray cluster address (host:port, 'auto' or ray://host:port); None starts a private local Ray"
    )
    num_cpus: float = Field(1.0, gt=0, description="CPUs Ray reserves for each evaluation task")
    num_gpus: float = Field(0.0, ge=0, description="GPUs Ray reserves for each evaluation task")
    memory_mb: int | None = Field(
        None,
        gt=0,
        description="memory Ray reserves for each evaluation task (scheduling only; the sandbox limit is evaluation.memory_mb)",
    )
    max_retries: int = Field(2, ge=0, description="re-runs of an evaluation whose node died")


class Model(Section):
    """One model endpoint. Prices are US dollars per million tokens."""

    name: str
    model: str | None = Field(None, description="model id sent to the endpoint (default: name)")
    backend: Literal["openai", "vllm"] = "openai"
    base_url: str | None = None
    api_key_env: str | None = Field("OPENAI_API_KEY", description="env var holding the key")
    temperature: float = Field(0.8, ge=0, le=2)
    max_tokens: int = Field(4096, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0)
    price_in: float = Field(0.0, ge=0)
    price_out: float = Field(0.0, ge=0)

    @property
    def model_id(self) -> str:
        return self.model or self.name


class Operators(Section):
    """How children are made. diff/full/crossover weigh the model operators."""

    diff: float = Field(0.6, ge=0)
    full: float = Field(0.3, ge=0)
    crossover: float = Field(0.1, ge=0)
    offline_arm: bool = Field(False, description="offer the offline operators as a bandit arm beside models")
    repair_attempts: int = Field(
        1, ge=0, description="times a model reply that cannot be parsed or applied is sent back with the error"
    )


class Bandit(Section):
    kind: Literal["ucb1", "thompson", "uniform"] = "ucb1"
    cost_aware: bool = Field(False, description="reward improvement per dollar spent")
    exploration: float = Field(1.0, ge=0, description="UCB exploration constant")


class Islands(Section):
    count: int = Field(4, ge=1)
    population: int = Field(200, ge=1, description="cap on each island's population")
    topology: Literal["ring", "full", "random", "isolated"] = "ring"
    migration_interval: int = Field(50, ge=1, description="admissions between migrations")
    migration_size: int = Field(2, ge=0, description="top candidates sent to each neighbour")
    reset_interval: int | None = Field(None, ge=1, description="admissions between resets (None: never)")
    reset_fraction: float = Field(0.5, gt=0, lt=1, description="share of weakest islands reset")


class Elites(Section):
    enabled: bool = True
    kind: Literal["grid", "cvt"] = "grid"
    builtin: list[Literal["length", "complexity"]] = Field(
        default_factory=lambda: ["length"], description="built-in descriptors added to the problem's"
    )
    bins: int = Field(10, ge=1, description="bins per built-in descriptor")
    cells: int = Field(64, ge=2, description="CVT cells")
    qd_offset: float | None = Field(
        None, description="score subtracted from each elite in qd_score (None: lowest valid score seen)"
    )


class Selection(Section):
    """Parent selection: a mix of exploitation, exploration and elites."""

    strategy: Literal["power_law", "weighted", "tournament", "uniform", "hill_climb", "pareto"] = Field(
        "power_law",
        description="exploit strategy: power_law (p ∝ rank^-alpha), weighted (sigmoid of the "
        "score's distance from the median, damped by child count), tournament, uniform (a random "
        "MAP-Elites cell), hill_climb (the island's best), pareto (GEPA's per-instance Pareto "
        "front: members best on at least one of the evaluator's `instances`, undominated, drawn "
        "∝ instances won; the island's best when no member reports instances)",
    )
    exploit: float = Field(0.7, ge=0, description="share of parents from `strategy` on the island")
    explore: float = Field(0.2, ge=0, description="share of parents uniform on the island")
    elites: float = Field(0.1, ge=0, description="share of parents from a random MAP-Elites cell")
    alpha: float = Field(1.0, gt=0, description="power-law exponent over rank")
    tournament: int = Field(4, ge=2)
    sharpness: float = Field(10.0, gt=0, description="λ of `weighted`: sigmoid(λ·(score − median)/MAD)")
    top_inspirations: int = Field(2, ge=0)
    diverse_inspirations: int = Field(2, ge=0)


class Novelty(Section):
    enabled: bool = True
    embedder: Literal["ngram", "sentence-transformers", "openai"] = "ngram"
    embedding_model: str | None = Field(None, description="model for sentence-transformers/openai embedders")
    threshold: float = Field(
        1.0,
        gt=0,
        le=1,
        description="cosine similarity above which a child is a near-duplicate. 1.0 refuses only copies "
        "(the engine always refuses programs equal up to formatting and comments): a one-constant edit "
        "is a real change but looks ~0.999 similar to character n-grams. With a semantic embedder or a "
        "judge, 0.95-0.99 rejects rewrites that change nothing that matters.",
    )
    max_retries: int = Field(3, ge=0, description="new proposals asked for after a rejection")
    judge: str | None = Field(None, description="name of a configured model asked about borderline cases")
    window: int = Field(256, ge=1, description="recent candidates per island a child is compared with")
    base_url: str | None = Field(None, description="endpoint of the openai embedder (None: the client's default)")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="env var holding the openai embedder's key")


class Config(Section):
    seed: int = 0
    budget: Budget = Field(default_factory=Budget)
    concurrency: Concurrency = Field(default_factory=Concurrency)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    ray: Ray = Field(default_factory=Ray)
    models: list[Model] = Field(default_factory=list)
    operators: Operators = Field(default_factory=Operators)
    bandit: Bandit = Field(default_factory=Bandit)
    islands: Islands = Field(default_factory=Islands)
    elites: Elites = Field(default_factory=Elites)
    selection: Selection = Field(default_factory=Selection)
    novelty: Novelty = Field(default_factory=Novelty)
    harness: str | None = Field(None, description="path to a harness module replacing the built-in one")
    templates: str | None = Field(None, description="folder of prompt templates overriding the harness's")
    replay: str | None = Field(None, description="run directory whose recorded model replies are replayed")

    @model_validator(mode="after")
    def _check(self) -> Config:
        names = [m.name for m in self.models]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"models: names must be unique (repeated: {sorted(dupes)})")
        if self.novelty.judge and self.novelty.judge not in names:
            raise ValueError(f"novelty.judge: {self.novelty.judge!r} is not one of models {names}")
        return self

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------- loading


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def find_preset(kind: str, name: str, near: Path | None = None) -> Path:
    """`name` as a path (relative ones also beside the file `near` that names it), or
    `<kind>/<name>.yaml` in the current directory or the repository."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"a {kind} preset must be named by a preset name or a file path (got {name!r})"
            + (f" in {near}" if near else "")
        )
    direct = Path(name)
    if direct.suffix in (".yaml", ".yml") or "/" in name:
        for path in ([near.parent / direct] if near is not None and not direct.is_absolute() else []) + [direct]:
            try:
                if path.is_file():
                    return path
            except (OSError, ValueError):  # a name too long or with a NUL byte names no file
                pass
        raise ConfigError(f"{kind} file {name} does not exist" + (f" (named in {near})" if near else ""))
    for base in (Path.cwd() / kind, repo_root() / kind):
        path = base / f"{name}.yaml"
        try:
            if path.is_file():
                return path
        except (OSError, ValueError):
            pass
    known = sorted({p.stem for b in (Path.cwd() / kind, repo_root() / kind) if b.is_dir() for p in b.glob("*.yaml")})
    near_name = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean {near_name[0]!r}?" if near_name else ""
    raise ConfigError(f"no {kind} preset named {name!r}{hint} (known presets: {', '.join(known) or 'none'})")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc}); is it really a YAML config?") from exc
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _layer(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset file with its `extends:` chain and `islands: <preset>` resolved."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: `extends` loops back to itself")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    base = _layer(find_preset("configs", parent, near=path), (*seen, path.resolve())) if parent is not None else {}
    if isinstance(data.get("islands"), str):
        data["islands"] = _read_yaml(find_preset("islands", data["islands"], near=path))
    return _merge(base, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: write it as key.path=value, e.g. --set budget.candidates=500")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _apply_override(data: dict[str, Any], path: list[str], value: Any, text: str) -> None:
    if path[0] == "islands" and len(path) == 1 and isinstance(value, str):
        value = _read_yaml(find_preset("islands", value))
    node: Any = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, list):
            try:
                index = int(part)
                node[index]
            except (ValueError, IndexError):
                where = ".".join(path[:depth])
                raise ConfigError(
                    f"--set {text}: {where} is a list of {len(node)} item(s); {part!r} is not one of "
                    f"its indexes"
                    + (f" (0 to {len(node) - 1})" if node else f"; set the whole list: --set {where}=[...]")
                ) from None
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:  # absent, or left empty in a YAML file
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(f"--set {text}: {'.'.join(path[:depth])} is not a section")


def _known_keys(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _section_at(loc: tuple[Any, ...]) -> type[BaseModel]:
    model: type[BaseModel] = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            break
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        candidates = [ann, *(inner or ())]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            break
        model = nxt
    return model


def explain(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            section = _section_at(loc[:-1])
            near = difflib.get_close_matches(str(loc[-1]), _known_keys(section), n=1, cutoff=0.5)
            hint = f"; did you mean {'.'.join(str(p) for p in (*loc[:-1], near[0]))!r}?" if near else ""
            lines.append(f"unknown key {where!r}{hint} (valid here: {', '.join(_known_keys(section))})")
        else:
            lines.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
    return f"invalid config ({source}):\n  " + "\n  ".join(lines)


def load_config(
    preset: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
    base_source: str = "the saved config",
) -> Config:
    """Build a `Config`: defaults < `base` (e.g. a resumed run's) < preset < overrides.
    `base_source` names where `base` came from in error messages (e.g. a run's config.yaml)."""
    if base is not None and not isinstance(base, dict):
        raise ConfigError(f"{base_source}: expected a mapping of keys at the top level (got {type(base).__name__})")
    data: dict[str, Any] = dict(base or {})
    sources = [base_source] if base is not None else []
    if preset is not None:
        path = find_preset("configs", str(preset))
        data = _merge(data, _layer(path))
        sources.append(str(path))
    elif base is None:
        default = repo_root() / "configs" / "default.yaml"
        if default.is_file():
            data = _merge(data, _layer(default))
            sources.append(str(default))
    for text in overrides:
        path_, value = parse_override(text)
        _apply_override(data, path_, value, text)
        sources.append(f"--set {text}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(explain(exc, ", ".join(sources) or "defaults")) from None
