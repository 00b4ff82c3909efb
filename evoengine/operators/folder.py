"""Children of a candidate of several files (`evoengine.files`): model replies applied file by
file, and the offline operators run on one file at a time.

Model replies (`apply_folder_reply`)
    A diff names the file each edit changes with a line ``FILE: name`` before its SEARCH
    line; an edit that names none goes to the one file holding its SEARCH text. A full
    rewrite or a crossover returns one file: the one the plan names, or the one the reply
    names with a ``FILE: name`` line. Each file keeps its own EVOLVE-BLOCK rules, in its own
    comment syntax (``#`` in Python and YAML, ``//`` in C, ...): an edit of a frozen line is
    refused with the file and the line, and the message goes back to the model.

Offline (`FolderProposer`)
    One file per child, picked at random: a Python file gets the AST operators, any other
    file the line operators, each seeing the inspirations' versions of that file (so their
    crossovers work within the file). Crossover also works file by file
    (``offline:file-crossover``): each file that differs from the second parent's comes from
    either parent.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping

from ..blocks import PatchError
from ..files import FilesError, join_files, language_of, split_files
from ..patches import FILE_LINE, Edit, apply_diff, apply_rewrite, parse_diff
from ..problem import Problem
from ..records import Candidate, Proposal, ProposalContext, ProposalFailed
from . import BuiltinProposer, some_of

FILE_CROSSOVER = 0.15  # share of offline proposals that cross whole files, when a second parent differs


def folder_change(parent: str, child: str) -> str:
    """The child's change as unified diffs against its parent, file by file."""
    before, after = _files(parent), _files(child, "child")
    out = []
    for name in dict.fromkeys([*before, *after]):
        a, b = before.get(name, ""), after.get(name, "")
        if a != b:
            out += difflib.unified_diff(
                a.splitlines(keepends=True), b.splitlines(keepends=True), f"parent/{name}", f"child/{name}", n=2
            )
    return "".join(out)


def _files(text: str, whose: str = "parent") -> dict[str, str]:
    try:
        return split_files(text)
    except FilesError as exc:
        raise PatchError(f"the {whose}'s files are broken: {exc}") from None


# ---------------------------------------------------------------- model replies


def apply_folder_reply(parent: str, reply: str, problem: Problem, operator: str, file: str | None = None) -> str:
    """The child of `reply` (a diff, or one file's rewrite) applied to the files in `parent`."""
    files = _files(parent)
    if operator == "diff":
        changed = _apply_edits(files, parse_diff(reply), problem)
    else:
        changed = _apply_rewrite(files, reply, problem, file)
    try:
        return join_files({**files, **changed})
    except FilesError as exc:
        raise PatchError(str(exc)) from None


def _owner(files: Mapping[str, str], edit: Edit, number: int) -> str:
    """The file `edit` changes: the one it names, else the only one holding its SEARCH text."""
    if edit.file:
        if edit.file not in files:
            raise PatchError(
                f"edit {number} names the file {edit.file!r}, which the program does not have "
                f"(its files: {', '.join(files)}); edits change existing files only"
            )
        return edit.file
    holding = [name for name, text in files.items() if edit.search.strip() and edit.search.strip() in text]
    if len(holding) == 1:
        return holding[0]
    raise PatchError(
        f"edit {number} names no file; put a line 'FILE: name' right before its SEARCH line "
        f"(the files: {', '.join(files)})"
    )


def _apply_edits(files: Mapping[str, str], edits: list[Edit], problem: Problem) -> dict[str, str]:
    if not edits:
        raise PatchError(
            "no SEARCH/REPLACE blocks found; write each edit as 'FILE: name', '<<<<<<< SEARCH', the exact "
            "current lines of that file, '=======', the new lines, '>>>>>>> REPLACE'"
        )
    by_file: dict[str, list[Edit]] = {}
    for number, edit in enumerate(edits, 1):
        by_file.setdefault(_owner(files, edit, number), []).append(edit)
    changed = {}
    for name, mine in by_file.items():
        try:
            changed[name] = apply_diff(files[name], mine, problem.file_comment(name))
        except PatchError as exc:
            raise PatchError(f"file {name}: {exc}") from None
    return changed


