"""Models as operators: prompts, replies turned into children, repair, failure, bandit, replay."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sqlite3
from pathlib import Path

import pytest

from evoengine.config import Config, Model
from evoengine.errors import ConfigError, ModelError
from evoengine.harness import Plan, Templates, load_harness
from evoengine.llm import ModelPool
from evoengine.operators.llm import ModelProposer
from evoengine.problem import Problem
from evoengine.records import Candidate, ModelCall, Proposal, ProposalContext, ProposalFailed

pytest_plugins = ["scripted_server"]  # the scripted_server and dead_url fixtures

SEED = """import math

# EVOLVE-BLOCK-START
VALUE = 1


def score():
    return VALUE * math.pi
# EVOLVE-BLOCK-END

print(score())
"""

DIFF = """Raising the value should help.
<<<<<<< SEARCH
VALUE = 1
=======
VALUE = {n}
>>>>>>> REPLACE
"""

PROBLEM = Problem(name="toy", description="Make score() as large as you can.", initial="seed.py")
PARENT = Candidate(
    id=7,
    text=SEED,
    score=3.14159,
    valid=True,
    metrics={"runtime_s": 0.25},
    feedback="score() returned 3.14; VALUE is small",
)
OTHER = Candidate(id=9, text=SEED.replace("VALUE = 1", "VALUE = 5"), score=15.7, valid=True)
FAILED = Candidate(
    id=11,
    text=SEED.replace("VALUE = 1", "VALUE = )"),
    score=None,
    valid=False,
    feedback="SyntaxError: invalid syntax (line 4)",
)


def config(models: list[Model], **sections) -> Config:
    data = {"models": [m.dump() for m in models], **sections}
    return Config(**data)


def context(seed: int = 0, inspirations=(OTHER,), failures=(), attempt=0, calls=None) -> ProposalContext:
    return ProposalContext(
        problem=PROBLEM,
        parent=PARENT,
        inspirations=list(inspirations),
        failures=list(failures),
        rng=random.Random(seed),
        island=0,
        record_call=(calls.append if calls is not None else lambda call: None),
        attempt=attempt,
    )


def proposer_for(models: list[Model], *, only: str = "diff", **sections) -> ModelProposer:
    weights = {"diff": 0.0, "full": 0.0, "crossover": 0.0, only: 1.0}
    cfg = config(models, operators=weights, **sections)
    return ModelProposer(cfg, PROBLEM, pool=ModelPool(cfg.models, backoff_s=0.01))


def propose(proposer: ModelProposer, ctx: ProposalContext) -> Proposal:
    async def run():
        try:
            return await proposer.propose(ctx)
        finally:
            await proposer.aclose()

    return asyncio.run(run())


# ---------------------------------------------------------------- replies become children


def test_a_diff_reply_becomes_a_child_with_its_call_recorded_and_priced(scripted_server):
    scripted_server.script("m", DIFF.format(n=3))
    calls: list[ModelCall] = []
    proposer = proposer_for([scripted_server.model("m", price_in=1.0, price_out=2.0)])
    proposal = propose(proposer, context(calls=calls))
    assert proposal.text == SEED.replace("VALUE = 1", "VALUE = 3")
    assert (proposal.operator, proposal.model, proposal.parents) == ("diff", "m", (7,))
    assert "-VALUE = 1" in proposal.change and "+VALUE = 3" in proposal.change
    assert len(calls) == 1 and calls[0].reply == DIFF.format(n=3)
    assert proposal.cost == calls[0].cost > 0
    assert proposal.cost == pytest.approx((calls[0].tokens_in * 1.0 + calls[0].tokens_out * 2.0) / 1e6)
    assert proposal.meta["request_hashes"] == [calls[0].request_hash]


def test_a_full_rewrite_reply_becomes_a_child(scripted_server):
    rewrite = SEED.replace("VALUE * math.pi", "VALUE * math.pi * 2")
    scripted_server.script("m", f"Here it is:\n```python\n{rewrite}```\n")
    proposal = propose(proposer_for([scripted_server.model("m")], only="full"), context())
    assert proposal.text == rewrite and proposal.operator == "full"


def test_a_crossover_shows_both_parents_and_names_both_as_parents(scripted_server):
    both = SEED.replace("VALUE = 1", "VALUE = 6")
    scripted_server.script("m", f"```python\n{both}```")
    proposal = propose(proposer_for([scripted_server.model("m")], only="crossover"), context())
    assert proposal.operator == "crossover" and proposal.parents == (7, 9)
    prompt = scripted_server.calls("m")[0].body["messages"][-1]["content"]
    assert "Parent A (candidate 7)" in prompt and "Parent B (candidate 9)" in prompt
    assert "VALUE = 5" in prompt and "VALUE = 1" in prompt


def test_crossover_is_not_planned_without_a_second_parent():
    cfg = config([Model(name="m")], operators={"diff": 0, "full": 1, "crossover": 5})
    harness = load_harness(cfg)
    plans = {harness.plan(context(seed, inspirations=()), "m").operator for seed in range(20)}
    assert plans == {"full"}


# ---------------------------------------------------------------- repair and failure


def test_a_garbage_reply_is_sent_back_once_with_the_error_then_fails_with_the_reason(scripted_server):
    scripted_server.script("m", "I think the program is fine as it is.")
    calls: list[ModelCall] = []
    proposer = proposer_for([scripted_server.model("m", price_out=1.0)])
    with pytest.raises(ProposalFailed) as err:
        propose(proposer, context(calls=calls))
    fail = err.value
    assert "no SEARCH/REPLACE blocks found" in fail.reason and "after 2 attempts" in fail.reason
    assert (fail.operator, fail.model, fail.parents) == ("diff", "m", (7,))
    assert len(calls) == 2 and fail.cost == pytest.approx(sum(c.cost for c in calls))
    retry = scripted_server.calls("m")[1].body["messages"]
    assert retry[-2] == {"role": "assistant", "content": "I think the program is fine as it is."}
    assert "no SEARCH/REPLACE blocks found" in retry[-1]["content"]


def test_a_repaired_reply_is_used(scripted_server):
    replies = iter(["<<<<<<< SEARCH\nVALUE = 100\n=======\nVALUE = 2\n>>>>>>> REPLACE", DIFF.format(n=2)])
    scripted_server.script("m", lambda request: next(replies))
    proposal = propose(proposer_for([scripted_server.model("m")]), context())
    assert proposal.text == SEED.replace("VALUE = 1", "VALUE = 2") and proposal.meta["attempts"] == 2
    assert "is not in the current program" in scripted_server.calls("m")[1].body["messages"][-1]["content"]


def test_repair_attempts_zero_fails_at_once(scripted_server):
    scripted_server.script("m", "nothing useful")
    cfg = config([scripted_server.model("m")], operators={"diff": 1, "full": 0, "crossover": 0, "repair_attempts": 0})
    proposer = ModelProposer(cfg, PROBLEM, pool=ModelPool(cfg.models))
    with pytest.raises(ProposalFailed, match="after 1 attempt:"):
        propose(proposer, context())
    assert len(scripted_server.calls("m")) == 1


def test_a_rewrite_that_touches_frozen_code_is_refused(scripted_server):
    changed = SEED.replace("print(score())", "print(10**9)")
    scripted_server.script("m", f"```python\n{changed}```")
    with pytest.raises(ProposalFailed, match="frozen"):
        propose(proposer_for([scripted_server.model("m")], only="full"), context())


def test_an_endpoint_that_keeps_failing_gives_a_failed_proposal_not_a_crash(scripted_server):
    scripted_server.script("m", DIFF.format(n=2)).inject("m", *[500] * 5)
    calls: list[ModelCall] = []
    with pytest.raises(ProposalFailed, match="model m: HTTP 500"):
        propose(proposer_for([scripted_server.model("m", max_retries=1)]), context(calls=calls))
    assert len(calls) == 1 and calls[0].error


@pytest.mark.parametrize("fault", ["bad_json", "empty_choices"])
def test_malformed_replies_give_a_failed_proposal_with_the_reason(scripted_server, fault):
    scripted_server.script("m", DIFF.format(n=2)).inject("m", *[fault] * 5)
    with pytest.raises(ProposalFailed, match="not valid JSON|no choices"):
        propose(proposer_for([scripted_server.model("m", max_retries=1)]), context())


def test_start_runs_the_preflight_check(dead_url):
    proposer = proposer_for([Model(name="m", base_url=dead_url, api_key_env=None)])

    async def run():
        try:
            await proposer.start()
        finally:
            await proposer.aclose()

    with pytest.raises(ModelError, match="cannot reach"):
        asyncio.run(run())


# ---------------------------------------------------------------- the prompt


def test_the_prompt_holds_problem_parent_feedback_inspirations_failures_and_format():
    cfg = config([Model(name="m")])
    harness = load_harness(cfg)
    ctx = context(inspirations=(OTHER, FAILED), failures=["diff: the SEARCH text occurs 2 times"])
    system, user = (m["content"] for m in harness.messages(ctx, Plan("diff", 2)))
    assert "python program" in system
    assert "Make score() as large as you can." in user
    assert "candidate 7" in user and "Score: 3.14159" in user and "runtime_s=0.25" in user
    assert "VALUE is small" in user and SEED.rstrip() in user
    assert "Candidate 9" in user and "Score: 15.7" in user
    assert "Candidate 11" in user and "Score: invalid" in user and "SyntaxError" in user
    assert "the SEARCH text occurs 2 times" in user
    assert "<<<<<<< SEARCH" in user and ">>>>>>> REPLACE" in user
    assert "# EVOLVE-BLOCK-START" in user and "must stay" in user
    for candidate in (PARENT, OTHER, FAILED):
        user = user.replace(candidate.text, "")
    assert "\n\n\n" not in user  # empty sections leave no gaps


def test_the_prompt_keeps_the_parent_text_byte_for_byte():
    text = "def a():\n    pass\n\n\n\ndef b():  \n    return '$x ${y}'\n"
    parent = Candidate(id=1, text=text, score=1.0, valid=True)
    ctx = ProposalContext(problem=PROBLEM, parent=parent, inspirations=[], failures=[], rng=random.Random(0), island=0)
    user = load_harness(config([Model(name="m")])).messages(ctx, Plan("full", 0))[1]["content"]
    assert text in user
    assert "EVOLVE-BLOCK" not in user  # no markers in the parent: no frozen-text rule


@pytest.mark.parametrize(
    "kind, phrase",
    [
        ("prompt", "instruction text"),
        ("reward", "true task performance"),
        ("harness", "agent harness"),
    ],
)
def test_each_kind_of_problem_gets_its_own_framing(kind, phrase):
    problem = Problem(
        name="p", description="d", initial="x.txt", kind=kind, language="text" if kind == "prompt" else "python"
    )
    ctx = ProposalContext(problem=problem, parent=PARENT, inspirations=[], failures=[], rng=random.Random(0), island=0)
    system = load_harness(config([Model(name="m")])).messages(ctx, Plan("full", 0))[0]["content"]
    assert phrase in system


def test_a_rejected_slot_is_asked_again_at_a_higher_temperature():
    harness = load_harness(config([Model(name="m", temperature=0.5)]))
    assert harness.plan(context(attempt=0), "m").temperature is None
    assert harness.plan(context(attempt=2), "m").temperature == pytest.approx(0.8)


def test_a_templates_folder_overrides_single_templates_and_refuses_unknown_names(tmp_path):
    (tmp_path / "op_diff.txt").write_text("Make candidate $id faster, in $language.\n")
    harness = load_harness(config([Model(name="m")], templates=str(tmp_path)))
    user = harness.messages(context(), Plan("diff", 1))[1]["content"]
    assert "Make candidate 7 faster, in python." in user and "<<<<<<< SEARCH" in user
    (tmp_path / "op_dif.txt").write_text("typo")
    with pytest.raises(ConfigError, match="op_dif.txt does not override any template"):
        Templates(tmp_path)


def test_a_harness_file_replaces_the_built_in_one(tmp_path, scripted_server):
    path = tmp_path / "my_harness.py"
    path.write_text(
        "from evoengine.harness import Plan\n\n\n"
        "class Harness:\n"
        "    def __init__(self, config, templates):\n"
        "        self.templates = templates\n\n"
        "    def plan(self, ctx, arm):\n"
        "        return Plan('diff', 0, 0.0)\n\n"
        "    def messages(self, ctx, plan):\n"
        "        return [{'role': 'user', 'content': 'CUSTOM ' + ctx.parent.text}]\n\n"
        "    def repair(self, ctx, plan, messages, reply, error):\n"
        "        return messages\n"
    )
    scripted_server.script("m", DIFF.format(n=4))
    cfg = config([scripted_server.model("m")], harness=str(path))
    proposal = propose(ModelProposer(cfg, PROBLEM, pool=ModelPool(cfg.models)), context())
    assert proposal.text == SEED.replace("VALUE = 1", "VALUE = 4")
    body = scripted_server.calls("m")[0].body
    assert body["messages"][0]["content"].startswith("CUSTOM ") and body["temperature"] == 0.0


def test_a_broken_harness_file_is_a_config_error(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("class Harness:\n    pass\n")
    with pytest.raises(ConfigError, match="plan, messages and repair"):
        load_harness(config([Model(name="m")], harness=str(path)))


def test_with_inspirations_off_the_prompt_shows_the_parent_alone_but_crossover_keeps_its_partner():
    ctx = context(inspirations=(OTHER, FAILED))
    on = load_harness(config([Model(name="m")]))
    off = load_harness(config([Model(name="m")], selection={"inspirations": False}))
    assert on.plan(ctx, "m").inspirations == 2 and off.plan(ctx, "m").inspirations == 0
    assert "Candidate 9" in on.messages(ctx, on.plan(ctx, "m"))[1]["content"]
    assert "Candidate 9" not in off.messages(ctx, Plan("diff", 0))[1]["content"]
    assert "Parent B (candidate 9)" in off.messages(ctx, Plan("crossover", 0))[1]["content"]


def test_crossover_zero_switches_crossover_off_for_models_and_offline_operators_alike():
    def harness(crossover: float, offline_crossover: bool = True):
        weights = {"diff": 1 - min(crossover, 1), "full": 1 - min(crossover, 1), "crossover": crossover}
        return load_harness(config([Model(name="m")], operators={**weights, "offline_crossover": offline_crossover}))

    on, off = harness(1.0), harness(0.0)
    assert {on.plan(context(seed), "m").operator for seed in range(10)} == {"crossover"}
    assert "crossover" not in {off.plan(context(seed), "m").operator for seed in range(50)}
    assert on.offline(context()).weights["crossover"] > 0 and off.offline(context()).weights["crossover"] == 0
    # The offline operators cross only when asked (`operators.offline_crossover`, off by default).
    assert harness(1.0, offline_crossover=False).offline(context()).weights["crossover"] == 0
    assert load_harness(config([Model(name="m")])).offline(context()).weights["crossover"] == 0


def test_the_iid_baseline_prompt_shows_no_recent_failures():
    ctx = context(inspirations=(), failures=["diff: the SEARCH text occurs 2 times"])
    for strategy, shown in (("power_law", True), ("iid", False)):
        harness = load_harness(config([Model(name="m")], selection={"strategy": strategy}))
        user = harness.messages(ctx, Plan("diff", 0))[1]["content"]
        assert ("occurs 2 times" in user) == shown


# ---------------------------------------------------------------- operators learnt per model


def observe_like_the_engine(proposer: ModelProposer, outcome: Proposal | ProposalFailed, reward: float = 0.0):
    """What the engine reports when a proposal closes: failed, or evaluated valid."""
    if isinstance(outcome, ProposalFailed):
        proposer.observe(outcome.model, 0.0, outcome.cost, operator=outcome.operator, stage="failed")
    else:
        proposer.observe(outcome.model, reward, outcome.cost, operator=outcome.operator, stage="valid")


@pytest.mark.parametrize("adapt", [True, False])
def test_a_model_whose_diffs_never_apply_is_soon_asked_for_few_diffs(scripted_server, adapt):
    """Model "clumsy" copies SEARCH text wrongly (0 of its diffs apply) but writes fine full
    rewrites; "neat" does both. Each model's odds follow its own record (unless `adapt` is off)."""

    def reply(copies_well: bool):
        def answer(request):
            if "<<<<<<< SEARCH" in request["messages"][-1]["content"]:
                search = "VALUE = 1" if copies_well else "VALUE = 100"
                return f"<<<<<<< SEARCH\n{search}\n=======\nVALUE = 2\n>>>>>>> REPLACE\n"
            return f"```python\n{SEED.replace('VALUE = 1', 'VALUE = 3')}```"

        return answer

    scripted_server.script("clumsy", reply(False)).script("neat", reply(True))
    models = [scripted_server.model("clumsy"), scripted_server.model("neat")]
    cfg = config(models, operators={"diff": 0.6, "full": 0.3, "crossover": 0.1, "repair_attempts": 0, "adapt": adapt})
    proposer = ModelProposer(cfg, PROBLEM, pool=ModelPool(cfg.models, backoff_s=0.01))
    assert proposer.odds.weights("clumsy") == pytest.approx({"diff": 0.3, "full": 0.15, "crossover": 0.05})
    log: list = []

    async def run():
        try:
            for i in range(120):
                try:
                    outcome = await proposer.propose(context(seed=i))
                except ProposalFailed as fail:
                    outcome = fail
                log.append((outcome.model, outcome.operator))
                observe_like_the_engine(proposer, outcome)
        finally:
            await proposer.aclose()

    asyncio.run(run())
    late = {m: [op for model, op in log[60:] if model == m] for m in ("clumsy", "neat")}
    if not adapt:  # the configured weights, whatever happened
        assert late["clumsy"].count("diff") > 0.4 * len(late["clumsy"])
        return
    assert late["clumsy"].count("diff") < 0.2 * len(late["clumsy"])
    assert late["neat"].count("diff") > 0.4 * len(late["neat"])
    stats = proposer.stats()
    assert stats["clumsy"]["operators"]["diff"]["share"] < 0.15 < stats["neat"]["operators"]["diff"]["share"]
    replayed = ModelProposer(cfg, PROBLEM, pool=ModelPool(cfg.models))  # resume: the same reports, in order
    for model, operator in log:
        stage = "failed" if model == "clumsy" and operator == "diff" else "valid"
        replayed.observe(model, 0.0, 0.0, operator=operator, stage=stage)
    assert replayed.state() == proposer.state()


