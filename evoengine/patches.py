"""How a model's reply becomes a child: SEARCH/REPLACE diffs and full rewrites, within the
EVOLVE-BLOCK rules of `blocks.py`.

Diff replies (`parse_diff`, `apply_diff`)
    One or more blocks, anywhere in the reply (prose and ``` fences around them are
    ignored)::

        <<<<<<< SEARCH
        lines copied from the current program
        =======
        the lines that replace them
        >>>>>>> REPLACE

    5 to 9 ``<``/``=``/``>`` are accepted, as are trailing spaces and CRLF line ends. For a
    candidate of several files, a line ``FILE: name`` before an edit names the file it edits
    (`Edit.file`; it holds for the edits after it, until the next such line).
    Edits apply in order, each to the result of the previous one. A SEARCH text must occur
    exactly once; when it does not occur verbatim, it is matched line by line ignoring
    trailing whitespace and a uniform shift of indentation (the replacement is re-indented
    by the same shift). A SEARCH that matches nowhere, or in several places, is an error
    naming the edit, so the message can go back to the model as is.

Full rewrites (`extract_code`, `apply_rewrite`)
    The whole new program in one fenced block (```python ... ``` or a bare ```). With several
    fences, the one tagged with the problem's language wins, else the longest. If the parent
    has exactly one EVOLVE-BLOCK and the reply holds no markers, the reply is taken as the
    new content of that block. Prompt-like candidates may skip the fence
    (``require_fence=False``): then the whole reply is the new text.

Every failure is a `PatchError` whose message says what to fix.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .blocks import (
    Block,
    PatchError,
    check_frozen,
    evolve_blocks,
    frozen_parts,
    line_at,
    quote_line,
    splice_blocks,
    text_rows,
)
from .files import split_lines
from .problem import COMMENT_PREFIX

__all__ = ["FILE_LINE", "Edit", "PatchError", "apply_diff", "apply_rewrite", "extract_code", "parse_diff", "reindent"]


@dataclass(frozen=True)
class Edit:
    """One SEARCH/REPLACE pair as the model wrote it (LF line ends)."""

    search: str
    replace: str
    file: str = ""  # the file it edits, from the last "FILE: name" line before it


# ---------------------------------------------------------------- SEARCH/REPLACE diffs

_SEARCH = re.compile(r"^\s*<{5,9}\s*SEARCH\s*$", re.IGNORECASE)
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9}\s*REPLACE\s*$", re.IGNORECASE)
FILE_LINE = re.compile(r"^[\s#*>`_-]*FILE:[\s*`'\"]*([\w.+/-]+?)[\s*`'\":]*$", re.IGNORECASE)


def _joined(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def parse_diff(reply: str) -> list[Edit]:
    """The SEARCH/REPLACE edits in a model's reply, in order (an empty list if none)."""
    edits: list[Edit] = []
    state, search, replace, opened, file = "out", [], [], 0, ""
    lines = reply.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for number, line in enumerate(lines, 1):
        if state == "out":
            if _SEARCH.match(line):
                state, search, replace, opened = "search", [], [], number
            elif named := FILE_LINE.match(line):
                file = named.group(1)
        elif state == "search":
            if _DIVIDER.match(line):
                state = "replace"
            elif _SEARCH.match(line) or _REPLACE.match(line):
                raise PatchError(
                    f"edit {len(edits) + 1} (opened at line {opened} of the reply) has no "
                    "'=======' line between its SEARCH and REPLACE parts"
                )
            else:
                search.append(line)
        else:
            if _REPLACE.match(line):
                edits.append(Edit(_joined(search), _joined(replace), file))
                state = "out"
            elif _SEARCH.match(line):
                raise PatchError(
                    f"edit {len(edits) + 1} (opened at line {opened} of the reply) is not "
                    "closed by '>>>>>>> REPLACE' before the next SEARCH"
                )
            else:
                replace.append(line)
    if state != "out":
        raise PatchError(
            f"edit {len(edits) + 1} (opened at line {opened} of the reply) is not closed by "
            "'>>>>>>> REPLACE'; was the reply cut off?"
        )
    return edits


def indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _common_indent(lines: Sequence[str]) -> str:
    return os.path.commonprefix([indent_of(line) for line in lines if line.strip()])


def _shape(lines: Sequence[str]) -> list[str]:
    """Lines with their common indentation and trailing whitespace removed."""
    cut = len(_common_indent(lines))
    return [line[cut:].rstrip() if line.strip() else "" for line in lines]


def reindent(lines: Sequence[str], old: str, new: str) -> list[str]:
    """Move `lines` (without line ends) from base indentation `old` to `new`.

    Relative indentation is kept; blank lines become empty.
    """
    out = []
    char = (new or old or " ")[0]
    for line in lines:
        if not line.strip():
            out.append("")
        elif line.startswith(old):
            out.append(new + line[len(old) :])
        else:
            width = max(0, len(indent_of(line)) - len(old) + len(new))
            out.append(char * width + line.lstrip())
    return out


