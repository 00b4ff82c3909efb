"""The lineage of a run: who descends from whom, read from the run store.

`build_lineage` turns the admitted candidates into a networkx `DiGraph` (edges parent ->
child; a crossover's second parent is an edge of kind "second"; an edge that crosses
islands, or a candidate named by a migration event, is marked). `ancestry` walks the
main-parent chain, `render_ancestry` prints it for the terminal with what each step
changed, and `export_lineage` writes the graph as JSON, GraphML or Graphviz DOT.

The store keeps every admitted candidate, so ancestors evicted from island populations or
from the MAP-Elites archive are still nodes: no edge ever dangles.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from .errors import EvoError
from .files import FilesError, split_files
from .records import Candidate
from .store import RunReader, outcome

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("json", "graphml", "dot")

# ---------------------------------------------------------------- migrations


@dataclass(frozen=True)
class Migration:
    """One candidate sent from one island to another, as recorded in the events table."""

    candidate: int
    source: int | None
    target: int | None
    seq: int | None


def migrations(store: RunReader) -> list[Migration]:
    """Migration events as the archive writes them: `{"source": i, "target": j, "ids": [...]}`."""
    out: list[Migration] = []
    for event in store.events("migration"):
        data = event["data"] if isinstance(event["data"], dict) else {}
        for cid in data.get("ids") or []:
            if isinstance(cid, int):
                out.append(Migration(cid, data.get("source"), data.get("target"), event["seq"]))
    return out


# ---------------------------------------------------------------- the graph


def build_lineage(store: RunReader) -> nx.DiGraph:
    """The lineage graph of every admitted candidate (edges parent -> child).

    Node attributes: seq, score (None if it has none), valid, outcome (valid, invalid or
    screened), island, generation, operator, model, cost, created, origin, migrated_to
    (islands a migration sent it to).
    Edge attributes: kind ("main" for parents[0], "second" for a crossover's other
    parent), migration (the child was made on another island than this parent's, which
    only a migration or an island reset makes possible; roots live on every island).
    A parent that is not an admitted candidate (which a healthy store never has) becomes
    a node with missing=True so that no edge dangles.
    """
    graph = nx.DiGraph(run=str(Path(store.path).parent.name))
    admitted = sorted((r for r in store.proposals() if r["seq"] is not None), key=lambda r: r["seq"])
    for row in admitted:
        same = {k: row[k] for k in ("seq", "score", "outcome", "island", "generation", "model", "created", "origin")}
        graph.add_node(
            row["id"], **same, valid=bool(row["valid"]), operator=row["operator"] or "",
            cost=float(row["cost"] or 0.0), migrated_to=[], missing=False,
        )  # fmt: skip
    parents_of = {row["id"]: row["parents"] for row in admitted}
    for child, parents in parents_of.items():
        for rank, parent in enumerate(parents):
            if parent not in graph:
                log.warning("candidate %d names parent %d, which is not an admitted candidate", child, parent)
                graph.add_node(parent, missing=True, valid=False, score=None, migrated_to=[])
            # A root (no parents) lives on every island, so only an edge from a non-root can cross.
            crosses = bool(parents_of.get(parent)) and graph.nodes[parent]["island"] != graph.nodes[child]["island"]
            graph.add_edge(parent, child, kind="main" if rank == 0 else "second", migration=crosses)
    for move in migrations(store):
        if move.candidate in graph and move.target is not None:
            graph.nodes[move.candidate]["migrated_to"].append(move.target)
    return graph


def ancestry(graph: nx.DiGraph, candidate_id: int) -> list[int]:
    """The main-parent chain from the root down to `candidate_id` (root first)."""
    if candidate_id not in graph:
        raise EvoError(f"candidate {candidate_id} is not in this run's lineage")
    chain = [candidate_id]
    seen = {candidate_id}
    node = candidate_id
    while True:
        main = [p for p in graph.predecessors(node) if graph.edges[p, node].get("kind") == "main"]
        if not main or main[0] in seen:
            break
        node = main[0]
        seen.add(node)
        chain.append(node)
    return chain[::-1]


# ---------------------------------------------------------------- the terminal view


@dataclass(frozen=True)
class ChangeSummary:
    """What a child changed in its parent's text, line by line."""

    added: int
    removed: int
    first: str  # the first changed line ("-" prefixed if it was a removal), shortened
    files: tuple[str, ...] = ()  # for candidates of several files: the files it changed

    def __str__(self) -> str:
        if not self.added and not self.removed:
            return "no text change"
        head = f"+{self.added} -{self.removed} lines" + (f" in {', '.join(self.files)}" if self.files else "")
        return f"{head}: {self.first}" if self.first else head


