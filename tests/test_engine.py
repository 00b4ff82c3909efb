"""The engine's logic in process, with a pool and a proposer that do no real work: budgets,
stops, the minibatch gate's cache, turn order when replaying, and a resumed ledger that is
the same as the live one. Fast; the subprocess runs elsewhere cover the real pool."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sqlite3
import types
from pathlib import Path

import pytest

from evoengine.archive import Archive
from evoengine.config import load_config
from evoengine.engine import Engine, Ledger
from evoengine.engine.copies import Behaviours
from evoengine.engine.rundir import RunDir
from evoengine.problem import BEHAVIOUR, EvalResult, load_problem, safe_text
from evoengine.records import Candidate, ModelCall, Proposal, ProposalFailed
from evoengine.report.compare import run_curves
from evoengine.report.data import run_summary
from evoengine.store import RunReader, RunStore

QUADRATIC = Path(__file__).resolve().parent / "problems" / "quadratic"
TARGET = (1.5, -2.0, 0.75)


class FakePool:
    """Scores `a = ...` constants against the quadratic's target, in no time; counts calls."""

    def __init__(self, invalid_children: str | None = None):
        self.limits = types.SimpleNamespace(timeout_s=5.0)
        self.calls: list[tuple[str, str]] = []
        self.invalid_children = invalid_children

    async def start(self) -> None:
        return None

    async def evaluate(
        self, text: str, *, label: str = "candidate", entry: str = "evaluate", proposal: int | None = None
    ) -> EvalResult:
        self.calls.append((label, entry))
        await asyncio.sleep(0)
        if self.invalid_children and label != "seed":
            return EvalResult.invalid(self.invalid_children)
        values = [float(v) for v in re.findall(r"^\s*[abc] = (-?[0-9.e-]+)", text, re.M)]
        error = sum((v - t) ** 2 for v, t in zip(values, TARGET, strict=True))
        return EvalResult(score=-error, metrics={"error": error}, features={"a": values[0], "b": values[1]})

    async def close(self) -> None:
        return None


class FakeProposer:
    """Nudges one constant of the parent (or fails, when told to), like a tiny offline operator."""

    def __init__(self, fail: str | None = None, cost: float = 0.0):
        self.fail = fail
        self.cost = cost
        self.observed: list[tuple[str, float, float]] = []

    async def start(self) -> None:
        return None

    async def propose(self, ctx) -> Proposal:
        await asyncio.sleep(ctx.rng.random() / 1000)  # finish out of order
        if self.fail:
            raise ProposalFailed(self.fail, operator="fake", model="m", cost=self.cost)
        ctx.record_call(ModelCall("m", "h", [], "reply", cost=self.cost))
        lines = ctx.parent.text.split("\n")
        spots = [i for i, line in enumerate(lines) if re.match(r"\s*[abc] = ", line)]
        i = ctx.rng.choice(spots)
        name, value = lines[i].split(" = ")
        lines[i] = f"{name} = {float(value) + ctx.rng.gauss(0, 0.5):.6f}"
        return Proposal("\n".join(lines), "fake", "m", (ctx.parent.id,), cost=self.cost)

    def observe(self, arm: str, reward: float, cost: float, **how) -> None:
        self.observed.append((arm, reward, cost))

    def stats(self) -> dict:
        return {"m": {"calls": len(self.observed)}}

    async def aclose(self) -> None:
        return None


def engine(tmp_path: Path, *overrides: str, pool=None, proposer=None, name: str = "run") -> Engine:
    config = load_config(None, ["islands.count=2", "novelty.enabled=false", *overrides])
    loaded = load_problem(QUADRATIC)
    run = RunDir.create(tmp_path / name, config, {"problem": "quadratic", "problem_path": str(loaded.path)})
    return Engine(run, config, loaded, pool=pool or FakePool(), proposer=proposer or FakeProposer())


