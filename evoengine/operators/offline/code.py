"""One EVOLVE-BLOCK as Python: its syntax tree, its statements and their source spans, and
the edits an operator makes to it."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ...blocks import Block, evolve_blocks

TERMINAL = (ast.Return, ast.Raise, ast.Break, ast.Continue)  # nothing after one in its list runs


@dataclass(frozen=True)
class Edit:
    block: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Change:
    """What one operator did: the edits, a description for the lineage, the operator's name."""

    edits: list[Edit]
    change: str
    name: str


@dataclass(frozen=True)
class Unit:
    """A statement that fills whole lines: `code.text[start:end]` is exactly its lines."""

    node: ast.stmt
    start: int
    end: int
    line: int  # its first line in the whole candidate


class Code:
    """One EVOLVE-BLOCK's content parsed as Python, with AST positions mapped to offsets.
    Never changed once built (edits are new text), so one parent's analysis serves many children."""

    def __init__(self, index: int, text: str, first_line: int):
        self.index = index
        self.text = text
        self.first_line = first_line
        self.lines = text.split("\n")
        self.starts = [0]
        for line in self.lines[:-1]:
            self.starts.append(self.starts[-1] + len(line) + 1)
        first_code = next((s for s in self.lines if s.strip() and not s.lstrip().startswith("#")), "")
        self.shift = 1 if first_code[:1] in (" ", "\t") else 0
        source = "if True:\n" + text if self.shift else text
        self.tree = ast.parse(source)
        if self.shift:
            wrapper = self.tree.body[0]
            if len(self.tree.body) != 1 or not isinstance(wrapper, ast.If):
                raise SyntaxError("the block's indentation is not uniform")
            self.body: list[ast.stmt] = wrapper.body
        else:
            self.body = self.tree.body
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in self._walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node
        # ids of the nodes that never run: statements after a return, raise, break or continue in
        # their list, and all inside them. An edit there changes the text and not the program, and
        # costs an evaluation that can only tie; a run whose best carries such a tail wastes edits on it.
        self.dead: set[int] = set()
        lists = list(self._lists())
        for body in lists:
            end = next((k for k, stmt in enumerate(body) if isinstance(stmt, TERMINAL)), len(body))
            for stmt in body[end + 1 :]:
                self.dead.update(id(n) for n in self._walk(stmt))
        self._bodies = [body for body in lists if id(body[0]) not in self.dead]

    @staticmethod
    def _walk(root: ast.AST) -> Iterator[ast.AST]:
        """Depth-first, in source order, skipping f-strings (their positions are unreliable)."""
        stack = [root]
        while stack:
            node = stack.pop()
            yield node
            if not isinstance(node, ast.JoinedStr):
                stack.extend(reversed(list(ast.iter_child_nodes(node))))

    def walk(self, root: ast.AST | None = None) -> Iterator[ast.AST]:
        """The nodes under `root`, or the nodes of the block's code that runs (not `dead`)."""
        if root is not None:
            return self._walk(root)
        return (n for s in self.body for n in self._walk(s) if id(n) not in self.dead)

    @functools.cached_property
    def dump(self) -> str:
        """The tree without positions: equal for blocks that differ only in layout and comments."""
        return ast.dump(self.tree)

    def offset(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1 - self.shift]
        if not line.isascii():  # AST columns count UTF-8 bytes
            col = len(line.encode()[:col].decode(errors="ignore"))
        return self.starts[lineno - 1 - self.shift] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (
            self.offset(node.lineno, node.col_offset),
            self.offset(node.end_lineno, node.end_col_offset),
        )

    def source(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.text[start:end]

    def line_of(self, node: ast.AST) -> int:
        """The line of `node` in the whole candidate."""
        return self.first_line + node.lineno - 1 - self.shift

    def unit(self, stmt: ast.stmt) -> Unit | None:
        """`stmt` as whole lines (with its decorators and trailing comment), if it has them."""
        first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])])
        top, bottom = first - 1 - self.shift, stmt.end_lineno - 1 - self.shift  # line indices
        start, end = self.span(stmt)
        head = self.lines[top]
        before = (
            head.lstrip().startswith("@") if first < stmt.lineno else not self.text[self.starts[top] : start].strip()
        )
        stop = self.starts[bottom] + len(self.lines[bottom])
        after = self.text[end:stop].strip()
        if top < 0 or not before or (after and not after.startswith("#")):
            return None  # shares a line with other code (`a = 1; b = 2`)
        if stop < len(self.text):
            stop += 1  # the newline
        return Unit(stmt, self.starts[top], stop, self.first_line + top)

    def units(self, body: Sequence[ast.stmt]) -> list[Unit]:
        """The statements of `body` that edits may move, copy or drop (not the docstring)."""
        out = []
        for k, stmt in enumerate(body):
            if k == 0 and _is_docstring(stmt):
                continue
            if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
                continue
            unit = self.unit(stmt)
            if unit is not None:
                out.append(unit)
        return out

    def bodies(self) -> list[list[ast.stmt]]:
        """Every statement list in the block that runs (not inside `dead` code), the top level first."""
        return self._bodies

    def _lists(self) -> Iterator[list[ast.stmt]]:
        yield self.body
        for stmt in self.body:
            for node in self._walk(stmt):
                for _, value in ast.iter_fields(node):
                    if isinstance(value, list) and value and all(isinstance(v, ast.stmt) for v in value):
                        yield value


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


@functools.lru_cache(maxsize=16)
def analysed(text: str, comment: str) -> tuple[tuple[Block, ...], tuple[Code | None, ...]]:
    """A parent's blocks and each parsed, after checking that the whole text compiles (raises
    SyntaxError, ValueError or PatchError). Cached: a run draws the same parent again and again
    (its best, or the seed for the independent-sampling baseline), and most of a proposal's
    cost was parsing it."""
    compile(text, "<parent>", "exec", dont_inherit=True)
    blocks = evolve_blocks(text, comment)
    return tuple(blocks), tuple(parse_blocks(text, blocks))


def parse_blocks(text: str, blocks: Sequence[Block]) -> list[Code | None]:
    """Each block of `text` as Python, or None where a block does not parse on its own."""
    codes: list[Code | None] = []
    for k, block in enumerate(blocks):
        try:
            codes.append(Code(k, text[block.start : block.end], block.line))
        except (SyntaxError, ValueError, RecursionError):
            codes.append(None)
    return codes
