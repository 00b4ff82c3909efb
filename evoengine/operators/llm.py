"""Language models as mutation and crossover operators, chosen by a bandit.

For each proposal `ModelProposer` asks the bandit for an arm (a model name, or "offline"
when `operators.offline_arm` offers the offline operators beside the models), hands the
harness that model's learnt operator odds (`operators.odds`, in `ctx.operator_weights`),
lets it plan the proposal (diff, full rewrite or crossover; inspirations; temperature) and
write the prompt, calls the model, and turns the reply into a child with `operators.patches`. A
reply that cannot be parsed or applied goes back to the model with the error, up to
`operators.repair_attempts` times; after that the proposal fails with the reason, as it
does when the model call itself fails. Every call is reported through `ctx.record_call`.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from typing import Any

from ..blocks import check_only_block, syntax_error
from ..config import Config
from ..errors import ConfigError
from ..harness import Harness, Plan, load_harness
from ..llm.bandit import ModelBandit, make_bandit
from ..llm.client import ModelPool
from ..patches import PatchError, apply_diff, apply_rewrite, parse_diff
from ..problem import Problem
from ..records import Proposal, ProposalContext, ProposalFailed
from . import BuiltinProposer, Stage
from .folder import apply_folder_reply, folder_change
from .odds import OperatorOdds

log = logging.getLogger(__name__)

OFFLINE = BuiltinProposer.ARM


def unified_change(parent: str, child: str) -> str:
    """The child's change as a unified diff against its parent."""
    lines = parent.splitlines(keepends=True), child.splitlines(keepends=True)
    return "".join(difflib.unified_diff(*lines, "parent", "child", n=2))


class ModelProposer:
    """A `Proposer` whose children come from language models picked by a bandit.

    `pool` and `harness` default to the ones `config` describes; pass them to share or
    replace them (tests do). Call `await start()` before the first proposal: it runs the
    models' pre-flight check, so a bad endpoint or key stops the run before it spends.
    """

    def __init__(
        self,
        config: Config,
        problem: Problem,
        offline: BuiltinProposer | None = None,
        *,
        pool: ModelPool | None = None,
        harness: Harness | None = None,
    ):
        self.config = config
        self.problem = problem
        self.offline = offline
        if config.operators.offline_arm and offline is None:
            raise ConfigError("operators.offline_arm is on, but no offline proposer was given")
        if pool is None:
            pool = ModelPool(config.models, replay=config.replay, concurrency=config.concurrency.proposals)
        self.pool = pool
        arms = list(self.pool.names)
        if config.operators.offline_arm:
            arms.append(OFFLINE)
        if not arms:
            raise ConfigError("no models configured: add `models:` or use the offline operators")
        self.bandit: ModelBandit = make_bandit(config.bandit, arms)
        self.odds = OperatorOdds(config.operators)
        self.harness = harness if harness is not None else load_harness(config)

    def arms(self) -> list[str]:
        return list(self.bandit.arms)

    async def start(self) -> None:
        """Pre-flight: raise one `ModelError` if any model cannot be used."""
        await self.pool.preflight()

    async def propose(self, ctx: ProposalContext) -> Proposal:
        arm = self.bandit.select(ctx.rng)
        if arm == OFFLINE:
            assert self.offline is not None
            return await self.offline.propose(ctx)
        if self.config.operators.adapt:
            ctx = dataclasses.replace(ctx, operator_weights=self.odds.weights(arm))
        plan = self.harness.plan(ctx, arm)
        parents = (ctx.parent.id,)
        if plan.operator == "crossover":
            if not ctx.inspirations:
                why = "crossover needs a second parent, and there is no inspiration"
                raise ProposalFailed(why, operator="crossover", model=arm, parents=parents)
            parents = (ctx.parent.id, ctx.inspirations[0].id)
        client = self.pool[arm]
        messages = self.harness.messages(ctx, plan)
        cost = 0.0
        hashes: list[str] = []
        tries = self.config.operators.repair_attempts + 1
        for attempt in range(1, tries + 1):
            call = await client.chat(messages, temperature=plan.temperature)
            ctx.record_call(call)
            cost += call.cost
            hashes.append(call.request_hash)
            failed = {"operator": plan.operator, "model": arm, "cost": cost, "parents": parents}
            if call.reply is None:
                raise ProposalFailed(f"model {arm}: {call.error}", kind="model", **failed)
            try:
                child = self._apply(ctx, plan, call.reply)
            except PatchError as exc:
                log.debug("model %s, %s attempt %d: %s", arm, plan.operator, attempt, exc)
                if attempt == tries:
                    s = "s" if tries > 1 else ""
                    raise ProposalFailed(
                        f"model {arm}: {plan.operator} reply unusable after {tries} attempt{s}: {exc}", **failed
                    ) from None
                messages = self.harness.repair(ctx, plan, messages, call.reply, str(exc))
                continue
            meta: dict[str, Any] = {
                "attempts": attempt,
                "temperature": plan.temperature if plan.temperature is not None else client.model.temperature,
                "inspirations": [c.id for c in ctx.inspirations[: plan.inspirations]],
                "request_hashes": hashes,
            }
            change = (folder_change if self.problem.folder else unified_change)(ctx.parent.text, child)
            return Proposal(child, plan.operator, arm, parents, change, cost, meta)
        raise AssertionError("unreachable")  # pragma: no cover

    def observe(
        self, arm: str, reward: float, cost: float, *, operator: str | None = None, stage: Stage | None = None
    ) -> None:
        self.bandit.observe(arm, reward, cost)
        if operator is not None and stage is not None:
            self.odds.observe(arm, operator, stage, reward)

    def stats(self) -> dict[str, Any]:
        stats = self.bandit.stats()
        for arm in self.pool.names:
            stats[arm]["operators"] = self.odds.stats(arm)
        return stats

    def state(self) -> dict[str, Any]:
        """What `observe` learnt (JSON-ready); `restore` sets it back on resume."""
        return {**self.bandit.state(), "operators": self.odds.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.bandit.restore(state)
        self.odds.restore(state["operators"])

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self.offline is not None:
            await self.offline.aclose()

    def _apply(self, ctx: ProposalContext, plan: Plan, reply: str) -> str:
        parent, problem = ctx.parent.text, self.problem
        if problem.folder:  # several files: each edit or rewrite goes to its file
            child = apply_folder_reply(parent, reply, problem, plan.operator, getattr(plan, "file", None))
        elif plan.operator == "diff":
            child = apply_diff(parent, parse_diff(reply), problem.comment)
        else:
            fenced = problem.language != "text"  # a prompt may come back without a code fence
            child = apply_rewrite(
                parent, reply, language=problem.language, comment=problem.comment, require_fence=fenced
            )
        if plan.block and not problem.folder:  # several named texts mutate one at a time
            check_only_block(parent, child, plan.block, problem.comment)
        why = syntax_error(child, problem.language, folder=problem.folder)
        if why is not None:  # back to the model, like a patch that does not apply
            raise PatchError(why)
        return child