def rows(run_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(run_dir / "archive.sqlite")
    try:
        return conn.execute(
            "SELECT id, status, closed, text, parents, operator, score, reason, kind FROM candidates ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def test_a_run_admits_exactly_its_budget_and_closes_every_proposal_once(tmp_path):
    summary = asyncio.run(engine(tmp_path, "budget.candidates=30", "concurrency.proposals=4").run())
    assert summary.stopped == "budget" and summary.admitted == 30
    table = rows(tmp_path / "run")
    assert [r[1] for r in table] == ["evaluated"] * 30
    assert sorted(r[2] for r in table) == list(range(1, 31))  # each closed once, in one order
    assert summary.best.score > summary.seed_score


def test_a_proposer_that_keeps_failing_stops_the_run_with_the_latest_reason(tmp_path):
    proposer = FakeProposer(fail="the reply held no diff")
    summary = asyncio.run(engine(tmp_path, "budget.candidates=500", proposer=proposer).run())
    assert summary.stopped == "failing" and summary.admitted == 1
    assert "proposals all failed" in summary.message and "the reply held no diff" in summary.message
    assert summary.exit_code == 1
    assert all(reward == 0.0 for _, reward, _ in proposer.observed)  # a failing model looks bad to the bandit


def test_invalid_results_for_one_reason_stop_the_run_but_mixed_reasons_do_not(tmp_path):
    pool = FakePool(invalid_children="evaluate() raised ImportError: No module named 'x' (at /tmp/c123/cand.py)")
    summary = asyncio.run(engine(tmp_path, "budget.candidates=200", pool=pool).run())
    assert summary.stopped == "failing" and summary.admitted == 21
    assert "all invalid for the same reason" in summary.message
    assert (
        asyncio.run(engine(tmp_path, "budget.invalid_streak=null", pool=FakePool("x"), name="r2").run()).admitted == 200
    )


def test_the_target_score_ends_the_run_as_soon_as_it_is_reached(tmp_path):
    summary = asyncio.run(engine(tmp_path, "budget.candidates=2000", "budget.target_score=-4").run())
    assert summary.stopped == "target" and summary.best.score >= -4 and summary.admitted < 2000
    assert summary.exit_code == 0


def test_the_money_budget_stops_the_run_within_the_calls_in_flight(tmp_path):
    proposer = FakeProposer(cost=0.01)
    summary = asyncio.run(engine(tmp_path, "budget.candidates=500", "budget.cost_usd=0.2", proposer=proposer).run())
    assert summary.stopped == "money"
    assert 0.2 <= summary.spend <= 0.2 + 3 * 0.01


def test_the_gate_scores_each_parent_once_and_evaluates_in_full_only_children_that_beat_it(tmp_path):
    eng = engine(tmp_path, "budget.candidates=40", "concurrency.proposals=3")
    from evoengine.engine.gate import Gate

    eng.gate = Gate(eng.pool)
    summary = asyncio.run(eng.run())
    minibatch = [label for label, entry in eng.pool.calls if entry == "minibatch"]
    parents = [label for label in minibatch if label.startswith("parent")]
    assert len(parents) == len(set(parents))  # never twice for one parent
    table = rows(tmp_path / "run")
    screened = [r for r in table if r[8] == "gate"]
    full = [label for label, entry in eng.pool.calls if entry == "evaluate" and label != "seed"]
    assert screened and len(full) == summary.admitted - 1 - len(screened)


class NoisyPool(FakePool):
    """The quadratic's score plus Gaussian noise (seeded): every evaluation of one text differs.
    Keeps each text's scores, and answers invalid to the recheck named in `fail_recheck`."""

    def __init__(self, sd: float, fail_recheck: str | None = None):
        super().__init__()
        self.rng, self.sd, self.fail_recheck = random.Random(3), sd, fail_recheck
        self.scores: dict[str, list[float]] = {}

    async def evaluate(self, text: str, *, label: str = "candidate", entry: str = "evaluate", proposal=None):
        result = await super().evaluate(text, label=label, entry=entry, proposal=proposal)
        if self.fail_recheck and self.fail_recheck in label:
            return EvalResult.invalid("the evaluator ran out of instances")
        result.score += self.rng.gauss(0, self.sd)
        self.scores.setdefault(text, []).append(result.score)
        return result


def test_with_rechecks_a_noisy_run_believes_a_new_best_only_on_the_mean_of_its_evaluations(tmp_path):
    pool = NoisyPool(sd=1.0)
    eng = engine(tmp_path, "budget.candidates=80", "concurrency.proposals=3", "evaluation.rechecks=3", pool=pool)
    summary = asyncio.run(eng.run())
    assert summary.admitted == 80  # the budget counts candidates; rechecks are extra evaluations
    store = RunStore.open(tmp_path / "run")
    rechecked = {c.id: c for c in store.candidates() if "rechecks" in c.metrics}
    store.close()
    assert summary.rechecks == sum(int(c.metrics["rechecks"]) for c in rechecked.values()) > 0
    assert len(pool.calls) == 80 + summary.rechecks
    for c in rechecked.values():  # scored with the mean of all its scores, the first one kept apart
        runs = pool.scores[c.text]
        assert len(runs) == 1 + c.metrics["rechecks"] and c.score == pytest.approx(sum(runs) / len(runs))
        assert c.metrics.get("first_score", runs[0]) == runs[0]
    # A challenger whose mean fell to the best's score was not rechecked further, and a best
    # challenged again and again was scored each time: more samples than any challenger takes.
    assert any(c.metrics["rechecks"] < 3 for c in rechecked.values())
    assert max(c.metrics["rechecks"] for c in rechecked.values()) > 3
    assert f"{summary.rechecks} rechecks of bests and would-be bests" in summary.lines()[0]
    # The run's answer is the engine's best (scored more than once), wherever it is read: not a
    # child whose one lucky score was above it but never challenged it.
    store = RunStore.open(tmp_path / "run")
    best = eng.ledger.best
    assert store.best(1)[0].id == best.id and (tmp_path / "run" / "best" / "quadratic.py").read_text() == best.text
    last = store.conn.execute("SELECT data FROM events WHERE kind='best' ORDER BY id DESC").fetchone()[0]
    assert json.loads(last)["id"] == best.id and "rechecks" in best.metrics
    store.close()
    with RunReader.open(tmp_path / "run") as reader:  # the report draws the same best
        page = run_summary(reader, tmp_path / "run")
    assert page["run"]["best"]["id"] == page["bests"][-1]["id"] == best.id


def test_a_candidate_that_fails_a_recheck_is_admitted_invalid_saying_which(tmp_path):
    pool = NoisyPool(sd=0.01, fail_recheck="recheck 2 of 2")
    eng = engine(tmp_path, "budget.candidates=30", "evaluation.rechecks=2", pool=pool)
    summary = asyncio.run(eng.run())
    assert summary.best.operator == "seed"  # no child survived its second recheck
    store = RunStore.open(tmp_path / "run")
    failed = [c for c in store.candidates() if "recheck 2 of 2 was invalid" in c.feedback]
    store.close()
    assert failed and all("ran out of instances" in c.feedback and not c.valid for c in failed)


class LikePool(NoisyPool):
    """Says how a candidate behaves: its constants to the nearest whole number, so most nudged
    children behave as some earlier candidate; their noisy scores differ."""

    async def evaluate(self, text: str, **how) -> EvalResult:
        result = await super().evaluate(text, **how)
        values = re.findall(r"^\s*[abc] = (-?[0-9.e-]+)", text, re.M)
        result.artifacts[BEHAVIOUR] = ",".join(str(round(float(v))) for v in values)
        return result


def test_a_child_that_behaves_as_a_kept_candidate_is_one_more_sample_of_its_score(tmp_path):
    pool = LikePool(sd=0.5)
    overrides = (
        "budget.candidates=120",
        "concurrency.proposals=3",
        "evaluation.rechecks=2",
        "evaluation.pool_copies=true",
    )
    eng = engine(tmp_path, *overrides, pool=pool)
    summary = asyncio.run(eng.run())
    assert summary.admitted == 120  # copies count against the budget: each took an evaluation
    table = {c.id: c for c in RunStore.open(tmp_path / "run").candidates()}
    copies = [r for r in rows(tmp_path / "run") if r[8] == "copy"]
    assert len(copies) > 30 and all(re.match(r"behaves as candidate \d+ \(the same behaviour\)", r[7]) for r in copies)
    kept = eng.ledger.archive.kept()
    assert len({c.artifacts[BEHAVIOUR] for c in kept}) == len(kept)  # no two kept candidates behave alike
    assert all(c.id not in {r[0] for r in copies} for c in kept)
    # An original's score is the mean of every evaluation of it and of its copies.
    originals = {int(re.match(r"behaves as candidate (\d+)", r[7]).group(1)) for r in copies}
    for cid in originals:
        original, texts = (
            table[cid],
            [table[cid].text] + [table[r[0]].text for r in copies if f"candidate {cid} " in r[7]],
        )
        samples = [s for t in dict.fromkeys(texts) for s in pool.scores[t]]
        assert original.metrics["pooled"] >= 1 and original.score == pytest.approx(sum(samples) / len(samples))
    assert summary.rechecks == len(pool.calls) - 120  # copies are candidates, not rechecks
    # A resume rebuilds the same state, the copies among it.
    store = RunStore.open(tmp_path / "run")
    rebuilt = Ledger(store, eng.config, eng.problem, Archive(eng.config, eng.problem))
    rebuilt.rebuild()
    # (Replayed, each candidate comes in with its latest mean, so islands and cells may differ
    # from the live run's; the resume snapshot keeps them as they were.)
    assert (rebuilt.best.id, rebuilt.admitted, rebuilt.valid) == (eng.ledger.best.id, 120, eng.ledger.valid)
    assert rebuilt.rechecks == eng.ledger.rechecks and rebuilt.kinds == eng.ledger.kinds
    assert rebuilt.behaviours.held.keys() == eng.ledger.behaviours.held.keys()
    store.close()
    # Off (the default), every child is a candidate of its own.
    off = engine(tmp_path, "budget.candidates=40", pool=LikePool(sd=0.5), name="off")
    asyncio.run(off.run())
    assert not [r for r in rows(tmp_path / "off") if r[8] == "copy"] and len(off.ledger.archive.kept()) > 20


def test_a_replayed_schedule_closes_proposals_in_the_recorded_order(tmp_path):
    first = engine(tmp_path, "budget.candidates=25", "concurrency.proposals=4", "concurrency.evaluations=3", name="a")
    asyncio.run(first.run())
    again = engine(
        tmp_path, "budget.candidates=25", "concurrency.proposals=4", "concurrency.evaluations=3",
        f"replay={tmp_path / 'a'}", name="b",
    )  # fmt: skip
    asyncio.run(again.run())
    assert rows(tmp_path / "b") == rows(tmp_path / "a")


def test_a_ledger_rebuilt_from_the_store_equals_the_live_one(tmp_path):
    eng = engine(tmp_path, "budget.candidates=60", "concurrency.proposals=3")
    eng.proposer.fail = None
    asyncio.run(eng.run())
    live = eng.ledger
    store = RunStore.open(tmp_path / "run")
    config = eng.config
    rebuilt = Ledger(store, config, eng.problem, Archive(config, eng.problem))
    rebuilt.rebuild()
    assert rebuilt.closed == live.closed and rebuilt.spend == pytest.approx(live.spend)
    assert {k: list(v) for k, v in rebuilt.failures.items() if v} == {k: list(v) for k, v in live.failures.items() if v}
    assert rebuilt.best.id == live.best.id and rebuilt.archive.stats() == live.archive.stats()
    store.close()


@pytest.mark.slow
def test_ten_thousand_replies_and_results_with_any_code_points_are_stored_and_read_back(tmp_path):
    rng = random.Random(7)

    def text(n: int) -> str:
        return "".join(chr(rng.choice([rng.randrange(0x20, 0x7F), rng.randrange(0xD800, 0xE000),
                                       rng.randrange(0x80, 0x110000)])) for _ in range(n))  # fmt: skip

    config = load_config(None, ["islands.count=1", "novelty.enabled=false"])
    loaded = load_problem(QUADRATIC)
    store = RunStore.create(tmp_path / "fuzz", {"problem": "q"})
    ledger = Ledger(store, config, loaded.problem, Archive(config, loaded.problem))
    for i in range(10_000):
        pid = ledger.open()
        ledger.record_call(
            pid, ModelCall("m", "h", [{"role": "user", "content": text(20)}], text(rng.randrange(0, 60)))
        )
        raw = {"score": rng.random(), "valid": rng.random() < 0.7, "feedback": text(30),
               "metrics": {text(5): 1.0}, "artifacts": {text(3): text(10)}}  # fmt: skip
        result = EvalResult.coerce(raw)
        candidate = Candidate.scored(result, id=pid, text=text(40), parents=(1,) if i else (), operator="fuzz")
        ledger.admit(candidate, kind=None if result.valid else "evaluation")
    read = list(store.candidates())
    assert len(read) == 10_000
    for candidate in read[:200]:
        for value in (candidate.text, candidate.feedback, *candidate.metrics, *candidate.artifacts.values()):
            assert safe_text(value) == value  # what is stored can be written to any UTF-8 file or page
    store.close()


def test_free_copies_stop_a_search_only_after_a_long_run_of_them(tmp_path):
    class Copier(FakeProposer):
        async def propose(self, ctx) -> Proposal:
            return Proposal(ctx.parent.text, "fake", "offline", (ctx.parent.id,))  # a free copy of its parent

    summary = asyncio.run(engine(tmp_path, "budget.candidates=100", "novelty.enabled=true", proposer=Copier()).run())
    assert summary.stopped == "failing" and summary.admitted == 1
    assert "the last 250 proposals all failed; the latest (novelty)" in summary.message
    # With novelty rejection off, nothing refuses a copy: each one is evaluated.
    summary = asyncio.run(engine(tmp_path, "budget.candidates=100", proposer=Copier(), name="off").run())
    assert summary.stopped != "failing" and summary.admitted == 100


def test_a_copy_of_a_child_still_in_evaluation_waits_for_its_score_instead_of_asking_again(tmp_path):
    """A deterministic paid model asked the same prompt gives the same reply: while the first
    child is evaluated, its copies must not end the run as failing nor spin on paid calls."""

    class SlowPool(FakePool):
        async def evaluate(self, text: str, **how) -> EvalResult:
            await asyncio.sleep(0.05)
            return await super().evaluate(text, **how)

    class Deterministic(FakeProposer):
        async def propose(self, ctx) -> Proposal:  # one edit per parent: a to a + 0.1
            ctx.record_call(ModelCall("m", "h", [], "reply", cost=0.01))
            a = float(re.search(r"a = (-?[0-9.]+)", ctx.parent.text).group(1))
            text = re.sub(r"a = -?[0-9.]+", f"a = {a + 0.1:.6f}", ctx.parent.text)
            return Proposal(text, "fake", "m", (ctx.parent.id,), cost=0.01)

    overrides = ("budget.candidates=8", "novelty.enabled=true", "concurrency.proposals=4", "selection.refine=true")
    summary = asyncio.run(engine(tmp_path, *overrides, pool=SlowPool(), proposer=Deterministic()).run())
    assert summary.stopped == "budget" and summary.admitted == 8, summary.message
    in_flight = [r for r in rows(tmp_path / "run") if r[1] == "failed" and "still being evaluated" in (r[7] or "")]
    assert in_flight and all("the same program as candidate" in r[7] for r in in_flight)
    assert len(in_flight) <= 5 * 8  # at most one per proposal slot (proposals + 1) between two admissions


def test_a_long_run_forgets_the_behaviours_of_candidates_it_no_longer_keeps():
    admitted: list[Candidate] = []
    archive = types.SimpleNamespace(kept=lambda: admitted[-50:], holds=lambda c: c in admitted[-50:])
    seen = Behaviours(archive)
    for i in range(20_000):
        admitted.append(Candidate(i, "x", valid=True, score=0.0, artifacts={BEHAVIOUR: str(i)}))
        seen.add(admitted[-1])
    assert len(seen.held) < 2_100  # bounded by what the archive keeps, not by the run's length
    child = Candidate(20_000, "y", valid=True, score=1.0, artifacts={BEHAVIOUR: "19999"})
    assert seen.original(child) is admitted[-1]
    assert seen.original(Candidate(20_001, "y", valid=True, score=1.0, artifacts={BEHAVIOUR: "5"})) is None


def test_the_best_that_status_and_best_show_is_the_engines_not_the_highest_single_score(tmp_path):
    """A child scored once, above the best's mean but below the lucky score the best had when it
    came, is never the best: the store says which candidate is, as the engine changes it."""
    config = load_config(None, ["islands.count=1", "novelty.enabled=false"])
    loaded = load_problem(QUADRATIC)
    store = RunStore.create(tmp_path / "run", {"problem": "q"})
    ledger = Ledger(store, config, loaded.problem, Archive(config, loaded.problem))

    def admit(score: float, rechecks: int = 0, parent: Candidate | None = None) -> Candidate:
        metrics = {"rechecks": float(rechecks)} if rechecks else {}
        result = EvalResult(score=score, metrics=metrics)
        candidate = Candidate.scored(
            result, id=ledger.open(), text=f"x = {score}", parents=(parent.id,) if parent else ()
        )
        ledger.admit(candidate, parent=parent)
        return candidate

    seed = admit(0.0)
    lucky = admit(1.3, rechecks=1, parent=seed)  # a mean of two samples
    once = admit(1.2, parent=seed)  # below the lucky mean when it came: not rechecked, not the best
    steady = admit(1.0, rechecks=3, parent=seed)
    assert ledger.best is lucky and store.best(1)[0].id == lucky.id
    assert ledger.rescore(lucky, 0.2) is True  # (1.3 * 2 + 0.2) / 3: the lucky best gives way
    assert ledger.best is steady and store.best(1)[0].id == steady.id != once.id
    assert ledger.rescore(steady, 1.0) is False
    store.close()
    # What compare, the report and the benchmark read: the same best, as it changed.
    with RunReader.open(tmp_path / "run") as reader:
        assert [i for _, i in reader.best_curve()] == [seed.id, lucky.id, lucky.id, steady.id]
        page = run_summary(reader, tmp_path / "run")
    assert [b["id"] for b in page["bests"]] == [seed.id, lucky.id, steady.id]
    curves = run_curves(tmp_path / "run")
    assert curves["best_score"] == pytest.approx(1.0) and curves["curve"]["best"][-1] == pytest.approx(1.0)