def test_operator_success_counts_a_usable_child_a_valid_one_and_its_improvement():
    from evoengine.operators.odds import OperatorOdds, proposal_success

    assert [proposal_success(stage, 0.0) for stage in ("failed", "rejected", "invalid", "valid")] == pytest.approx(
        [0.0, 1 / 3, 1 / 3, 2 / 3]
    )
    assert proposal_success("valid", 1.0) == 1.0 and proposal_success("invalid", 1.0) == pytest.approx(1 / 3)
    odds = OperatorOdds(config([Model(name="m")]).operators)
    for _ in range(10):
        odds.observe("a", "full", "valid", 1.0)
        odds.observe("a", "offline:constant", "valid", 1.0)  # not a model operator: not learnt
    assert odds.weights("b") == pytest.approx({"diff": 0.3, "full": 0.15, "crossover": 0.05})
    assert odds.weights("a")["full"] > 0.25 and set(odds.state()["a"]) == {"full"}


# ---------------------------------------------------------------- the bandit picks models


def test_the_bandit_sends_most_calls_to_the_model_whose_children_improve(scripted_server):
    luck = random.Random(5)

    def model_with(chance: float, garbage: float = 0.0):
        def reply(request):
            if luck.random() < garbage:
                return "Sorry, I cannot help with that."
            return DIFF.format(n=2 if luck.random() < chance else 0)

        return reply

    scripted_server.script("strong", model_with(0.8)).script("weak", model_with(0.1, garbage=0.5))
    proposer = proposer_for(
        [scripted_server.model("strong"), scripted_server.model("weak")], bandit={"kind": "ucb1", "exploration": 0.5}
    )
    better = SEED.replace("VALUE = 1", "VALUE = 2")

    observed = []

    async def run():
        picks = []
        try:
            for i in range(100):
                try:
                    proposal = await proposer.propose(context(seed=i))
                    arm, reward, cost = proposal.model, float(proposal.text == better), proposal.cost
                except ProposalFailed as fail:  # a failed proposal counts as no improvement
                    arm, reward, cost = fail.model, 0.0, fail.cost
                picks.append(arm)
                proposer.observe(arm, reward, cost)
                observed.append((arm, reward, cost))
        finally:
            await proposer.aclose()
        return picks

    picks = asyncio.run(run())
    assert picks.count("strong") >= 75
    stats = proposer.stats()
    assert stats["strong"]["mean_reward"] > stats["weak"]["mean_reward"]
    assert stats["strong"]["calls"] + stats["weak"]["calls"] == 100
    resumed = ModelProposer(proposer.config, PROBLEM, pool=ModelPool(proposer.config.models))
    for arm, reward, cost in observed:  # what the engine does on resume
        resumed.observe(arm, reward, cost)
    assert resumed.state() == proposer.state() and resumed.stats() == proposer.stats()


