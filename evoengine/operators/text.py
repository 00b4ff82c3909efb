"""Built-in offline operators for text candidates (prompts, rules, any language but Python).

They edit whole lines inside the editable region(s): a text with no EVOLVE-BLOCK markers is
editable as a whole; with markers, only the lines between them change and everything else
stays byte-identical (`check_frozen` guards it). No model is needed, so a prompt problem
can be searched on a fresh install.

Operators (the `Proposal.operator` names), tried with the weights in `WEIGHTS`:

- ``offline:vocabulary``: insert one (sometimes two) lines from the problem's vocabulary
  (`Problem.vocabulary`, a file of snippets beside problem.py, one per line, blank lines
  and lines starting with ``#`` skipped) at random places; a line the block already holds
  is not inserted again.
- ``offline:borrow``: insert a line that another candidate (an inspiration) has and the
  parent lacks; `Proposal.parents` names both.
- ``offline:delete`` / ``offline:duplicate`` / ``offline:swap``: remove a line, copy a line
  to a random place, exchange two lines (blank lines are never picked).
- ``offline:number``: nudge one (sometimes two) numeric literals in the lines (``0.5``,
  ``12``, ``1e-3``; not part of a word such as ``x1`` or ``0x1f`` or ``1.0f``) as the AST
  operators nudge Python constants: ints stay ints; a value that turns negative is written
  in brackets, ``(-0.2)``, so that ``a-1.0`` cannot become ``a--0.2``.
- ``offline:crossover`` with the first inspiration whose text differs: the two editable
  regions are aligned line by line (difflib), and each differing stretch is taken from
  either parent, so the child keeps what both share and mixes where they differ;
  `Proposal.parents` names both.

A proposal retries when an edit changes nothing (up to whitespace) or equals the second
parent, and raises `ProposalFailed` with the reasons when nothing works. Every random
choice comes from ``ctx.rng``, so a run is reproducible from its seed.
"""

from __future__ import annotations

import difflib
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..blocks import Block, PatchError, check_frozen, evolve_blocks, splice_blocks
from ..problem import Problem
from ..records import Candidate, Proposal, ProposalContext
from . import BuiltinProposer, some_of
from .offline.mutations import format_float, perturb

log = logging.getLogger(__name__)

