"""Bringing peers' problems to evoengine: what `evoengine run` needs to run one as it is, and
the one-step conversion into a native problem folder.

- `prepare_run(problem, evaluator, preset)`: the problem spec to load (OpenEvolve's
  `initial_program.py --evaluator evaluator.py` pair included) and the `--set` overrides mapped
  from the peer's config file (OpenEvolve's config.yaml, ShinkaEvolve's shinka.yaml).
- `port(source, out)`, also `python -m evoengine.porting SOURCE -o problems/NAME`: copies the
  peer's folder and writes a native `problem.py` calling their evaluator, plus `evoengine.yaml`,
  a preset holding the mapped config.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import EvoError, ProblemError
from .peers import PeerFolder, find_peer, load_peer

log = logging.getLogger("evoengine.porting")

IGNORED = shutil.ignore_patterns("__pycache__", ".git", "results_*", "openevolve_output", "*.sqlite")


def prepare_run(
    problem: str | Path, evaluator: str | Path | None = None, preset: str | None = None
) -> tuple[Any, list[str]]:
    """What `evoengine run PROBLEM [--evaluator E] [-c PRESET]` loads, and the overrides mapped
    from the peer's config file (none for a native problem, nor when a preset is given)."""
    found = pair(problem, evaluator) if evaluator is not None else find_peer(problem)
    if found is None:
        return problem, []
    spec: Any = problem
    if evaluator is not None:
        spec = found.evaluator if find_peer(found.evaluator) == found else write_problem(found, cache_folder(found))
    if found.config is None:
        return spec, []
    if preset is not None:
        log.info("%s is not mapped: the preset %s is used instead", found.config, preset)
        return spec, []
    return spec, [f"{key}={json.dumps(value)}" for key, value in mapped_config(found).items()]


def pair(seed: str | Path, evaluator: str | Path) -> PeerFolder:
    """OpenEvolve's pair of files, wherever they are; config.yaml beside the evaluator is theirs."""
    seed, evaluator = Path(seed).resolve(), Path(evaluator).resolve()
    for path, what in ((seed, "seed program"), (evaluator, "evaluator")):
        if not path.is_file():
            raise ProblemError(f"the {what} {path} does not exist")
    config = evaluator.parent / "config.yaml"
    return PeerFolder("openevolve", evaluator, seed, config if config.is_file() else None)


def cache_folder(found: PeerFolder) -> Path:
    """Where the problem file of a pair outside the folder convention is kept, for runs and resumes."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "evoengine" / "peers"
    digest = hashlib.sha1(f"{found.seed}\n{found.evaluator}".encode()).hexdigest()[:10]
    return base / f"{found.seed.parent.name}-{digest}"


def write_problem(found: PeerFolder, folder: Path, *, beside: bool = False) -> Path:
    """Write `folder/problem.py`, a native problem calling their evaluator; `beside` when their
    files were copied into `folder` (then it names them relative to itself)."""
    loaded = load_peer(found)  # imports their evaluator: a broken one fails here
    here = "\nHERE = Path(__file__).resolve().parent\n" if beside else ""
    if beside:
        evaluator, initial = f"HERE / {_py(found.evaluator.name)}", found.seed.name
    else:
        evaluator, initial = f"Path({_py(str(found.evaluator))})", str(found.seed)
    if found.shape == "openevolve":
        adapter = loaded.evaluate
        call = (
            f"OpenEvolveEvaluator(\n    {evaluator},\n    cascade={adapter.cascade!r},\n"
            f"    thresholds={_py(list(adapter.thresholds))},\n"
            f"    feature_dimensions={_py(list(adapter.feature_dimensions))},\n)"
        )
    else:
        call = f"ShinkaEvaluator({evaluator})"
    name = {"openevolve": "OpenEvolve", "shinka": "ShinkaEvolve"}[found.shape]
    problem = loaded.problem
    text = f'''"""{problem.name}: {name}'s problem folder as a native evoengine problem.