class ScriptedOffline:
    """Stands in for the offline operators: always the same child."""

    def arms(self):
        return ["offline"]

    async def propose(self, ctx):
        return Proposal(
            ctx.parent.text.replace("VALUE = 1", "VALUE = 8"), "offline:constant", "offline", (ctx.parent.id,)
        )

    def observe(self, arm, reward, cost):
        pass

    def stats(self):
        return {}

    async def aclose(self):
        self.closed = True


def test_the_offline_operators_can_be_an_arm_beside_the_models(scripted_server):
    scripted_server.script("m", DIFF.format(n=2))
    cfg = config([scripted_server.model("m")], operators={"offline_arm": True}, bandit={"kind": "uniform"})
    offline = ScriptedOffline()
    proposer = ModelProposer(cfg, PROBLEM, offline=offline, pool=ModelPool(cfg.models))
    assert proposer.arms() == ["m", "offline"]

    async def run():
        try:
            return [await proposer.propose(context(seed=i)) for i in range(12)]
        finally:
            await proposer.aclose()

    proposals = asyncio.run(run())
    models = {p.model for p in proposals}
    assert models == {"m", "offline"} and offline.closed
    assert all(p.operator == "offline:constant" for p in proposals if p.model == "offline")
    with pytest.raises(ConfigError, match="offline_arm"):
        ModelProposer(cfg, PROBLEM, pool=ModelPool(cfg.models))


