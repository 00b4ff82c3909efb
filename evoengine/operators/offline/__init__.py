"""Built-in offline operators: genetic-programming edits of the Python inside EVOLVE-BLOCKs.

They need no model, so a fresh install can run a real search. Each EVOLVE-BLOCK is parsed
on its own (an indented block is parsed as the body of an ``if True:``), an operator picks
AST nodes, and only the source span of the nodes it changes is rewritten, with
`ast.unparse` for a changed expression. Comments and layout elsewhere in the block survive,
and the text outside the blocks stays byte-identical.

Operators (the `Proposal.operator` names), tried with the weights in `WEIGHTS`:

- ``offline:constant`` (the bulk of proposals): nudge 1-3 numeric literals. Floats get
  Gaussian noise with a scale drawn log-uniformly, mostly between 0.003 and 1 and sometimes
  down to 1e-6, so both large jumps and fine tuning happen; the scale is a share of the
  value for a float above 1 in size (mostly) and absolute below, so a 0.0 nudged to 1e-5
  can still grow; ints move by ±1, a small jump or a relative step, and stay ints. An int
  used as an index (``p[0]``) is rarely chosen.
- ``offline:operator``: swap an arithmetic, comparison, boolean or augmented-assignment
  operator for a related one (``+``/``-``, ``<``/``<=``, ``and``/``or``, ...).
- ``offline:duplicate`` / ``offline:delete`` / ``offline:swap``: statement edits within one
  statement list (never a docstring, a ``def`` or a ``class``).
- ``offline:crossover`` with the first of ``ctx.inspirations`` that differs from the parent
  as the second parent (``Proposal.parents`` names both): if both blocks have
  the same structure, each differing numeric literal comes from either parent or a blend;
  otherwise named definitions (functions, classes, ``name = ...``) or statements are taken
  from either parent (uniform), or the statement lists are cut at one point.

A proposal retries when an edit changes nothing or breaks the syntax, and raises
`ProposalFailed` with the reasons when nothing works (or the candidate is not Python).
Every random choice comes from ``ctx.rng``, so a run is reproducible from its seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

from ...blocks import Block, check_frozen, splice_blocks
from ...harness import OfflinePlan
from ...patches import PatchError
from ...records import Candidate, Proposal, ProposalContext
from .. import BuiltinProposer
from .code import Change, Code, Edit, analysed
from .crossover import crossover_blocks
from .mutations import mutate_constant, mutate_operator, mutate_statement

log = logging.getLogger(__name__)

WEIGHTS = {"constant": 0.6, "operator": 0.1, "statement": 0.1, "crossover": 0.2}


def _apply(text: str, edits: Sequence[Edit]) -> str:
    """`edits` (non-overlapping, on one text) applied from the back."""
    last = len(text) + 1
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        if edit.end > last:
            raise ValueError("overlapping edits")
        text = text[: edit.start] + edit.text + text[edit.end :]
        last = edit.start
    return text


class OfflineProposer(BuiltinProposer):
    """The AST operators as a `Proposer`; `weights` (keys of `WEIGHTS`) sets how often each family
    is drawn, and `policy` (the harness's offline policy) may change them, and the constants' step,
    for each proposal. Crossover is not drawn when no inspiration differs from the parent."""

    WEIGHTS = WEIGHTS

    def __init__(
        self, weights: dict[str, float] | None = None, policy: Callable[[ProposalContext], OfflinePlan] | None = None
    ):
        self.policy = policy
        super().__init__(weights)

    # -- making one child

    def _propose(self, ctx: ProposalContext) -> Proposal:
        parent, problem = ctx.parent, ctx.problem

        try:  # the policy may come from an evolved harness: its faults are the proposal's
            plan = self.policy(ctx) if self.policy is not None else OfflinePlan()
            weights = self.weights if plan.weights is None else self.checked(plan.weights)
            step = float(plan.step)
            if not (math.isfinite(step) and step > 0):
                raise ValueError(f"step must be a positive number (got {plan.step!r})")
        except Exception as exc:
            raise self.failed(ctx, f"the harness's offline policy failed: {type(exc).__name__}: {exc}") from None

        if problem.language != "python":
            raise self.failed(ctx, "offline operators support Python candidates only; configure a model")
        try:
            blocks, parsed = analysed(parent.text, problem.comment)
        except PatchError as exc:
            raise self.failed(ctx, f"the parent's EVOLVE-BLOCK markers are broken: {exc}") from None
        except (SyntaxError, ValueError) as exc:
            raise self.failed(
                ctx, f"the parent is not valid Python ({exc}); offline operators cannot repair it"
            ) from None
        codes = [c for c in parsed if c is not None]
        if not codes:
            raise self.failed(
                ctx,
                "no EVOLVE-BLOCK parses as Python on its own; "
                "offline operators need whole statements inside each block",
            )
        other, pairs = self._second_parent(ctx, parsed)
        operators: dict[str, Callable[[], Change | None]] = {
            "constant": lambda: mutate_constant(codes, ctx.rng, step),
            "operator": lambda: mutate_operator(codes, ctx.rng),
            "statement": lambda: mutate_statement(codes, ctx.rng),
            "crossover": lambda: crossover_blocks(pairs, ctx.rng),
        }
        if not pairs:
            del operators["crossover"]

        def child(made: Change) -> tuple[str, str, Candidate | None]:
            two = other if made.name == "crossover" else None
            text, why = self._child(parent.text, blocks, made.edits, problem.comment, two.text if two else None)
            return text, why, two

        return self.first_usable(ctx, weights, operators, child, "offline operators found no valid edit")

    @staticmethod
    def _child(
        text: str, blocks: Sequence[Block], edits: list[Edit], comment: str, other: str | None
    ) -> tuple[str, str]:
        """The child text, or an empty text and why the edit is unusable."""
        contents = [text[b.start : b.end] for b in blocks]
        for index in sorted({e.block for e in edits}):
            contents[index] = _apply(contents[index], [e for e in edits if e.block == index])
        child = splice_blocks(text, blocks, contents)
        if child == text:
            return "", "the edit changed nothing"
        if other is not None and child == other:
            return "", "the child equals the second parent"
        try:
            compile(child, "<child>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            return "", f"the edit broke the syntax ({exc})"
        try:
            check_frozen(text, child, comment)
        except PatchError as exc:  # a bug here, never the candidate's fault
            log.warning("offline edit touched frozen text: %s", exc)
            return "", f"the edit touched frozen text ({exc})"
        return child, ""

    @staticmethod
    def _second_parent(
        ctx: ProposalContext, parsed: Sequence[Code | None]
    ) -> tuple[Candidate | None, list[tuple[Code, Code]]]:
        """The first inspiration whose blocks differ from the parent's, with the block pairs."""
        for other in ctx.inspirations:
            if other.text == ctx.parent.text:
                continue
            try:
                theirs = analysed(other.text, ctx.problem.comment)[1]
            except (PatchError, SyntaxError, ValueError):
                continue
            if len(theirs) != len(parsed):
                continue
            pairs = [
                (p, o)
                for p, o in zip(parsed, theirs, strict=True)
                if p is not None and o is not None and p.dump != o.dump
            ]
            if pairs:
                return other, pairs
        return None, []