def _trim_blank(search: list[str], replace: list[str]) -> tuple[list[str], list[str]]:
    """Drop blank lines around SEARCH, and as many around REPLACE (models add them freely)."""
    for end in (0, -1):
        while search and not search[end].strip():
            search.pop(end)
            if replace and not replace[end].strip():
                replace.pop(end)
    return search, replace


def _describe(number: int, edit: Edit) -> str:
    first = next((line for line in edit.search.splitlines() if line.strip()), "")
    return f"edit {number} (SEARCH starting {quote_line(first.strip(), 60)})"


def _apply_one(text: str, edit: Edit, number: int) -> str:
    newline = "\r\n" if "\r\n" in text else "\n"
    search = edit.search.replace("\n", newline)
    replace = edit.replace.replace("\n", newline)
    at_line_start, in_line = [], []
    hit = text.find(search)
    while hit >= 0:
        before = text[text.rfind("\n", 0, hit) + 1 : hit]
        if not before:
            at_line_start.append(hit)
        elif before.strip():  # a fragment of a line; indentation drift is left to the line match
            in_line.append(hit)
        hit = text.find(search, hit + 1)
    exact = at_line_start or in_line
    if len(exact) == 1:
        return text[: exact[0]] + replace + text[exact[0] + len(search) :]
    if len(exact) > 1:
        where = ", ".join(str(line_at(text, h)) for h in exact[:6])
        raise PatchError(
            f"{_describe(number, edit)}: the SEARCH text occurs {len(exact)} times (lines "
            f"{where}); include more surrounding lines so that it matches exactly once"
        )

    lines = split_lines(text)
    want, repl = _trim_blank(text_rows(edit.search), text_rows(edit.replace))
    target = _shape(want)
    n = len(target)
    stripped = [line.strip() for line in lines]
    first = target[0].strip()
    windows = [i for i in range(len(lines) - n + 1) if stripped[i] == first and _shape(lines[i : i + n]) == target]
    if len(windows) > 1:
        where = ", ".join(str(i + 1) for i in windows[:6])
        raise PatchError(
            f"{_describe(number, edit)}: the SEARCH text matches {len(windows)} places (lines "
            f"{where}) once whitespace is ignored; include more surrounding lines so that it "
            "matches exactly once"
        )
    if not windows:
        raise PatchError(f"{_describe(number, edit)}: {_why_missing(want, stripped)}")
    i = windows[0]
    found = lines[i : i + n]
    new = reindent(repl, _common_indent(want), _common_indent(found))
    tail = newline if found[-1].endswith("\n") else ""
    body = newline.join(new) + tail if new else ""
    return "".join(lines[:i]) + body + "".join(lines[i + n :])


def _why_missing(want: list[str], stripped: list[str]) -> str:
    present = set(stripped)
    for k, line in enumerate(want, 1):
        if line.strip() and line.strip() not in present:
            close = difflib.get_close_matches(line.strip(), stripped, n=1, cutoff=0.6)
            hint = ""
            if close:
                hint = f"; the closest line is {stripped.index(close[0]) + 1}: {quote_line(close[0])}"
            return (
                f"line {k} of the SEARCH text, {quote_line(line.strip())}, is not in the current "
                f"program{hint}. Copy SEARCH text exactly from the program"
            )
    return (
        "every SEARCH line exists in the program, but not consecutively in this order. Copy "
        "a contiguous stretch of the program exactly"
    )


def apply_diff(parent: str, edits: Sequence[Edit], comment: str = "#") -> str:
    """Apply `edits` in order to `parent`; the child keeps the parent's frozen text."""
    if not edits:
        raise PatchError(
            "no SEARCH/REPLACE blocks found; write each edit as '<<<<<<< SEARCH', the exact "
            "current lines, '=======', the new lines, '>>>>>>> REPLACE'"
        )
    text = parent
    for number, edit in enumerate(edits, 1):
        if not edit.search.strip():
            raise PatchError(f"edit {number}: the SEARCH part is empty; copy the lines to replace from the program")
        text = _apply_one(text, edit, number)
        try:
            check_frozen(parent, text, comment)
        except PatchError as exc:
            raise PatchError(f"{_describe(number, edit)}: {exc}") from None
    if text == parent:
        raise PatchError("the edits leave the program unchanged")
    return text


# ---------------------------------------------------------------- full rewrites

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$")
_ALIASES = {
    "python": {"python", "py", "python3"},
    "cpp": {"cpp", "c++", "cc", "cxx", "hpp"},
    "c": {"c", "h"},
    "cuda": {"cuda", "cu"},
    "javascript": {"javascript", "js"},
    "typescript": {"typescript", "ts"},
    "shell": {"shell", "bash", "sh", "zsh"},
    "text": {"text", "txt", "plain", "plaintext", "markdown", "md"},
    "yaml": {"yaml", "yml"},
    "rust": {"rust", "rs"},
    "go": {"go", "golang"},
}