def changed_files(parent_text: str, child_text: str) -> tuple[str, ...]:
    """The files a child changed, when both texts are several files (`evoengine.files`)."""
    try:
        before, after = split_files(parent_text), split_files(child_text)
    except FilesError:
        return ()
    return tuple(n for n in dict.fromkeys([*before, *after]) if before.get(n) != after.get(n))


def summarize_change(parent_text: str, child_text: str, width: int = 60) -> ChangeSummary:
    """Count added/removed lines (difflib) and quote the first changed one."""
    added = removed = 0
    first = ""
    matcher = difflib.SequenceMatcher(None, parent_text.splitlines(), child_text.splitlines(), autojunk=False)
    old, new = matcher.a, matcher.b
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        removed += i2 - i1
        added += j2 - j1
        if not first:
            changed = [line for line in new[j1:j2] if line.strip()]
            if changed:
                first = changed[0].strip()
            else:
                gone = [line for line in old[i1:i2] if line.strip()]
                first = "-" + gone[0].strip() if gone else ""
    if len(first) > width:
        first = first[: width - 1] + "…"
    return ChangeSummary(added, removed, first, changed_files(parent_text, child_text))


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.6g}"


def score_change(score: float | None, parent_score: float | None) -> str:
    """`+0.0312`, `-1.5`, or `±0` when the scores differ only by float rounding."""
    if score is None or parent_score is None:
        return ""
    d = score - parent_score
    if abs(d) <= 1e-9 * max(1.0, abs(score), abs(parent_score)):
        return "±0"
    return f"{'+' if d > 0 else '-'}{abs(d):.4g}"


def _scored(c: Candidate) -> str:
    """`score 0.75`, or what the candidate was instead: `invalid`, `screened by the gate`."""
    status, _ = outcome({"status": "evaluated", "valid": c.valid, "reason": None, "feedback": c.feedback})
    if status == "valid":
        return f"score {_fmt(c.score)}"
    if status == "screened":
        return "screened by the gate"
    return f"invalid ({_fmt(c.score)})" if c.score is not None else "invalid"


def _chain(store: RunReader, candidate_id: int) -> list[Candidate]:
    """Main-parent chain read straight from the store (root first); cheap for huge runs."""
    chain = [store.get(candidate_id)]
    seen = {candidate_id}
    while chain[-1].parent is not None and chain[-1].parent not in seen:
        seen.add(chain[-1].parent)
        try:
            chain.append(store.get(chain[-1].parent))
        except EvoError:
            log.warning("candidate %d names parent %d, which is not admitted", chain[-1].id, chain[-1].parent)
            break
    return chain[::-1]


def render_ancestry(store: RunReader, candidate_id: int | None = None) -> str:
    """The ancestry of the best (or the given) candidate as a text tree, root first.

    Each step shows its score and the change from its parent, what the change did to the
    text (`+3 -1 lines: <first changed line>`), and which operator and model made it. A
    proposal that was never admitted (rejected or failed) is said for what it was, followed
    by its parent's ancestry.
    """
    other = store.proposal(candidate_id) if candidate_id is not None else None
    if other is not None and other["status"] != "evaluated":
        made_by = " · ".join(x for x in (other["operator"], other["model"]) if x) or "?"
        what = f"{other['outcome']} proposal ({other['kind'] or other['status']})"
        lines = [
            f"#{candidate_id} is a {what}, not an admitted candidate",
            f"  made by {made_by}" + (f": {other['reason']}" if other["reason"] else ""),
        ]
        if other["parents"]:
            lines += [f"  its parent #{other['parents'][0]}:", "", render_ancestry(store, other["parents"][0])]
        return "\n".join(lines)
    title = "candidate" if candidate_id is not None else "best candidate"
    if candidate_id is None:
        best = store.best(1)
        if not best:
            return "no valid candidate in this run yet"
        candidate_id = best[0].id
    chain = _chain(store, candidate_id)
    target = chain[-1]
    lines = [
        f"ancestry of #{target.id} ({title}, {_scored(target)}), "
        f"{len(chain) - 1} step{'s' if len(chain) != 2 else ''} from #{chain[0].id}",
        "",
    ]
    for depth, c in enumerate(chain):
        parent = chain[depth - 1] if depth else None
        last = depth == len(chain) - 1
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        rail = "   " if last else "│  "
        made_by = (c.operator or "?") + (f" · {c.model}" if c.model else "")
        change = score_change(c.score, parent.score) if parent and c.valid and parent.valid else ""
        delta, cost = f" ({change})" if change else "", f" · ${c.cost:.4f}" if c.cost else ""
        lines.append(f"{branch}#{c.id} [{made_by}] island {c.island} · {_scored(c)}{delta}{cost}")
        if parent is None:
            what = f"{c.origin} " if c.origin else ""
            lines.append(f"{rail}{what}seed, {len(c.text.splitlines())} lines")
        else:
            lines.append(f"{rail}{summarize_change(parent.text, c.text)}")
        if len(c.parents) > 1:
            lines.append(f"{rail}crossover with #{', #'.join(str(p) for p in c.parents[1:])}")
    return "\n".join(lines)


