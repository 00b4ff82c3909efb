"""Crossover of two parents' blocks: literal by literal when their structure matches,
else definition by definition, statement by statement, or at one cut point."""

from __future__ import annotations

import ast
import copy
import random
from collections.abc import Sequence

from ...patches import indent_of, reindent
from .. import some_of
from .code import Change, Code, Edit, Unit
from .mutations import SYMBOL, format_float, literal_text, number_nodes, number_value, unit_end, unit_text


class _MaskNumbers(ast.NodeTransformer):
    def visit(self, node: ast.AST) -> ast.AST:
        if number_value(node) is not None:
            return ast.Name(id="_", ctx=ast.Load())
        return super().visit(node)


def _shape(nodes: Sequence[ast.AST]) -> str:
    """The structure of `nodes` with every numeric literal masked."""
    return "\n".join(ast.dump(_MaskNumbers().visit(copy.deepcopy(n))) for n in nodes)


def _key(stmt: ast.stmt) -> str | None:
    """What a statement defines ("def f", "x", "x +="), to align the statements of two parents."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return f"def {stmt.name}"
    target = None
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target = stmt.targets[0]
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        target = stmt.target
    if isinstance(target, ast.Name):
        return f"{target.id} {SYMBOL.get(type(stmt.op), '@')}=" if isinstance(stmt, ast.AugAssign) else target.id
    return None


def _keyed(units: list[Unit]) -> dict[str, Unit]:
    """Units by what they define; a repeated definition gets its occurrence number."""
    out: dict[str, Unit] = {}
    for unit in units:
        key = _key(unit.node)
        if key is not None:
            n = sum(k.split("#")[0] == key for k in out)
            out[f"{key}#{n}"] = unit
    return out


def _moved(other: Code, start: int, end: int, indent: str) -> str:
    """Other's text[start:end], re-indented from its own indentation to `indent`."""
    rows = other.text[start:end].split("\n")
    return "\n".join(reindent(rows, indent_of(rows[0]), indent))


class _Crossover:
    """Mixes one block of the parent (`p`) with the same block of the second parent (`o`)."""

    def __init__(self, p: Code, o: Code, rng: random.Random):
        self.p, self.o, self.rng = p, o, rng

    def numbers(self, p_roots: Sequence[ast.AST], o_roots: Sequence[ast.AST]) -> tuple[list[Edit], str] | None:
        """Uniform crossover of the numeric literals of two same-shaped pieces of code."""
        p_nums = [n for r in p_roots for n in number_nodes(self.p, r)]
        o_nums = [n for r in o_roots for n in number_nodes(self.o, r)]
        if len(p_nums) != len(o_nums):
            return None
        differ = [k for k, (a, b) in enumerate(zip(p_nums, o_nums, strict=True)) if number_value(a) != number_value(b)]
        if not differ:
            return None
        rng = self.rng
        how = {k: rng.choices(("keep", "take", "blend"), weights=(0.4, 0.45, 0.15))[0] for k in differ}
        if all(h == "keep" for h in how.values()):
            how[rng.choice(differ)] = "take"
        if all(h == "take" for h in how.values()):
            how[rng.choice(differ)] = "blend" if len(differ) == 1 else "keep"
        edits = []
        for k in differ:
            node, theirs = p_nums[k], o_nums[k]
            if how[k] == "take":
                text = self.o.source(theirs)
            elif how[k] == "blend":
                text = self._blend(number_value(node), number_value(theirs))
                if text is None:
                    continue
            else:
                continue
            start, end = self.p.span(node)
            edits.append(Edit(self.p.index, start, end, literal_text(self.p, node, text)))
        if not edits:
            return None
        taken = sum(h == "take" for h in how.values())
        blended = len(edits) - taken
        return edits, (
            f"{taken} of {len(differ)} differing constants taken" + (f", {blended} blended" if blended else "")
        )

    def _blend(self, mine: int | float, theirs: int | float) -> str | None:
        if isinstance(mine, int) and isinstance(theirs, int):
            low, high = sorted((mine, theirs))
            return str(self.rng.randint(low + 1, high - 1)) if high - low > 1 else None
        value = mine + self.rng.uniform(-0.25, 1.25) * (theirs - mine)
        return format_float(value, float(mine))

    def statements(
        self, p_body: list[ast.stmt], o_body: list[ast.stmt], depth: int = 0
    ) -> tuple[list[Edit], str] | None:
        """Crossover of two statement lists: named genes, then aligned positions, else one point."""
        p_units, o_units = self.p.units(p_body), self.o.units(o_body)
        if not p_units or not o_units:
            return None
        p_keyed, o_keyed = _keyed(p_units), _keyed(o_units)
        pairs = [
            (k.split("#")[0], p_keyed[k], o_keyed[k])
            for k in p_keyed
            if k in o_keyed and ast.dump(p_keyed[k].node) != ast.dump(o_keyed[k].node)
        ]
        if not pairs and len(p_units) == len(o_units):
            pairs = [
                (f"statement at line {a.line}", a, b)
                for a, b in zip(p_units, o_units, strict=True)
                if ast.dump(a.node) != ast.dump(b.node)
            ]
        if len(pairs) == 1:
            _, a, b = pairs[0]
            inner = self._pair(a, b, depth)
            if inner is not None:
                return inner
        if pairs:
            chosen = some_of(pairs, self.rng)
            indent = indent_of(unit_text(self.p, p_units[0]))
            moved = [(a, _moved(self.o, b.start, unit_end(self.o, b), indent)) for _, a, b in chosen]
            edits = [Edit(self.p.index, a.start, unit_end(self.p, a), text) for a, text in moved]
            return edits, "took " + ", ".join(name for name, _, _ in chosen)
        return self._one_point(p_units, o_units)

    def _pair(self, a: Unit, b: Unit, depth: int) -> tuple[list[Edit], str] | None:
        """Mix two versions of one statement: their constants, or their bodies."""
        if _shape([a.node]) == _shape([b.node]):
            return self.numbers([a.node], [b.node])
        body_a, body_b = getattr(a.node, "body", None), getattr(b.node, "body", None)
        if isinstance(body_a, list) and isinstance(body_b, list) and depth < 4:
            return self.statements(body_a, body_b, depth + 1)
        return None

    def _one_point(self, p_units: list[Unit], o_units: list[Unit]) -> tuple[list[Edit], str] | None:
        n, m = len(p_units), len(o_units)
        if max(n, m) < 2:
            return None
        k = self.rng.randint(1, max(n, m) - 1)
        start = unit_end(self.p, p_units[min(k, n) - 1])
        end = unit_end(self.p, p_units[-1])
        text = ""
        if k < m:
            indent = indent_of(unit_text(self.p, p_units[0]))
            text = "\n" + _moved(self.o, o_units[k].start, unit_end(self.o, o_units[-1]), indent)
        return [Edit(self.p.index, start, end, text)], f"first {min(k, n)} statements kept, the rest taken"


def crossover_blocks(pairs: list[tuple[Code, Code]], rng: random.Random) -> Change | None:
    p, o = rng.choice(pairs)
    cross = _Crossover(p, o, rng)
    made = cross.numbers(p.body, o.body) if _shape(p.body) == _shape(o.body) else cross.statements(p.body, o.body)
    return Change(*made, "crossover") if made else None