def _apply_rewrite(files: Mapping[str, str], reply: str, problem: Problem, file: str | None) -> dict[str, str]:
    named = _named_outside_fences(reply)
    if len(named) > 1:
        raise PatchError(
            f"the reply names {len(named)} files ({', '.join(named)}); rewrite one file at a time: "
            f"one 'FILE: name' line, then that file's whole new content in one fenced block"
        )
    target = named[0] if named else file
    if target is None and len(files) == 1:
        target = next(iter(files))
    if target is None:
        raise PatchError(
            f"name the file you rewrite with a line 'FILE: name' before its code block (the files: {', '.join(files)})"
        )
    if target not in files:
        raise PatchError(f"the reply names the file {target!r}, which the program does not have ({', '.join(files)})")
    language = language_of(target)
    try:
        new = apply_rewrite(files[target], reply, language=language, comment=problem.file_comment(target))
    except PatchError as exc:
        raise PatchError(f"file {target}: {exc}") from None
    return {target: new}


def _named_outside_fences(reply: str) -> list[str]:
    """The files the reply names with 'FILE: name' lines outside its code blocks, in order."""
    named, fence = [], ""
    for line in reply.split("\n"):
        mark = line.strip()[:3]
        if mark in ("```", "~~~") and (not fence or mark == fence):
            fence = "" if fence else mark
        elif not fence and (found := FILE_LINE.match(line)):
            named.append(found.group(1))
    return list(dict.fromkeys(named))


# ---------------------------------------------------------------- offline


class FolderProposer(BuiltinProposer):
    """The offline operators on a candidate of several files: one file per child, by the
    proposer for its language (`code` for Python files, `text` for the others)."""

    def __init__(self, code: BuiltinProposer, text: BuiltinProposer):
        self.code, self.text = code, text
        super().__init__()

    def _propose(self, ctx: ProposalContext) -> Proposal:
        try:
            files = _files(ctx.parent.text)
        except PatchError as exc:
            raise self.failed(ctx, str(exc)) from None
        others = []
        for other in ctx.inspirations:
            try:
                theirs = split_files(other.text)
            except FilesError:
                continue
            if theirs.keys() == files.keys() and theirs != files:
                others.append((other, theirs))
        if others and ctx.rng.random() < FILE_CROSSOVER:
            crossed = self._cross_files(ctx, files, *others[0])
            if crossed is not None:
                return crossed
        reasons = []
        for name in ctx.rng.sample(list(files), len(files)):
            sub = self._one_file(ctx, name, files, others)
            proposer = self.code if language_of(name) == "python" else self.text
            try:
                made = proposer._propose(sub)
                text = join_files({**files, name: made.text})
            except ProposalFailed as exc:
                reasons.append(f"{name}: {exc.reason}")
                continue
            except FilesError as exc:  # a vocabulary line that looks like a file header, say
                reasons.append(str(exc))
                continue
            return dataclasses.replace(
                made, text=text, change=f"{name}: {made.change}", meta={**made.meta, "file": name}
            )
        raise self.failed(ctx, "offline operators found no edit in any file: " + "; ".join(reasons))

    @staticmethod
    def _one_file(
        ctx: ProposalContext, name: str, files: dict[str, str], others: list[tuple[Candidate, dict[str, str]]]
    ) -> ProposalContext:
        """`ctx` as the proposer of one file sees it: that file as the parent and inspirations."""
        problem = dataclasses.replace(ctx.problem, language=language_of(name), initial=f"{ctx.problem.initial}/{name}")
        return dataclasses.replace(
            ctx,
            problem=problem,
            parent=dataclasses.replace(ctx.parent, text=files[name]),
            inspirations=[dataclasses.replace(c, text=theirs[name]) for c, theirs in others],
        )

    def _cross_files(
        self, ctx: ProposalContext, files: dict[str, str], other: Candidate, theirs: dict[str, str]
    ) -> Proposal | None:
        """A child taking some of the differing files from `other`; None if only one file differs."""
        differing = [name for name in files if files[name] != theirs[name]]
        if len(differing) < 2:
            return None
        taken = some_of(differing, ctx.rng)
        return Proposal(
            text=join_files({name: theirs[name] if name in taken else text for name, text in files.items()}),
            operator="offline:file-crossover",
            model=self.ARM,
            parents=(ctx.parent.id, other.id),
            change=f"with #{other.id}: took {', '.join(taken)} from it",
        )