# ---------------------------------------------------------------- exports


def _plain(value: Any) -> Any:
    """A value GraphML can store: lists become JSON text; None is dropped by the caller."""
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return value


def _dot_quote(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _score_colour(score: float | None, low: float, high: float) -> str:
    """A viridis-like ramp from dark blue (worst) to yellow (best), as #rrggbb."""
    if score is None:
        return "#cccccc"
    t = 0.5 if high <= low else (score - low) / (high - low)
    stops = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
    pos = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(pos), len(stops) - 2)
    f = pos - i
    rgb = [round(a + (b - a) * f) for a, b in zip(stops[i], stops[i + 1], strict=True)]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def to_dot(graph: nx.DiGraph) -> str:
    """Graphviz DOT text, written directly (no pygraphviz/pydot needed)."""
    scores = [d["score"] for _, d in graph.nodes(data=True) if d.get("valid") and d.get("score") is not None]
    low, high = (min(scores), max(scores)) if scores else (0.0, 0.0)
    out = [
        f"digraph {_dot_quote(graph.graph.get('run', 'lineage'))} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
    ]
    for node, d in graph.nodes(data=True):
        if d.get("missing"):
            out.append(f'  {node} [label="#{node} (missing)", fillcolor="#ffffff", style="dashed"];')
            continue
        score = d["score"] if d.get("valid") else None
        label = f"#{node} {_fmt(d.get('score'))}\\n{d.get('operator', '')} i{d.get('island', 0)}"
        dark = score is not None and high > low and (score - low) / (high - low) < 0.5
        attrs = {
            "fillcolor": _score_colour(score, low, high),
            "fontcolor": "white" if dark else "black",
            "tooltip": f"gen {d.get('generation')} model {d.get('model') or '-'} cost {d.get('cost', 0):.4g}",
        }
        if not d.get("valid"):
            attrs["style"] = "rounded,filled,dashed"
        body = ", ".join(f"{k}={_dot_quote(v)}" for k, v in attrs.items())
        out.append(f'  {node} [label="{label}", {body}];')
    for u, v, d in graph.edges(data=True):
        attrs = ['style="dashed"'] if d.get("kind") == "second" else []  # a crossover's second parent
        attrs += ['color="#d62728"'] if d.get("migration") else []
        out.append(f"  {u} -> {v}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    out.append("}")
    return "\n".join(out) + "\n"


def to_json(graph: nx.DiGraph) -> dict[str, Any]:
    """Node-link JSON (readable back with `networkx.node_link_graph(data, edges="edges")`)."""
    return {
        "directed": True,
        "multigraph": False,
        "graph": dict(graph.graph),
        "nodes": [{"id": n, **d} for n, d in graph.nodes(data=True)],
        "edges": [{"source": u, "target": v, **d} for u, v, d in graph.edges(data=True)],
    }


def lineage_text(store: RunReader, fmt: str) -> str:
    """The run's lineage graph as `json`, `graphml` or `dot` text."""
    if fmt not in EXPORT_FORMATS:
        raise EvoError(f"unknown lineage format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    graph = build_lineage(store)
    if fmt == "json":
        return json.dumps(to_json(graph), indent=1) + "\n"
    if fmt == "dot":
        return to_dot(graph)
    plain = nx.DiGraph(**graph.graph)
    for n, d in graph.nodes(data=True):
        plain.add_node(n, **{k: _plain(v) for k, v in d.items() if v is not None})
    for u, v, d in graph.edges(data=True):
        plain.add_edge(u, v, **{k: _plain(x) for k, x in d.items() if x is not None})
    return "\n".join(nx.generate_graphml(plain)) + "\n"


def export_lineage(store: RunReader, fmt: str, path: str | Path) -> Path:
    """Write the run's lineage as `json`, `graphml` or `dot` to `path`; returns the path."""
    text = lineage_text(store, fmt)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