Written by `python -m evoengine.porting`. evaluate() runs their evaluator ({found.evaluator.name})
unchanged, in the sandboxed evaluation process. Like most evaluators of theirs it imports the
candidate into its own process, so candidate code could reach its own score: docs/porting.md
shows how to call the candidate through `call_candidate` instead.
"""

from pathlib import Path

from evoengine import Problem
from evoengine.peers import {call.split("(")[0]}
{here}
problem = Problem(
    name={_py(problem.name)},
    description={_py(problem.description)},
    initial={_py(initial)},
    language={_py(problem.language)},
    kind={_py(problem.kind)},
    timeout_s={problem.timeout_s!r},
    memory_mb={problem.memory_mb!r},
)
evaluate = {call}
'''
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "problem.py").write_text(text)
    return folder / "problem.py"


def _py(value: Any) -> str:
    """A Python literal of a string or a list, quoted as the formatter would."""
    return json.dumps(value, ensure_ascii=False)


def port(source: str | Path, out: str | Path, evaluator: str | Path | None = None) -> list[Path]:
    """Copy a peer's folder to `out` and make it a native problem; returns the files written."""
    found = pair(source, evaluator) if evaluator is not None else find_peer(source)
    if found is None:
        raise ProblemError(
            f"{source} is not a peer's problem folder: OpenEvolve's holds evaluator.py and "
            "initial_program.<ext>, ShinkaEvolve's evaluate.py and initial.<ext> (and no problem.py)"
        )
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ProblemError(f"{out} already exists and is not empty; name a new folder with -o")
    shutil.copytree(found.evaluator.parent, out, ignore=IGNORED, dirs_exist_ok=True)
    if not (out / found.seed.name).is_file():
        shutil.copy2(found.seed, out / found.seed.name)
    written = [write_problem(found, out, beside=True)]
    mapped = mapped_config(found) if found.config else {}
    if mapped:
        preset: dict[str, Any] = {"extends": "default"}
        for key, value in mapped.items():
            *sections, last = key.split(".")
            node = preset
            for section in sections:
                node = node.setdefault(section, {})
            node[last] = value
        header = f"# Mapped from {found.config}; run with: evoengine run {out} -c {out / 'evoengine.yaml'}\n"
        (out / "evoengine.yaml").write_text(header + yaml.safe_dump(preset, sort_keys=False))
        written.append(out / "evoengine.yaml")
    return written


# ---------------------------------------------------------------- their config -> ours


