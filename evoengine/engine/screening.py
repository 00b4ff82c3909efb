"""Screening: why a child should not take an evaluation slot, decided before it does.

In order: it does not compile (Python children; the reason goes back like a patch error),
it is the same program as one already evaluated or still being evaluated (equal up to
formatting and comments; for a model's copy of a child in flight the loop waits for the
next admission before asking again), or the novelty filter finds it too close to what its
island has. The last two are novelty rejection, which `novelty.enabled=false` turns off as
one (then every child that compiles is evaluated, copies included: the ablation of copy
refusal). Replaying a recorded schedule, the recorded verdict stands for novelty, since it
depended on what had been admitted at the moment the original run screened the child.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..blocks import syntax_error
from ..files import FilesError, language_of, split_files
from ..novelty import Novelty
from ..operators import BuiltinProposer
from ..records import Proposal, ProposalFailed

SAME = "(up to formatting and comments)"
RECENT = 1024  # children sent to evaluation whose digests the screen remembers itself


def normal_form(text: str, language: str, folder: bool = False) -> str:
    """The text as it counts for "the same program": Python's syntax tree (formatting and
    comments dropped), other text with its whitespace collapsed; several files file by file."""
    if folder:
        try:
            files = split_files(text)
        except FilesError:
            return text
        return "\0".join(f"{name}\0{normal_form(part, language_of(name))}" for name, part in files.items())
    if language == "python":
        try:
            return ast.dump(ast.parse(text))
        except (SyntaxError, ValueError, RecursionError):
            return text
    return " ".join(text.split())


@functools.lru_cache(maxsize=1024)
def digest(text: str, language: str, folder: bool = False) -> bytes:
    """The hash of `normal_form`. Cached: parsing to the normal form cost more than making an
    offline child, and a child's text is digested when screened and again when admitted, and a
    refused copy often repeats a text exactly (the seed's same edit drawn again)."""
    return hashlib.blake2b(normal_form(text, language, folder).encode(errors="surrogatepass"), digest_size=16).digest()


class Screen:
    """The checks a proposed child passes before evaluation."""

    def __init__(
        self,
        language: str,
        evaluated: Callable[[bytes], bool] | None,
        novelty: Novelty | None,
        schedule: Any = None,
        folder: bool = False,
    ):
        self.language = language
        self.folder = folder  # children are several files (`evoengine.files`): each Python one must compile
        # has a text of this digest been evaluated (the ledger asks the store); None: copies are evaluated
        self.evaluated = evaluated
        # digests of the last RECENT children sent to evaluation: a copy of one still in flight is not in
        # the store yet (bounded, so memory does not grow with the run; in flight are far fewer)
        self.passed: OrderedDict[bytes, int] = OrderedDict()  # digest: candidate id
        self.novelty = novelty
        self.schedule = schedule  # a recorded run's schedule, when replaying one

    async def check(self, proposal: Proposal, island: int, pid: int) -> ProposalFailed | None:
        """A failure (kind syntax or novelty) for a child that must not be evaluated, or None."""
        why = syntax_error(proposal.text, self.language, self.folder)
        if why is not None:
            return _failed(proposal, "syntax", why)
        if self.schedule is not None:
            record = self.schedule[pid]
            if record["kind"] == "novelty":
                return _failed(proposal, "novelty", record["reason"])
            return None
        if self.evaluated is None:
            return None
        key = digest(proposal.text, self.language, self.folder)
        if self.evaluated(key):
            return _failed(proposal, "novelty", f"novelty: the same program as a candidate already evaluated {SAME}")
        if key in self.passed:
            failure = _failed(
                proposal,
                "novelty",
                f"novelty: the same program as candidate {self.passed[key]}, still being evaluated {SAME}",
            )
            # a model asked the same prompt may well answer alike; the built-in operators draw a
            # new edit from each proposal's own generator, so their retry need not wait
            failure.copy_in_flight = proposal.model != BuiltinProposer.ARM
            return failure
        if self.novelty is not None:
            verdict = await self.novelty.check(proposal.text, island)
            if not verdict.novel:
                return _failed(proposal, "novelty", f"novelty: {verdict.reason}")
        self.passed[key] = pid
        if len(self.passed) > RECENT:
            self.passed.popitem(last=False)
        return None


def _failed(proposal: Proposal, kind: str, reason: str) -> ProposalFailed:
    return ProposalFailed(
        reason,
        kind=kind,
        operator=proposal.operator,
        model=proposal.model,
        cost=proposal.cost,
        parents=proposal.parents,
    )
