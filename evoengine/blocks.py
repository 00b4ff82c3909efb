"""EVOLVE-BLOCK markers: which parts of a candidate may change.

A candidate marks what may change with two comment lines in its language's comment
syntax (``#`` for Python, ``//`` for C, ``--`` for SQL, ...)::

    # EVOLVE-BLOCK-START
    ...editable...
    # EVOLVE-BLOCK-END

Everything else, the marker lines included, is frozen: a child whose frozen text differs
from its parent's by a single byte is rejected (`check_frozen`). A text with no markers at
all is editable as a whole (prompts usually are). Blocks cannot nest; a marker line may
name its block (``# EVOLVE-BLOCK-START system``). Every failure is a `PatchError` whose
message says what to fix, written to be shown to the model. A Python child must also
compile (`syntax_error`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .files import FilesError, language_of, split_files, split_lines


class PatchError(ValueError):
    """A reply that cannot become a child; the message is written to be shown to the model."""


@dataclass(frozen=True)
class Block:
    """One editable region: `text[start:end]` is its content, between the marker lines."""

    start: int
    end: int
    line: int  # 1-based line number of the content's first line
    marked: bool = True  # False: the text has no markers and is editable as a whole
    name: str = ""  # what follows EVOLVE-BLOCK-START on its line, e.g. "system_prompt"


# ---------------------------------------------------------------- EVOLVE-BLOCK markers


@functools.lru_cache(maxsize=32)
def _marker_re(comment: str) -> re.Pattern[str]:
    return re.compile(re.escape(comment) + r"[ \t]*EVOLVE-BLOCK-(START|END)\b")


def text_rows(text: str) -> list[str]:
    """Lines without their ends."""
    return [line.rstrip("\r\n") for line in split_lines(text)]


def line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def evolve_blocks(text: str, comment: str = "#") -> list[Block]:
    """The editable regions of `text`; the whole text when it has no markers."""
    pattern = _marker_re(comment)
    blocks: list[Block] = []
    open_line = 0  # line of the START marker of the block being read, 0 if none
    start = 0
    name = ""
    offset = 0
    for number, line in enumerate(split_lines(text), 1):
        found = pattern.search(line)
        if found and found.group(1) == "START":
            if open_line:
                raise PatchError(
                    f"line {number}: EVOLVE-BLOCK-START inside the block opened at line "
                    f"{open_line}; EVOLVE-BLOCKs cannot nest"
                )
            open_line, start = number, offset + len(line)
            name = line[found.end() :].strip()
        elif found:
            if not open_line:
                raise PatchError(f"line {number}: EVOLVE-BLOCK-END without an EVOLVE-BLOCK-START before it")
            blocks.append(Block(start, offset, open_line + 1, name=name))
            open_line = 0
        offset += len(line)
    if open_line:
        raise PatchError(f"line {open_line}: EVOLVE-BLOCK-START is never closed by EVOLVE-BLOCK-END")
    return blocks or [Block(0, len(text), 1, marked=False)]


def check_only_block(parent: str, child: str, name: str, comment: str = "#") -> None:
    """Raise PatchError unless, of the named blocks, only `name` changed."""
    before, after = evolve_blocks(parent, comment), evolve_blocks(child, comment)
    for old, new in zip(before, after, strict=False):
        if old.name != name and parent[old.start : old.end] != child[new.start : new.end]:
            raise PatchError(
                f"the edit changed the section '{old.name or f'at line {old.line}'}'; this time change "
                f"only the section '{name}' and leave the others exactly as they are"
            )


def splice_blocks(text: str, blocks: Sequence[Block], contents: Sequence[str]) -> str:
    """`text` with each block's content replaced by the matching entry of `contents`."""
    if len(blocks) != len(contents):
        raise PatchError(f"expected {len(blocks)} block contents, got {len(contents)}")
    out: list[str] = []
    at = 0
    for block, content in zip(blocks, contents, strict=True):
        if block.marked and content and not content.endswith("\n"):
            content += "\n"  # the END marker must stay on a line of its own
        out += [text[at : block.start], content]
        at = block.end
    out.append(text[at:])
    return "".join(out)


def frozen_parts(text: str, blocks: Sequence[Block]) -> list[tuple[int, str]]:
    """The frozen stretches of `text` around `blocks`, each with its start offset."""
    if not blocks[0].marked:
        return []
    bounds = [0] + [x for b in blocks for x in (b.start, b.end)] + [len(text)]
    return [(bounds[i], text[bounds[i] : bounds[i + 1]]) for i in range(0, len(bounds), 2)]


def quote_line(line: str, limit: int = 80) -> str:
    line = line.rstrip("\r\n")
    return repr(line if len(line) <= limit else line[:limit] + "...")


def check_frozen(parent: str, child: str, comment: str = "#") -> None:
    """Raise `PatchError` if `child` differs from `parent` anywhere outside the EVOLVE-BLOCKs."""
    parent_blocks = evolve_blocks(parent, comment)
    try:
        child_blocks = evolve_blocks(child, comment)
    except PatchError as exc:
        raise PatchError(f"the new program's EVOLVE-BLOCK markers are broken: {exc}") from None
    if not parent_blocks[0].marked:
        if child_blocks[0].marked:
            raise PatchError(
                f"line {child_blocks[0].line - 1}: the program has no EVOLVE-BLOCK markers; do not add any"
            )
        return
    if not child_blocks[0].marked or len(child_blocks) != len(parent_blocks):
        found = len(child_blocks) if child_blocks[0].marked else 0
        raise PatchError(
            f"the program has {len(parent_blocks)} EVOLVE-BLOCK(s) and the new one has {found}; "
            f"keep every '{comment} EVOLVE-BLOCK-START' / '{comment} EVOLVE-BLOCK-END' line as it is"
        )
    for (_, old), (at, new) in zip(frozen_parts(parent, parent_blocks), frozen_parts(child, child_blocks), strict=True):
        if old == new:
            continue
        old_lines, new_lines = split_lines(old), split_lines(new)
        i = next(
            (k for k, (a, b) in enumerate(zip(old_lines, new_lines, strict=False)) if a != b),
            min(len(old_lines), len(new_lines)),
        )
        line = line_at(child, at) + i
        expected = quote_line(old_lines[i]) if i < len(old_lines) else "nothing"
        got = quote_line(new_lines[i]) if i < len(new_lines) else "nothing"
        raise PatchError(
            f"line {line} is frozen (outside the EVOLVE-BLOCKs) but was changed: expected "
            f"{expected}, got {got}. Change only the text between EVOLVE-BLOCK-START and "
            "EVOLVE-BLOCK-END"
        )


@functools.lru_cache(maxsize=1024)
def syntax_error(text: str, language: str, folder: bool = False) -> str | None:
    """Why a Python text does not compile (with the line), or None. With `folder`, `text`
    holds several files (`evoengine.files`) and each Python file is compiled. Cached, for the
    copies a search proposes again."""
    if folder:
        try:
            files = split_files(text)
        except FilesError as exc:
            return f"the child's files are broken: {exc}"
        for name, content in files.items():
            why = syntax_error(content, language_of(name))
            if why is not None:
                return f"file {name}: {why}"
        return None
    if language != "python":
        return None
    try:
        compile(text, "candidate.py", "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        shown = f": {exc.text.strip()!r}" if exc.text and exc.text.strip() else ""
        return f"the child does not compile: {where}{exc.msg}{shown}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"the child does not compile: {type(exc).__name__}: {exc}"
    return None