class _Settings:
    """Their config, read by dotted path; remembers which paths were read."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data, self.read = data, set[str]()

    def get(self, path: str, default: Any = None) -> Any:
        self.read.add(path)
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, dict) or node.get(part) is None:
                return default
            node = node[part]
        return node

    def unread(self) -> list[str]:
        def leaves(node: Any, prefix: str) -> list[str]:
            if not isinstance(node, dict) or not node:
                return [prefix]
            return [leaf for k, v in node.items() for leaf in leaves(v, f"{prefix}.{k}" if prefix else str(k))]

        return [p for p in leaves(self.data, "") if not any(p == r or p.startswith(r + ".") for r in self.read)]


def mapped_config(found: PeerFolder) -> dict[str, Any]:
    """evoengine's config keys (dotted) from the peer's config file; logs what was left out."""
    settings = _Settings(found.settings())
    mapped = _openevolve(settings) if found.shape == "openevolve" else _shinka(settings)
    log.info("mapped from %s: %s", found.config, ", ".join(mapped) or "nothing")
    if settings.unread():
        log.info("not mapped (no evoengine equivalent): %s", ", ".join(settings.unread()))
    return mapped


# An OpenEvolve llm entry's keys, as ours.
MODEL_KEYS = {"name": "name", "api_base": "base_url", "temperature": "temperature", "max_tokens": "max_tokens",
              "timeout": "timeout_s", "retries": "max_retries"}  # fmt: skip


def _openevolve(s: _Settings) -> dict[str, Any]:
    for used in ("language", "file_suffix", "prompt.system_message", "database.feature_dimensions"):
        s.get(used)  # read by the evaluator adapter (evoengine.peers), like these:
    for used in ("timeout", "cascade_evaluation", "cascade_thresholds", "memory_limit_mb"):
        s.get(f"evaluator.{used}")
    out: dict[str, Any] = {}
    if s.get("max_iterations") is not None:  # their iterations are children; ours count the seed
        out["budget.candidates"] = int(s.get("max_iterations")) + 1
    copy = {
        "random_seed": "seed",
        "database.num_islands": "islands.count",
        "database.population_size": "islands.population",
        "database.migration_interval": "islands.migration_interval",
        "database.exploitation_ratio": "selection.exploit",
        "database.exploration_ratio": "selection.explore",
        "database.elite_selection_ratio": "selection.elites",
        "evaluator.parallel_evaluations": "concurrency.evaluations",
    }
    out.update({ours: s.get(theirs) for theirs, ours in copy.items() if s.get(theirs) is not None})
    if s.get("diff_based_evolution") is False:
        out["operators.diff"] = 0.0
    shared = {k: s.get(f"llm.{k}") for k in ("api_base", "api_key", "temperature", "max_tokens", "timeout", "retries")}
    entries = s.get("llm.models") or [{"name": s.get(f"llm.{k}_model")} for k in ("primary", "secondary")]
    models = []
    for entry in entries:
        theirs = {**shared, **{k: v for k, v in entry.items() if v is not None}}
        if not theirs.get("name"):
            continue
        model = {ours: theirs.get(k) for k, ours in MODEL_KEYS.items()}
        key = str(theirs.get("api_key") or "")
        if key.startswith("${") and key.endswith("}"):
            model["api_key_env"] = key[2:-1]
        elif key:
            log.warning("%s: a literal llm api_key is not carried over; put it in OPENAI_API_KEY", theirs["name"])
        models.append({k: v for k, v in model.items() if v is not None})
    if models:
        out["models"] = models
    return out


def _shinka(s: _Settings) -> dict[str, Any]:
    evo = "evo_config" if "evo_config" in s.data else "evo"
    db = "db_config" if "db_config" in s.data else "db"
    for used in ("task_sys_msg", "language", "init_program_path"):
        s.get(f"{evo}.{used}")  # read by the evaluator adapter (evoengine.peers)
    s.get("job_config.time" if "job_config" in s.data else "job.time")
    copy = {
        f"{evo}.num_generations": "budget.candidates",
        f"{evo}.max_api_costs": "budget.cost_usd",
        f"{db}.num_islands": "islands.count",
        f"{db}.migration_interval": "islands.migration_interval",
        f"{db}.parent_selection_lambda": "selection.sharpness",
        f"{db}.exploitation_alpha": "selection.alpha",
        "max_evaluation_jobs": "concurrency.evaluations",
        "max_proposal_jobs": "concurrency.proposals",
    }
    out: dict[str, Any] = {ours: s.get(theirs) for theirs, ours in copy.items() if s.get(theirs) is not None}
    strategy = {"weighted": "weighted", "power_law": "power_law", "beam_search": "hill_climb"}
    if s.get(f"{db}.parent_selection_strategy") in strategy:
        out["selection.strategy"] = strategy[s.get(f"{db}.parent_selection_strategy")]
    kinds = s.get(f"{evo}.patch_types") or []
    weights = s.get(f"{evo}.patch_type_probs") or [1.0] * len(kinds)
    ours = {"diff": "diff", "full": "full", "cross": "crossover"}
    if kinds and set(kinds) <= set(ours):
        out.update({f"operators.{op}": 0.0 for op in ours.values()})
        out.update({f"operators.{ours[k]}": float(w) for k, w in zip(kinds, weights, strict=False)})
    max_tokens = s.get(f"{evo}.llm_kwargs.max_tokens")
    models = [
        {"name": name, **({"max_tokens": max_tokens} if max_tokens else {})}
        for name in s.get(f"{evo}.llm_models") or []
    ]
    if models:
        out["models"] = models
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evoengine.porting", description="Make a peer's problem folder a native evoengine problem."
    )
    parser.add_argument("source", help="OpenEvolve's or ShinkaEvolve's problem folder (or OpenEvolve's seed file)")
    parser.add_argument("--evaluator", help="OpenEvolve's evaluator file, when SOURCE is the seed file")
    parser.add_argument("-o", "--output", required=True, help="the new problem folder, e.g. problems/NAME")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="evoengine: %(message)s", stream=sys.stderr)
    try:
        written = port(args.source, args.output, args.evaluator)
    except EvoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(map(str, written)))
    preset = f" -c {written[1]}" if len(written) > 1 else ""
    print(f"run it with: evoengine run {args.output}{preset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
