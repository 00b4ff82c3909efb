"""The one-parent edits: nudged numeric literals, swapped operators, duplicated, deleted and
swapped statements."""

from __future__ import annotations

import ast
import copy
import functools
import math
import random
from typing import Any

from .code import TERMINAL, Change, Code, Edit, Unit

# ---------------------------------------------------------------- numeric literals


def number_value(node: ast.AST) -> int | float | None:
    """The value of a numeric literal (a negated literal counts as one), else None."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):  # not bool, not complex
        return sign * node.value
    return None


def number_nodes(code: Code, root: ast.AST | None = None) -> list[ast.expr]:
    """Numeric literals in source order, a negated literal once (not also its operand)."""
    found: list[ast.expr] = []
    inner: set[int] = set()
    for node in code.walk(root):
        if id(node) in inner:
            continue
        if number_value(node) is not None:
            found.append(node)
            if isinstance(node, ast.UnaryOp):
                inner.add(id(node.operand))
    return found


def perturb(value: int | float, rng: random.Random, step: float = 1.0) -> int | float:
    """A new value near `value`, of the same type.

    Floats: Gaussian noise whose scale is log-uniform in [10^-2.5, 1] three times in four
    (moves that find better regions) and in [10^-6, 10^-2.5] otherwise (fine tuning near an
    optimum), relative to the value when it is above 1 in size (three times in four) and
    absolute otherwise. Measured on the circle-packing seed, the two ranges beat a single
    log-uniform one over 200-600 proposals. Moves relative to a value below 1 would mostly keep
    a 0.0 nudged to 3.6e-05 that small (a threshold that needs to reach 1, a
    coefficient that needs to reach 0.5).
    """
    if isinstance(value, int):
        r = rng.random()
        if r < 0.6:
            return value + rng.choice((-1, 1))
        if r < 0.85:
            return value + rng.choice((-1, 1)) * rng.randint(2, 5)
        return value + (round(value * rng.gauss(0.0, 0.25)) or rng.choice((-1, 1)))
    scale = step * 10 ** (rng.uniform(-6.0, -2.5) if rng.random() < 0.25 else rng.uniform(-2.5, 0.0))
    size = abs(value) if abs(value) > 1 and rng.random() < 0.75 else 1.0
    return value + rng.gauss(0.0, scale * size)


def format_float(new: float, old: float) -> str | None:
    """`new` with enough digits to show how it differs from `old`, or None if it cannot."""
    if not math.isfinite(new):
        return None
    step = abs(new - old) or abs(new) or 1.0
    digits = max(2, min(17, math.ceil(math.log10(abs(new) / step + 1.0)) + 2))
    for d in range(digits, 18):
        text = f"{new:.{d}g}"
        if float(text) != old:
            break
    else:
        return None
    if not any(c in text for c in ".en"):
        text += ".0"
    return text


def literal_text(code: Code, node: ast.expr, text: str) -> str:
    """`text` made safe to stand where `node` stands (a negative number may need brackets)."""
    if not text.startswith("-") or isinstance(node, ast.UnaryOp):
        return text
    parent = code.parents.get(node)
    if isinstance(parent, (ast.BinOp, ast.UnaryOp, ast.Attribute)) or (
        isinstance(parent, ast.Subscript) and parent.value is node
    ):
        return f"({text})"
    return text


def _weighted_sample(rng: random.Random, items: list[Any], weights: list[float], k: int) -> list[Any]:
    items, weights, out = list(items), list(weights), []
    for _ in range(min(k, len(items))):
        i = rng.choices(range(len(items)), weights=weights)[0]
        out.append(items.pop(i))
        weights.pop(i)
    return out


def _site_weight(code: Code, node: ast.expr) -> float:
    """Floats are what numeric constructions tune; an int used as an index rarely is."""
    if isinstance(number_value(node), float):
        return 3.0
    parent = code.parents.get(node)
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return 0.1
    return 1.0


@functools.lru_cache(maxsize=64)
def _constant_sites(code: Code) -> tuple[list[ast.expr], list[float]]:
    """The block's numeric literals and their weights (cached with the parent's `Code`)."""
    nodes = number_nodes(code)
    return nodes, [_site_weight(code, node) for node in nodes]


def mutate_constant(codes: list[Code], rng: random.Random, step: float = 1.0) -> Change | None:
    found = [(code, node, w) for code in codes for node, w in zip(*_constant_sites(code), strict=True)]
    if not found:
        return None
    sites = [(code, node) for code, node, _ in found]
    weights = [w for _, _, w in found]
    k = rng.choices((1, 2, 3), weights=(0.7, 0.2, 0.1))[0]
    edits, notes = [], []
    for code, node in _weighted_sample(rng, sites, weights, k):
        old = number_value(node)
        new = perturb(old, rng, step)
        text = str(new) if isinstance(new, int) else format_float(new, old)
        if text is None or new == old:
            continue
        start, end = code.span(node)
        edits.append(Edit(code.index, start, end, literal_text(code, node, text)))
        notes.append(f"constant {code.source(node)} -> {text} at line {code.line_of(node)}")
    return Change(edits, "; ".join(notes), "constant")  # no edits: retried as "changed nothing"


# ---------------------------------------------------------------- operator swaps

# Each operator: its symbol, its precedence (higher binds tighter), what a swap may make it.
_OPERATORS: list[tuple[type, str, int, tuple[type, ...]]] = [
    (ast.Or, "or", 1, (ast.And,)),
    (ast.And, "and", 2, (ast.Or,)),
    (ast.Lt, "<", 4, (ast.LtE, ast.Gt)),
    (ast.LtE, "<=", 4, (ast.Lt, ast.GtE)),
    (ast.Gt, ">", 4, (ast.GtE, ast.Lt)),
    (ast.GtE, ">=", 4, (ast.Gt, ast.LtE)),
    (ast.Eq, "==", 4, (ast.NotEq,)),
    (ast.NotEq, "!=", 4, (ast.Eq,)),
    (ast.Is, "is", 4, (ast.IsNot,)),
    (ast.IsNot, "is not", 4, (ast.Is,)),
    (ast.In, "in", 4, (ast.NotIn,)),
    (ast.NotIn, "not in", 4, (ast.In,)),
    (ast.BitOr, "|", 5, (ast.BitAnd, ast.BitXor)),
    (ast.BitXor, "^", 6, (ast.BitOr,)),
    (ast.BitAnd, "&", 7, (ast.BitOr,)),
    (ast.LShift, "<<", 8, (ast.RShift,)),
    (ast.RShift, ">>", 8, (ast.LShift,)),
    (ast.Add, "+", 9, (ast.Sub, ast.Mult)),
    (ast.Sub, "-", 9, (ast.Add,)),
    (ast.Mult, "*", 10, (ast.Div, ast.Add)),
    (ast.Div, "/", 10, (ast.Mult, ast.FloorDiv)),
    (ast.FloorDiv, "//", 10, (ast.Div, ast.Mod)),
    (ast.Mod, "%", 10, (ast.FloorDiv,)),
    (ast.Pow, "**", 12, (ast.Mult,)),
]
SYMBOL = {op: symbol for op, symbol, _, _ in _OPERATORS}
_PRECEDENCE = {op: level for op, _, level, _ in _OPERATORS}
_SWAPS = {op: swaps for op, _, _, swaps in _OPERATORS}


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def _operator_sites(code: Code) -> list[tuple[ast.AST, int]]:
    """(node, index of the operator) for every operator that has a swap."""
    sites: list[tuple[ast.AST, int]] = []
    for node in code.walk():
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _SWAPS:
            if isinstance(node, ast.BinOp) and (_is_text(node.left) or _is_text(node.right)):
                continue  # "%d" % x and string concatenation
            sites.append((node, 0))
        elif isinstance(node, ast.BoolOp):
            sites.append((node, 0))
        elif isinstance(node, ast.Compare):
            sites += [(node, k) for k, op in enumerate(node.ops) if type(op) in _SWAPS]
    return sites


def mutate_operator(codes: list[Code], rng: random.Random) -> Change | None:
    sites = [(code, node, k) for code in codes for node, k in _operator_sites(code)]
    if not sites:
        return None
    code, node, k = rng.choice(sites)
    changed = copy.copy(node)
    if isinstance(node, ast.Compare):
        changed.ops = list(node.ops)
        old = node.ops[k]
        changed.ops[k] = new = rng.choice(_SWAPS[type(old)])()
    else:
        old = node.op
        changed.op = new = rng.choice(_SWAPS[type(old)])()
    text = ast.unparse(changed)
    if _PRECEDENCE[type(new)] < _PRECEDENCE[type(old)]:
        text = f"({text})"
    start, end = code.span(node)
    change = f"operator '{SYMBOL[type(old)]}' -> '{SYMBOL[type(new)]}' at line {code.line_of(node)}"
    return Change([Edit(code.index, start, end, text)], change, "operator")


# ---------------------------------------------------------------- statement edits


def unit_end(code: Code, unit: Unit) -> int:
    """Where a unit's last line ends, before its newline."""
    return unit.end - 1 if code.text[unit.start : unit.end].endswith("\n") else unit.end