@dataclass(frozen=True)
class _Fence:
    tag: str
    body: list[str]


def _fences(text: str) -> tuple[list[_Fence], int]:
    """Closed fenced blocks in `text`, and the line of a fence left open (0 if none)."""
    fences: list[_Fence] = []
    opener: tuple[str, str, int] | None = None
    body: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        m = _FENCE.match(line)
        if opener is None:
            if m:
                opener, body = (m.group(1), m.group(2).lower(), number), []
        elif m and not m.group(2) and m.group(1)[0] == opener[0][0] and len(m.group(1)) >= len(opener[0]):
            fences.append(_Fence(opener[1], body))
            opener = None
        else:
            body.append(line)
    return fences, (opener[2] if opener else 0)


def extract_code(reply: str, language: str = "python", require_fence: bool = True) -> str:
    """The program in a full-rewrite reply: the fenced block for `language`, else the longest."""
    text = reply.replace("\r\n", "\n").replace("\r", "\n")
    fences, unclosed = _fences(text)
    if not fences:
        if unclosed:
            raise PatchError(
                f"the code block opened at line {unclosed} of the reply is never closed with "
                "```; was the reply cut off?"
            )
        if require_fence:
            raise PatchError(
                f"no fenced code block in the reply; put the whole new program in one ```{language} ... ``` block"
            )
        if not text.strip():
            raise PatchError("the reply is empty")
        return text.strip("\n") + "\n"
    names = _ALIASES.get(language, {language})
    tagged = [f for f in fences if f.tag in names]
    best = max(tagged or fences, key=lambda f: sum(len(line) for line in f.body))
    if not "".join(best.body).strip():
        raise PatchError("the code block in the reply is empty")
    return _joined(best.body)


def _has_markers(text: str, comment: str) -> bool:
    try:
        return evolve_blocks(text, comment)[0].marked
    except PatchError as exc:
        raise PatchError(f"the EVOLVE-BLOCK markers in the reply's code are broken: {exc}") from None


def _repeats_frozen(parent: str, blocks: Sequence[Block], code: str) -> bool:
    """True if `code` looks like the whole program with its markers dropped."""
    frozen = [
        line.strip()
        for _, seg in frozen_parts(parent, blocks)
        for line in split_lines(seg)
        if line.strip() and "EVOLVE-BLOCK-" not in line
    ]
    if len(frozen) < 2:
        return False
    present = {line.strip() for line in split_lines(code)}
    return sum(line in present for line in frozen) >= 0.8 * len(frozen)


def _loosely_equal(a: str, b: str) -> bool:
    return [line.rstrip() for line in a.splitlines()] == [line.rstrip() for line in b.splitlines()]


def apply_rewrite(
    parent: str,
    reply: str,
    *,
    language: str = "python",
    comment: str | None = None,
    require_fence: bool = True,
) -> str:
    """The child of a full-rewrite reply, with the parent's frozen text kept byte for byte.

    Frozen text that differs only by trailing whitespace or line ends is restored from the
    parent; a real change to it is a `PatchError`.
    """
    comment = comment or COMMENT_PREFIX.get(language, "#")
    code = extract_code(reply, language, require_fence)
    blocks = evolve_blocks(parent, comment)
    marked = blocks[0].marked
    if marked and not _has_markers(code, comment):
        if len(blocks) > 1:
            raise PatchError(
                f"the program has {len(blocks)} EVOLVE-BLOCKs; reply with the whole program, markers included"
            )
        if _repeats_frozen(parent, blocks, code):
            raise PatchError(
                "the reply repeats the frozen code but drops the EVOLVE-BLOCK markers; reply "
                f"with the whole program keeping the '{comment} EVOLVE-BLOCK-START' and "
                f"'{comment} EVOLVE-BLOCK-END' lines"
            )
        old = split_lines(parent[blocks[0].start : blocks[0].end])
        rows = text_rows(code)
        new = reindent(rows, _common_indent(rows), _common_indent(old))
        child = splice_blocks(parent, blocks, [_joined(new)])
    else:
        child = code
        if not parent.endswith("\n") and child.endswith("\n") and not marked:
            child = child[:-1]
        if marked:
            child_blocks = evolve_blocks(child, comment)
            if len(child_blocks) == len(blocks) and all(
                _loosely_equal(a, b)
                for (_, a), (_, b) in zip(frozen_parts(parent, blocks), frozen_parts(child, child_blocks), strict=True)
            ):
                child = splice_blocks(parent, blocks, [child[b.start : b.end] for b in child_blocks])
    check_frozen(parent, child, comment)
    if child == parent:
        raise PatchError("the rewrite is identical to the current program")
    return child
