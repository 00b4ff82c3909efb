"""The run configuration's sections: typed, validated, every key documented.

A config is built in layers: the defaults below, then a YAML preset (`configs/<name>.yaml`
or a path, which may `extends:` another preset), then `--set key.path=value` overrides.
Every key is documented here, does something, and a typo is an error that names the key's
path and the nearest valid key.
"""

from __future__ import annotations

from typing import Literal

from .fields import Field, Section


class Budget(Section):
    """When a run stops. Any limit left empty is not applied; counts include the seed."""

    candidates: int | None = Field(200, ge=1, description="evaluated candidates in the run")
    wall_time_s: float | None = Field(None, gt=0, description="seconds of this process's run time")
    cost_usd: float | None = Field(None, gt=0, description="total model spend in US dollars")
    target_score: float | None = Field(None, description="stop once the best score reaches this (stop reason: target)")
    invalid_streak: int | None = Field(
        20,
        ge=1,
        description="stop after this many invalid results in a row that share one reason (an evaluator "
        "failing every child, say on an import error); None: never",
    )
    silence_s: float | None = Field(
        None,
        gt=0,
        description="stop when no model has answered for this long while proposals waited on one "
        "(None: 3 x the longest model timeout_s)",
    )


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
        "first and evaluate in full only children that do not fall below their parent's minibatch "
        "score (the others are admitted screened, with the reason); no effect on problems without minibatch",
    )
    gate_strict: bool = Field(
        False, description="the gate passes only children that beat their parent on the minibatch (ties stopped)"
    )
    rechecks: int | None = Field(
        None,
        ge=0,
        description="for a noisy evaluator: a child whose score would be the run's best is evaluated this "
        "many times more and admitted with the mean score, and the best it challenges once more (its mean "
        "kept); None: the problem's `rechecks`, 0 unless it says",
    )
    pool_copies: bool = Field(
        False,
        description="a child whose evaluator's `behaviour` artifact is that of a kept candidate is a copy: "
        "counted, kept nowhere, its score one more sample of that candidate's mean; no effect on problems whose "
        "evaluator sets no `behaviour` (off by default: on noisy_knapsack with the models it made no difference)",
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
    """How children are made. The weights are each model's starting odds; its own record then moves them."""

    diff: float = Field(0.6, ge=0, description="weight of SEARCH/REPLACE diff requests")
    full: float = Field(0.3, ge=0, description="weight of full-rewrite requests")
    crossover: float = Field(0.1, ge=0, description="weight of crossover requests; 0: no crossover, offline included")
    offline_crossover: bool = Field(
        False,
        description="Python's offline operators cross two parents too (off: measured, it hurt; benchmarks/README.md)",
    )
    adapt: bool = Field(True, description="move each model's odds by its own record; false: the weights stay fixed")
    offline_arm: bool = Field(False, description="offer the offline operators as a bandit arm beside models")
    repair_attempts: int = Field(
        1, ge=0, description="times a model reply that cannot be parsed or applied is sent back with the error"
    )


class Bandit(Section):
    kind: Literal["ucb1", "thompson", "uniform"] = Field("ucb1", description="uniform: no bandit, every model alike")
    cost_aware: bool = Field(
        False, description="of models that improve children, prefer the cheaper; no credit for being cheap alone"
    )
    exploration: float = Field(0.5, ge=0, description="UCB's c in mean + c·sqrt(2 ln N / n), rewards in [0, 1]")


class Islands(Section):
    count: int = Field(1, ge=1, description="number of islands; 1 (the default): one population")
    population: int = Field(200, ge=1, description="cap on each island's population")
    topology: Literal["ring", "full", "random", "isolated"] = "ring"
    migration_interval: int = Field(50, ge=1, description="admissions between migrations")
    migration_size: int = Field(2, ge=0, description="top candidates sent to each neighbour; 0: no migration")
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


Strategy = Literal["power_law", "weighted", "tournament", "uniform", "hill_climb", "pareto", "iid", "greedy"]


class Selection(Section):
    """Parent selection: a mix of exploitation, exploration and elites, or a baseline."""

    strategy: Strategy = Field(
        "power_law",
        description="exploit strategy, defined in evoengine/archive/selection.py: power_law, weighted, tournament, "
        "uniform, hill_climb, pareto; or a baseline, which ignores the mix, islands and inspirations: iid (every "
        "child from the seed alone: independent sampling) or greedy (every child from the run's best: refinement)",
    )
    refine: bool = Field(
        True,
        description="learn how often to take the run's best as the parent: children of the best, of the seed "
        "(with `restart`) and of the rest are scored by how often they set a new best, and each parent is of the "
        "kind whose draw from its odds is highest (Thompson sampling; the best comes with no inspirations, as in "
        "the greedy baseline)",
    )
    drift: bool = Field(
        True,
        description="a valid child scoring the same as the run's best, and no longer than the parent `refine` takes, "
        "becomes that parent: a run on a plateau walks it, as a (1+1) evolutionary algorithm accepting equal moves "
        "(the baselines ignore it)",
    )
    restart: bool = Field(
        False,
        description="learn, in the same way and beside `refine`, how often to take the seed as the parent (with no "
        "inspirations, as in the iid baseline): children of the seed are scored by how often they set a new best, "
        "so a run caught on a local optimum that the seed's neighbourhood beats starts again from the seed (off by "
        "default: measured, it made no difference offline and cost symbolic_regression with models)",
    )
    refine_memory: float = Field(
        50.0,
        ge=1,
        description="admissions over which `refine` and `restart` forget (older outcomes weigh e^-age/memory)",
    )
    min_gain: float = Field(
        0.001,
        ge=0,
        description="a new best counts for `refine` and `restart` when it gains over this share of the run's climb "
        "so far (best - seed): the last digits of a converged constant do not keep a run refining its best",
    )
    cell_credit: float = Field(
        0.25,
        ge=0,
        le=1,
        description="what a child of the mix that fills or betters a MAP-Elites cell without setting a new best "
        "counts for the mix, against 1 for a new best: a mix whose children keep improving the cells (stepping "
        "stones towards a better peak) keeps its parents while the best is stuck; one whose children change "
        "nothing hands them to `refine` (0: only new bests count)",
    )
    exploit: float = Field(0.0, ge=0, description="share of the mix's parents from `strategy` on the island")
    explore: float = Field(0.0, ge=0, description="share of the mix's parents uniform on the island")
    elites: float = Field(
        1.0,
        ge=0,
        description="share of the mix's parents from a uniformly drawn MAP-Elites cell (the mix is all elites by "
        "default: the best is refine's; with `elites.enabled=false` they come uniform from the island); 0: none",
    )
    alpha: float = Field(1.0, gt=0, description="power-law exponent over rank")
    tournament: int = Field(4, ge=2)
    sharpness: float = Field(10.0, gt=0, description="λ of `weighted`: sigmoid(λ·(score − median)/MAD)")
    top_inspirations: int = Field(2, ge=0, description="the island's best (besides the parent) drawn beside it")
    diverse_inspirations: int = Field(2, ge=0, description="elites and other islands' best drawn beside it")
    inspirations: bool = Field(True, description="false: prompts show no inspirations (crossover keeps its partner)")


class Novelty(Section):
    enabled: bool = Field(
        True,
        description="refuse, before evaluation, a child that is the same program as one already evaluated (up to "
        "formatting and comments) or, below `threshold`, too close to its island's recent ones; false: every child "
        "that compiles is evaluated, copies included",
    )
    embedder: Literal["tokens", "ngram", "sentence-transformers", "openai"] = Field(
        "tokens", description="tokens: EVOLVE-BLOCK structure (numbers, strings abstracted); ngram: characters"
    )
    embedding_model: str | None = Field(None, description="model for sentence-transformers/openai embedders")
    threshold: float = Field(
        1.0,
        gt=0,
        le=1,
        description="similarity to a recent candidate of its island above which a child is not evaluated; 1.0 "
        "refuses copies only. With tokens it is about the share of structure kept: 0.95 asks a child to change over "
        "5% of it, and below 1.0 constant-only edits (most offline ones) are refused. Start-up says what it refuses.",
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
    evaluator_models: list[Model] = Field(
        default_factory=list,
        description="models the problem's evaluator asks (each `name` one the problem declares in "
        "Problem.evaluator_models), reached through the engine's loopback proxy: the key stays with the engine, "
        "and the calls count into spend, budget.cost_usd and replay, sharing concurrency.proposals",
    )
    operators: Operators = Field(default_factory=Operators)
    bandit: Bandit = Field(default_factory=Bandit)
    islands: Islands = Field(default_factory=Islands)
    elites: Elites = Field(default_factory=Elites)
    selection: Selection = Field(default_factory=Selection)
    novelty: Novelty = Field(default_factory=Novelty)
    harness: str | None = Field(None, description="path to a harness module replacing the built-in one")
    templates: str | None = Field(None, description="folder of prompt templates overriding the harness's")
    replay: str | None = Field(None, description="run directory whose recorded model replies are replayed")
    trackers: list[Literal["mlflow", "wandb", "tensorboard"]] = Field(
        default_factory=list, description="experiment trackers each admission is logged to (evoengine/trackers.py)"
    )

    def check(self) -> None:
        names = [m.name for m in self.models]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"models: names must be unique (repeated: {sorted(dupes)})")
        judged = [m.name for m in self.evaluator_models]
        dupes = {n for n in judged if judged.count(n) > 1}
        if dupes:
            raise ValueError(f"evaluator_models: names must be unique (repeated: {sorted(dupes)})")
        if self.novelty.judge and self.novelty.judge not in names:
            raise ValueError(f"novelty.judge: {self.novelty.judge!r} is not one of models {names}")
        everyone = [*self.models, *self.evaluator_models]
        if self.budget.cost_usd is not None and everyone and not any(m.price_in or m.price_out for m in everyone):
            raise ValueError(
                "budget.cost_usd: no model has a price (price_in, price_out: dollars per million tokens), so "
                "spend counts as $0 and this cap would never stop the run; set the models' prices, or drop the cap"
            )