def unit_text(code: Code, unit: Unit) -> str:
    return code.text[unit.start : unit_end(code, unit)]


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)  # moving these does nothing


def mutate_statement(codes: list[Code], rng: random.Random) -> Change | None:
    """Duplicate, delete or swap statements of one list, where the program runs: a statement
    after a return (or raise, break, continue) is only copied to a place that runs or swapped
    into it, nothing is put after a return, and a return is never copied."""
    lists = []
    for code in codes:
        for body in code.bodies():
            units = [u for u in code.units(body) if not isinstance(u.node, _DEFINITIONS)]
            live = [u for u in units if id(u.node) not in code.dead]
            swappable = live + [u for u in units if id(u.node) in code.dead][:1]
            copies = [u for u in units if not isinstance(u.node, TERMINAL)]  # a copied return only kills code
            lists.append((code, body, copies, live, swappable))
    choices = {
        "duplicate": [x for x in lists if x[2] and x[3]],
        "delete": [x for x in lists if x[3] and len(x[1]) >= 2],
        "swap": [x for x in lists if len(x[4]) >= 2],
    }
    kind = rng.choice([k for k, v in choices.items() if v] or [None])
    if kind is None:
        return None
    code, _, copies, live, swappable = rng.choice(choices[kind])
    if kind == "duplicate":
        unit = rng.choice(copies)
        target = rng.randrange(len(live) + (not isinstance(live[-1].node, TERMINAL)))
        if target < len(live):  # before live[target]
            edit = Edit(code.index, live[target].start, live[target].start, unit_text(code, unit) + "\n")
            where = f"before line {live[target].line}"
        else:
            at = unit_end(code, live[-1])
            edit = Edit(code.index, at, at, "\n" + unit_text(code, unit))
            where = f"after line {live[-1].line}"
        return Change([edit], f"duplicate statement at line {unit.line} {where}", kind)
    if kind == "delete":
        unit = rng.choice(live)
        first = unit_text(code, unit).strip().split("\n")[0]
        change = f"delete statement at line {unit.line}: {first!r}"
        return Change([Edit(code.index, unit.start, unit.end, "")], change, kind)
    i = rng.randrange(len(swappable) - 1)
    j = i + 1 if rng.random() < 0.7 else rng.randrange(i + 1, len(swappable))
    a, b = swappable[i], swappable[j]
    edits = [
        Edit(code.index, a.start, unit_end(code, a), unit_text(code, b)),
        Edit(code.index, b.start, unit_end(code, b), unit_text(code, a)),
    ]
    return Change(edits, f"swap statements at lines {a.line} and {b.line}", kind)