# ---------------------------------------------------------------- record and replay


def store_calls(run_dir: Path, calls: list[ModelCall]) -> None:
    run_dir.mkdir(parents=True)
    with sqlite3.connect(run_dir / "archive.sqlite") as db:
        db.execute(
            "CREATE TABLE model_calls(id INTEGER PRIMARY KEY, proposal_id INTEGER, model TEXT, "
            "request_hash TEXT, messages TEXT, reply TEXT, tokens_in INT, tokens_out INT, cost REAL, "
            "latency_s REAL, error TEXT, purpose TEXT, created REAL)"
        )
        db.executemany(
            "INSERT INTO model_calls(proposal_id, model, request_hash, messages, reply, tokens_in, "
            "tokens_out, cost, latency_s, error, purpose, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    i,
                    c.model,
                    c.request_hash,
                    json.dumps(c.messages),
                    c.reply,
                    c.tokens_in,
                    c.tokens_out,
                    c.cost,
                    c.latency_s,
                    c.error,
                    c.purpose,
                    0.0,
                )
                for i, c in enumerate(calls)
            ],
        )


def test_a_run_replayed_from_its_store_makes_the_same_children_with_no_endpoint(scripted_server, tmp_path):
    luck = random.Random(1)
    scripted_server.script("a", lambda request: DIFF.format(n=luck.randint(2, 9)))
    scripted_server.script("b", lambda request: luck.choice(["no edits here", DIFF.format(n=luck.randint(2, 9))]))
    models = [scripted_server.model("a", price_in=1.0), scripted_server.model("b", price_out=1.0)]

    async def session(proposer: ModelProposer, calls: list[ModelCall]):
        outcomes = []
        try:
            for i in range(12):
                try:
                    p = await proposer.propose(context(seed=i, calls=calls))
                    outcomes.append((p.model, p.text, p.cost))
                    proposer.observe(p.model, float(re.search(r"VALUE = (\d)", p.text).group(1)) / 10, p.cost)
                except ProposalFailed as fail:
                    outcomes.append((fail.model, fail.reason, fail.cost))
        finally:
            await proposer.aclose()
        return outcomes

    recorded: list[ModelCall] = []
    cfg = config(models, bandit={"kind": "thompson"})
    first = asyncio.run(session(ModelProposer(cfg, PROBLEM, pool=ModelPool(cfg.models)), recorded))
    store_calls(tmp_path / "run", recorded)
    scripted_server.stop()  # nothing to answer from now on

    replayed: list[ModelCall] = []
    again = config(models, bandit={"kind": "thompson"}, replay=str(tmp_path / "run"))
    proposer = ModelProposer(again, PROBLEM)
    asyncio.run(proposer.start())
    second = asyncio.run(session(proposer, replayed))
    assert second == first
    assert [c.request_hash for c in replayed] == [c.request_hash for c in recorded]
    assert any(m == "b" and "no SEARCH/REPLACE" in r for m, r, _ in first)  # failures replay too


