"""Lineage graph, terminal ancestry and exports, on run stores built with the RunStore API.

`make_run` is also used by the report and viewer tests (import it from here).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import networkx as nx
import pytest
from conftest import cli

from evoengine.errors import EvoError
from evoengine.lineage import (
    ancestry,
    build_lineage,
    export_lineage,
    render_ancestry,
    score_change,
    summarize_change,
)
from evoengine.records import Candidate, ModelCall
from evoengine.store import RunReader, RunStore

SEED_TEXT = "def solve(x):\n    # EVOLVE-BLOCK-START\n    y = x\n    # EVOLVE-BLOCK-END\n    return y\n"
MODELS = ("gpt-small", "gpt-large", "offline")


def mutate(text: str, k: int) -> str:
    """A child text: one line added inside the evolve block (so diffs are `+1 -0`)."""
    lines = text.splitlines()
    at = lines.index("    # EVOLVE-BLOCK-END") if "    # EVOLVE-BLOCK-END" in lines else len(lines)
    lines.insert(at, f"    y = y + {k}")
    return "\n".join(lines) + "\n"


def make_run(
    run_dir: Path, n: int = 40, seed: int = 0, islands: int = 3, texts: dict[int, str] | None = None
) -> RunStore:
    """A plausible finished run: `n` admitted candidates over `islands` islands, with
    crossovers, invalid children, failed proposals, model calls, migrations and state.
    `texts` replaces the text of the k-th admitted child (1-based) with the given one."""
    rng = random.Random(seed)
    store = RunStore.create(
        run_dir,
        meta={
            "problem": "toy",
            "features": [
                {"name": "x", "low": 0.0, "high": 1.0, "bins": 5},
                {"name": "length", "low": 0.0, "high": 40.0, "bins": 4},
            ],
        },
    )
    (Path(run_dir) / "config.yaml").write_text(f"seed: 0\nbudget:\n  candidates: {n}\n")
    sid = store.start_proposal(0)
    store.admit(
        Candidate(id=sid, text=SEED_TEXT, score=1.0, valid=True, operator="seed", features={"x": 0.1, "length": 5.0}),
        reward=None,
    )
    admitted = [(sid, SEED_TEXT, 1.0, 0, 0)]  # id, text, score, island, generation
    k = 0
    while len(admitted) < n:
        k += 1
        pid_, ptext, pscore, pisland, pgen = rng.choice(admitted)
        island = pisland if rng.random() < 0.8 else rng.randrange(islands)
        model = rng.choice(MODELS)
        proposal = store.start_proposal(island)
        cost = 0.0 if model == "offline" else 0.001 * rng.randint(1, 5)
        if model != "offline":
            store.record_call(
                proposal,
                ModelCall(
                    model=model,
                    request_hash=f"h{k}",
                    messages=[{"role": "user", "content": "go"}],
                    reply="ok",
                    tokens_in=100,
                    tokens_out=50,
                    cost=cost,
                    latency_s=0.1,
                ),
            )
        if k % 9 == 5:
            store.fail(
                proposal,
                reason=f"SEARCH block {k} did not match the parent",
                operator="diff",
                model=model,
                parents=(pid_,),
                cost=cost,
            )
            continue
        parents = (pid_,)
        if k % 6 == 0 and len(admitted) > 2:
            other = rng.choice([a for a in admitted if a[0] != pid_])
            parents = (pid_, other[0])
        text = mutate(ptext, k)
        if texts and len(admitted) in texts:
            text = texts[len(admitted)]
        valid = k % 7 != 3
        score = pscore + rng.uniform(-0.2, 0.5) if valid else None
        events = (
            [("migration", {"source": pisland, "target": (pisland + 1) % islands, "ids": [pid_]})]
            if k % 10 == 0
            else []
        )
        store.admit(
            Candidate(
                id=proposal,
                text=text,
                parents=parents,
                island=island,
                generation=pgen + 1,
                operator="crossover" if len(parents) > 1 else "diff",
                model=model,
                score=score,
                valid=valid,
                metrics={"sum_radii": score or 0.0},
                features={"x": rng.random(), "length": float(len(text.splitlines()))},
                feedback="" if valid else "IndexError: list index out of range",
                cost=cost,
                change=f"+    y = y + {k}",
            ),
            reward=max(0.0, (score or pscore) - pscore),
            events=events,
            state={
                "bandit": {m: {"calls": k, "mean_reward": 0.1, "cost": 0.0, "probability": 1 / 3} for m in MODELS},
                "archive": {
                    "islands": [
                        {"island": i, "size": 5, "best_id": sid, "best_score": 1.0, "admitted": k, "invalid": 0}
                        for i in range(islands)
                    ]
                },
            },
        )
        admitted.append((proposal, text, score if valid else pscore, island, pgen + 1))
    return store


@pytest.fixture
def run(tmp_path: Path) -> RunReader:
    make_run(tmp_path / "run", n=40).close()
    reader = RunReader.open(tmp_path / "run")
    yield reader
    reader.close()


def test_graph_has_every_admitted_candidate_and_no_dangling_parent(run: RunReader) -> None:
    graph = build_lineage(run)
    admitted = [c.id for c in run.candidates()]
    assert sorted(graph.nodes) == sorted(admitted)
    assert not any(graph.nodes[n]["missing"] for n in graph.nodes)
    for c in run.candidates():
        assert [p for p in c.parents if not graph.has_edge(p, c.id)] == []
        if c.parents:
            assert graph.edges[c.parents[0], c.id]["kind"] == "main"
        for other in c.parents[1:]:
            assert graph.edges[other, c.id]["kind"] == "second"
    assert any(d["kind"] == "second" for _, _, d in graph.edges(data=True)), "the run has crossovers"
    node = graph.nodes[admitted[5]]
    assert {"score", "valid", "island", "generation", "operator", "model", "cost"} <= set(node)


def test_ancestors_evicted_from_populations_stay_in_the_lineage(tmp_path: Path) -> None:
    # A long chain where the engine's island population only holds the newest candidate:
    # every ancestor is gone from the population state but not from the graph.
    store = RunStore.create(tmp_path / "run", meta={})
    text, parent = SEED_TEXT, None
    for k in range(12):
        cid = store.start_proposal(0)
        text = mutate(text, k) if parent else text
        store.admit(
            Candidate(id=cid, text=text, parents=(parent,) if parent else (), generation=k, score=float(k), valid=True),
            reward=None,
            state={"islands": [{"population": [cid]}]},
        )
        parent = cid
    store.close()
    store = RunReader.open(tmp_path / "run")
    graph = build_lineage(store)
    chain = ancestry(graph, parent)
    assert len(chain) == 12 and chain[0] == store.seed().id and chain[-1] == parent
    assert graph.number_of_edges() == 11


def test_a_parent_that_was_never_admitted_becomes_a_marked_node_not_a_dangling_edge(tmp_path: Path) -> None:
    store = RunStore.create(tmp_path / "run", meta={})
    cid = store.start_proposal(0)
    store.admit(Candidate(id=cid, text="x", parents=(999,), score=1.0, valid=True), reward=None)
    graph = build_lineage(RunReader.open(tmp_path / "run"))
    assert graph.nodes[999]["missing"] is True
    assert ancestry(graph, cid) == [999, cid]


def test_migrations_are_marked_from_the_events_table(run: RunReader) -> None:
    graph = build_lineage(run)
    moved = {n for n in graph.nodes if graph.nodes[n]["migrated_to"]}
    expected = {cid for e in run.events("migration") for cid in e["data"]["ids"]}
    assert expected and moved == expected
    crossing = [(u, v) for u, v, d in graph.edges(data=True) if d["kind"] == "main" and d["migration"]]
    assert crossing, "children made on another island than their parent's are marked"
    assert all(graph.nodes[u]["island"] != graph.nodes[v]["island"] for u, v in crossing)


def test_ancestry_follows_main_parents_from_the_seed(run: RunReader) -> None:
    graph = build_lineage(run)
    best = run.best(1)[0]
    chain = ancestry(graph, best.id)
    assert chain[0] == run.seed().id and chain[-1] == best.id
    for parent, child in zip(chain, chain[1:], strict=False):
        assert run.get(child).parents[0] == parent
    with pytest.raises(EvoError):
        ancestry(graph, 123456)


def test_render_ancestry_shows_the_root_to_best_chain_with_scores_and_changes(run: RunReader) -> None:
    best = run.best(1)[0]
    chain = ancestry(build_lineage(run), best.id)
    out = render_ancestry(run)
    assert out.splitlines()[0].startswith(f"ancestry of #{best.id} (best candidate")
    positions = [out.index(f"#{cid} [") for cid in chain]
    assert positions == sorted(positions), "root first, best last"
    assert f"score {best.score:.6g}" in out
    seed_line = next(line for line in out.splitlines() if line.startswith(f"#{chain[0]} ["))
    assert "score 1" in seed_line
    # every step after the seed added one line, and its first changed line is quoted
    assert out.count("+1 -0 lines: y = y + ") == len(chain) - 1
    step = run.get(chain[1])
    assert f"({'+' if step.score >= 1.0 else '-'}{abs(step.score - 1.0):.4g})" in out
    assert f"[{step.operator} · {step.model}]" in out


def test_render_ancestry_of_a_given_candidate_and_of_an_empty_run(run: RunReader, tmp_path: Path) -> None:
    some = [c for c in run.candidates() if c.generation >= 2][0]
    out = render_ancestry(run, some.id)
    assert out.splitlines()[0].startswith(f"ancestry of #{some.id} (candidate")
    assert out.rstrip().splitlines()[-2].startswith(f"└─ #{some.id} [") or f"└─ #{some.id} [" in out
    RunStore.create(tmp_path / "empty", meta={}).close()
    assert "no valid candidate" in render_ancestry(RunReader.open(tmp_path / "empty"))


def test_change_summary_counts_lines_and_quotes_the_first_change() -> None:
    s = summarize_change("a\nb\nc\n", "a\nB\nc\nd\n")
    assert (s.added, s.removed, s.first) == (2, 1, "B")
    assert str(s) == "+2 -1 lines: B"
    assert str(summarize_change("a\nb\n", "a\n")) == "+0 -1 lines: -b"
    assert str(summarize_change("a\n", "a\n")) == "no text change"


def test_exports_parse_back(run: RunReader, tmp_path: Path) -> None:
    graph = build_lineage(run)
    g = nx.read_graphml(export_lineage(run, "graphml", tmp_path / "l.graphml"))
    assert g.number_of_nodes() == graph.number_of_nodes()
    assert g.number_of_edges() == graph.number_of_edges()
    some = next(iter(graph.nodes))
    assert g.nodes[str(some)]["island"] == graph.nodes[some]["island"]
    assert {d["kind"] for _, _, d in g.edges(data=True)} == {"main", "second"}

    data = json.loads(export_lineage(run, "json", tmp_path / "l.json").read_text())
    back = nx.node_link_graph(data, edges="edges")
    assert set(back.nodes) == set(graph.nodes) and set(back.edges) == set(graph.edges)
    assert back.nodes[some]["score"] == graph.nodes[some]["score"]

    dot = export_lineage(run, "dot", tmp_path / "l.dot").read_text()
    assert dot.startswith("digraph ") and dot.rstrip().endswith("}")
    for u, v in graph.edges:
        assert f"  {u} -> {v}" in dot
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg", str(tmp_path / "l.dot"), "-o", str(tmp_path / "l.svg")], check=True)


def test_unknown_export_format_says_which_formats_exist(run: RunReader, tmp_path: Path) -> None:
    with pytest.raises(EvoError, match="json, graphml, dot"):
        export_lineage(run, "png", tmp_path / "x.png")


def test_score_changes_print_without_float_noise() -> None:
    assert score_change(0.1 + 0.2, 0.3) == "±0"
    assert score_change(1.0 + 2.220446049250313e-16, 1.0) == "±0"
    assert score_change(2.5, 2.0) == "+0.5" and score_change(1.0, 1.25) == "-0.25"
    assert score_change(None, 1.0) == ""


def test_lineage_of_a_failed_proposal_says_what_it_was_and_shows_its_parents_ancestry(run: RunReader) -> None:
    failed = next(p for p in run.proposals() if p["outcome"] == "failed")
    out = render_ancestry(run, failed["id"])
    assert out.startswith(f"#{failed['id']} is a failed proposal (patch), not an admitted candidate")
    assert failed["reason"] in out and f"its parent #{failed['parents'][0]}" in out
    assert f"#{failed['parents'][0]} [" in out.split("its parent", 1)[1]


def test_lineage_command_exports_to_standard_output_without_o_and_names_unknown_ids(run: RunReader) -> None:
    run_dir = Path(run.path).parent
    proc = cli("lineage", str(run_dir), "--export", "json", check=True)
    back = nx.node_link_graph(json.loads(proc.stdout), edges="edges")
    assert set(back.nodes) == set(build_lineage(run).nodes)
    assert not list(run_dir.glob("lineage.*")), "nothing written into the run directory"
    missing = cli("lineage", str(run_dir), "--candidate", "99999")
    assert missing.returncode == 2 and "no candidate or proposal with id 99999" in missing.stderr
