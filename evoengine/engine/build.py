"""The run's parts, built from its config: the proposer (models under the harness, or the
offline operators), the evaluator pool, and the novelty filter with its model judge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..errors import ConfigError, ModelError
from ..novelty import Novelty
from ..operators import Proposer
from ..problem import LoadedProblem, Problem
from ..records import ModelCall

if TYPE_CHECKING:
    from ..llm.proxy import ModelProxy


def build_proposer(config: Config, loaded: LoadedProblem, harness: Any = None) -> Proposer:
    """Models (with the offline operators as an arm if asked), or the offline operators alone;
    either way under the harness's policy (`harness`, or the one the config names)."""
    from ..harness import load_harness
    from ..operators.offline import OfflineProposer
    from ..operators.text import TextProposer

    harness = harness if harness is not None else load_harness(config)
    if loaded.problem.folder:  # several files: each child changes one, with its language's operators
        from ..operators.folder import FolderProposer

        offline: Proposer = FolderProposer(OfflineProposer(policy=getattr(harness, "offline", None)), TextProposer())
    elif loaded.problem.language == "python":
        offline = OfflineProposer(policy=getattr(harness, "offline", None))
    else:  # prompts and other text: line operators (the harness's offline policy is Python-only)
        offline = TextProposer()
    if not config.models:  # (a replay of such a run answers only its evaluator models' calls from the record)
        return offline
    from ..operators.llm import ModelProposer

    return ModelProposer(
        config, loaded.problem, offline=offline if config.operators.offline_arm else None, harness=harness
    )


def check_evaluator_models(config: Config, problem: Problem) -> None:
    """A `ConfigError` for `evaluator_models:` entries the problem does not ask for, or on Ray."""
    unknown = [m.name for m in config.evaluator_models if m.name not in problem.evaluator_models]
    if unknown:
        asks = ", ".join(problem.evaluator_models) or "none"
        raise ConfigError(
            f"evaluator_models: problem {problem.name!r} asks for no model named {', '.join(map(repr, unknown))} "
            f"(it asks for: {asks}; Problem.evaluator_models in its problem.py)"
        )
    if config.evaluator_models and config.evaluation.backend == "ray":
        raise ConfigError("evaluator_models: not available with evaluation.backend: ray (the proxy is local)")


def build_model_proxy(config: Config, problem: Problem) -> ModelProxy | None:
    """The run's loopback proxy to the models its evaluator asks (None when it configures none)."""
    check_evaluator_models(config, problem)
    if not config.evaluator_models:
        return None
    from ..llm.proxy import ModelProxy  # here: most runs have no evaluator models

    return ModelProxy(config.evaluator_models, replay=config.replay, concurrency=config.concurrency.proposals)


def make_pool(
    loaded: LoadedProblem, config: Config, run_dir: Path | None = None, models: Any = None, early: Any = None
) -> Any:
    """The evaluator pool the config asks for: local sandboxes, or Ray tasks (same contract);
    `models` is the evaluator models' proxy, if the run has one; `early` a first local worker
    launched before the run was known (evaluation/early.py), which the local pool takes if it
    fits (whoever launched it closes it otherwise)."""
    from ..evaluation import EvaluatorPool, Limits

    limits = Limits.from_config(loaded.problem, config.evaluation)
    if config.evaluation.backend == "ray":
        from ..evaluation.ray_backend import RayPool

        return RayPool(loaded.path, config.concurrency.evaluations, limits, config.ray, run_dir=run_dir)
    hide = (run_dir,) if run_dir else ()
    return EvaluatorPool(loaded.path, config.concurrency.evaluations, limits, hide=hide, models=models, early=early)


JUDGE_SYSTEM = (
    "You compare two candidate programs. Answer NOVEL if the new one does something meaningfully "
    "different from the existing one (another algorithm, structure or idea), or NOT_NOVEL if it is "
    "essentially the same with cosmetic or trivial changes. Answer with that one word."
)


def judge_says_novel(reply: str) -> bool:
    """Read a judge's verdict however it is spelled (NOT_NOVEL, not novel, Not-Novel...)."""
    words = " ".join(reply.upper().replace("_", " ").replace("-", " ").split())
    return "NOVEL" in words and "NOT NOVEL" not in words


def build_novelty(
    config: Config, problem: Problem, proposer: Proposer, record_call: Callable[[ModelCall], None]
) -> Novelty | None:
    """The novelty filter, with the model `novelty.judge` names asked about near-duplicates
    (its calls recorded and paid like any other)."""
    if not config.novelty.enabled:
        return None
    name, models = config.novelty.judge, getattr(proposer, "pool", None)
    judge: Callable[[str, str], Awaitable[bool]] | None = None
    if name and models is not None:

        async def judge(child: str, nearest: str) -> bool:
            call = await models[name].chat(
                [
                    {"role": "system", "content": JUDGE_SYSTEM},
                    {"role": "user", "content": f"Existing candidate:\n{nearest}\n\nNew candidate:\n{child}"},
                ],
                temperature=0.0,
                max_tokens=16,
                purpose="judge",
            )
            record_call(call)
            if call.error:
                raise ModelError(f"novelty judge {name}: {call.error}")
            return judge_says_novel(call.reply or "")

    return Novelty(config.novelty, judge=judge, language=problem.language, comment=problem.comment)