WEIGHTS = {
    "vocabulary": 0.3,
    "borrow": 0.15,
    "crossover": 0.15,
    "number": 0.15,
    "delete": 0.1,
    "duplicate": 0.05,
    "swap": 0.1,
}
_NUMBER = re.compile(r"(?<![\w.])(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
NEEDS_OTHER = ("borrow", "crossover")


# ---------------------------------------------------------------- texts as lines


@dataclass(frozen=True)
class _Lines:
    """One editable region as a list of lines; `trailing` says whether it ended with a newline."""

    rows: tuple[str, ...]
    trailing: bool

    @classmethod
    def of(cls, content: str) -> _Lines:
        rows = content.split("\n")
        trailing = content.endswith("\n")
        if trailing or rows == [""]:
            rows = rows[:-1]
        return cls(tuple(rows), trailing)

    def filled(self) -> list[int]:
        """Indices of the lines that are not blank."""
        return [i for i, row in enumerate(self.rows) if row.strip()]


def _join(region: _Lines, rows: Sequence[str]) -> str:
    body = "\n".join(rows)
    return body + "\n" if rows and region.trailing else body


def _squashed(text: str) -> str:
    """`text` with its white space folded: edits that change only spacing change nothing."""
    return " ".join(text.split())


def _same(a: str, b: str) -> bool:
    return _squashed(a) == _squashed(b)


@lru_cache(maxsize=16)
def _read_vocabulary(path: Path, mtime: float) -> tuple[str, ...]:
    lines = path.read_text(errors="replace").splitlines()
    return tuple(line.rstrip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def vocabulary(problem: Problem) -> tuple[str, ...]:
    """The problem's vocabulary lines (empty when it declares none or the file is unreadable)."""
    if not problem.vocabulary:
        return ()
    path = problem.root / problem.vocabulary
    try:
        return _read_vocabulary(path, path.stat().st_mtime)
    except OSError as exc:
        log.warning("cannot read the vocabulary %s: %s", path, exc)
        return ()


# ---------------------------------------------------------------- the operators


@dataclass(frozen=True)
class _Change:
    """What one operator did: new rows per changed region, a description, its name."""

    rows: dict[int, list[str]]
    change: str
    name: str
    other: Candidate | None = None


def _line_edit(kind: str, regions: list[_Lines], rng: random.Random) -> _Change | None:
    """`kind` is delete, duplicate or swap, in a region with the non-blank lines for it."""
    fit = [b for b, r in enumerate(regions) if len(r.filled()) >= (2 if kind == "swap" else 1)]
    if not fit:
        return None
    b = rng.choice(fit)
    rows, filled = list(regions[b].rows), regions[b].filled()
    if kind == "delete":
        i = rng.choice(filled)
        gone = rows.pop(i)
        return _Change({b: rows}, f"deleted line {i + 1}: {gone.strip()[:80]!r}", kind)
    if kind == "duplicate":
        i = rng.choice(filled)
        at = rng.randint(0, len(rows))
        rows.insert(at, rows[i])
        return _Change({b: rows}, f"copied line {i + 1} to line {at + 1}", kind)
    i, j = sorted(rng.sample(filled, 2))
    if _same(rows[i], rows[j]):
        return None
    rows[i], rows[j] = rows[j], rows[i]
    return _Change({b: rows}, f"swapped lines {i + 1} and {j + 1}", kind)


def _number(regions: list[_Lines], rng: random.Random) -> _Change | None:
    """Nudge one (sometimes two) numeric literals, as the AST operators nudge Python constants."""
    sites = [(b, i, m) for b, r in enumerate(regions) for i, row in enumerate(r.rows) for m in _NUMBER.finditer(row)]
    if not sites:
        return None
    picked = rng.sample(sites, 1 if rng.random() < 0.75 else min(2, len(sites)))
    rows = {b: list(regions[b].rows) for b, _, _ in picked}
    said = []
    for b, i, m in sorted(picked, key=lambda s: (s[0], s[1], -s[2].start())):  # right to left within a line
        old = float(m.group()) if any(c in m.group() for c in ".eE") else int(m.group())
        new = perturb(old, rng)
        text = str(new) if isinstance(new, int) else format_float(new, old)
        if text is None:
            continue
        text = f"({text})" if text.startswith("-") else text
        rows[b][i] = rows[b][i][: m.start()] + text + rows[b][i][m.end() :]
        said.append(f"line {i + 1}: {m.group()} -> {text}")
    return _Change(rows, "nudged " + "; ".join(said), "number") if said else None


def _insert(region: _Lines, lines: Sequence[str], rng: random.Random) -> tuple[list[str], list[int]]:
    rows = list(region.rows)
    places = []
    for line in lines:
        at = rng.randint(0, len(rows))
        rows.insert(at, line)
        places = [p + (p >= at) for p in places] + [at]
    return rows, places


def _from_vocabulary(regions: list[_Lines], words: Sequence[str], rng: random.Random) -> _Change | None:
    if not words or not regions:
        return None
    b = rng.randrange(len(regions))
    have = {_squashed(r) for r in regions[b].rows}
    fresh = [w for w in words if _squashed(w) not in have]
    if not fresh:
        return None
    picked = rng.sample(fresh, min(len(fresh), 1 if rng.random() < 0.75 else 2))
    rows, places = _insert(regions[b], picked, rng)
    said = "; ".join(f"line {p + 1}: {w.strip()[:80]!r}" for p, w in zip(places, picked, strict=True))
    return _Change({b: rows}, f"inserted from the vocabulary at {said}", "vocabulary")


def _borrow(regions: list[_Lines], others: list[tuple[Candidate, list[_Lines]]], rng: random.Random) -> _Change | None:
    """Insert a line some inspiration has and the parent's region lacks."""
    offers: list[tuple[int, str, Candidate]] = []
    for other, theirs in others:
        for b, region in enumerate(regions):
            have = {_squashed(r) for r in region.rows}
            source = [theirs[b]] if len(theirs) == len(regions) else theirs
            offers += [(b, row, other) for r in source for row in r.rows if row.strip() and _squashed(row) not in have]
    if not offers:
        return None
    b, line, other = rng.choice(offers)
    rows, places = _insert(regions[b], [line], rng)
    return _Change(
        {b: rows}, f"inserted at line {places[0] + 1} from #{other.id}: {line.strip()[:80]!r}", "borrow", other
    )


def _crossover(
    regions: list[_Lines], others: list[tuple[Candidate, list[_Lines]]], rng: random.Random
) -> _Change | None:
    for other, theirs in others:
        if len(theirs) != len(regions):
            continue
        differing = [b for b in range(len(regions)) if regions[b].rows != theirs[b].rows]
        if not differing:
            continue
        b = rng.choice(differing)
        mine, their = regions[b].rows, theirs[b].rows
        ops = difflib.SequenceMatcher(None, mine, their, autojunk=False).get_opcodes()
        hunks = [k for k, op in enumerate(ops) if op[0] != "equal"]
        taken = some_of(hunks, rng)
        rows: list[str] = []
        for k, (_, i1, i2, j1, j2) in enumerate(ops):
            rows += their[j1:j2] if k in taken else mine[i1:i2]
        return _Change(
            {b: rows}, f"took {len(taken)} of {len(hunks)} differing stretches from #{other.id}", "crossover", other
        )
    return None


# ---------------------------------------------------------------- the proposer


class TextProposer(BuiltinProposer):
    """The line operators as a `Proposer`; `weights` (keys of `WEIGHTS`) sets how often each
    is drawn. One that cannot apply (no vocabulary, no differing inspiration) is not drawn."""

    WEIGHTS, KIND = WEIGHTS, "text"

    def _propose(self, ctx: ProposalContext) -> Proposal:
        parent, problem = ctx.parent, ctx.problem
        try:
            blocks = evolve_blocks(parent.text, problem.comment)
        except PatchError as exc:
            raise self.failed(ctx, f"the parent's EVOLVE-BLOCK markers are broken: {exc}") from None
        regions = [_Lines.of(parent.text[b.start : b.end]) for b in blocks]
        others = self._others(ctx)
        words = vocabulary(problem)
        operators: dict[str, Callable[[], _Change | None]] = {
            "vocabulary": lambda: _from_vocabulary(regions, words, ctx.rng),
            "borrow": lambda: _borrow(regions, others, ctx.rng),
            "crossover": lambda: _crossover(regions, others, ctx.rng),
            "number": lambda: _number(regions, ctx.rng),
            "delete": lambda: _line_edit("delete", regions, ctx.rng),
            "duplicate": lambda: _line_edit("duplicate", regions, ctx.rng),
            "swap": lambda: _line_edit("swap", regions, ctx.rng),
        }
        usable = {
            k: f for k, f in operators.items() if (k not in NEEDS_OTHER or others) and (k != "vocabulary" or words)
        }

        def child(made: _Change) -> tuple[str, str, Candidate | None]:
            text, why = self._child(parent.text, blocks, regions, made, problem.comment)
            return text, why, made.other

        return self.first_usable(ctx, self.weights, usable, child, "text operators found no edit that changes the text")

    @staticmethod
    def _child(text: str, blocks: list[Block], regions: list[_Lines], made: _Change, comment: str) -> tuple[str, str]:
        contents = [text[b.start : b.end] for b in blocks]
        for index, rows in made.rows.items():
            contents[index] = _join(regions[index], rows)
        child = splice_blocks(text, blocks, contents)
        if _same(child, text):
            return "", "the edit changed nothing"
        if made.other is not None and _same(child, made.other.text):
            return "", "the child equals the second parent"
        try:
            check_frozen(text, child, comment)
        except PatchError as exc:  # a line carrying a marker, say
            return "", f"the edit touched frozen text ({exc})"
        return child, ""

    @staticmethod
    def _others(ctx: ProposalContext) -> list[tuple[Candidate, list[_Lines]]]:
        """Inspirations that differ from the parent, each with its editable regions."""
        out = []
        for other in ctx.inspirations:
            if _same(other.text, ctx.parent.text):
                continue
            try:
                blocks = evolve_blocks(other.text, ctx.problem.comment)
            except PatchError:
                continue
            out.append((other, [_Lines.of(other.text[b.start : b.end]) for b in blocks]))
        return out