@pytest.mark.slow
def test_in_a_run_a_model_whose_diffs_never_apply_is_soon_asked_for_full_rewrites(scripted_server, tmp_path):
    from conftest import TEST_PROBLEMS, cli

    def clumsy(request):
        prompt = request["messages"][-1]["content"]
        if "<<<<<<< SEARCH" in prompt:
            return "<<<<<<< SEARCH\n    a = 12345\n=======\n    a = 1.0\n>>>>>>> REPLACE\n"
        parent = re.search(r"```[a-z]*\n(.*?)\n```", prompt, re.S).group(1)
        return f"```python\n{parent.replace('    a = ', f'    a = {random.random():.6f} + ', 1)}\n```\n"

    scripted_server.script("clumsy", clumsy)
    cfg = tmp_path / "clumsy.yaml"
    cfg.write_text(json.dumps({"extends": "default", "models": [scripted_server.model("clumsy").dump()]}))
    run_dir = tmp_path / "run"
    proc = cli("run", str(TEST_PROBLEMS / "quadratic"), "-c", str(cfg), "--budget", "60", "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(run_dir / "archive.sqlite") as db:
        ops = [op for (op,) in db.execute("SELECT operator FROM candidates WHERE model='clumsy' ORDER BY closed")]
    # diffs are asked for at first (5 to 12 of the first 20 in trials), then learnt odds leave
    # 4-6 among the last 30 children; with `operators.adapt=false`, 16
    assert ops[:20].count("diff") >= 5 and ops[-30:].count("diff") < 10
