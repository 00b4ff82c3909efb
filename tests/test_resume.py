"""Resuming from the snapshot of derived state: what a resumed run starts from is the same
whether it restores the snapshot and replays the closings after it or replays every closing,
and a snapshot that does not fit (other settings, a store that disagrees) is not used."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, as_schema_1, cli, status
from test_engine import QUADRATIC, FakePool

from evoengine.archive import Archive
from evoengine.config import load_config
from evoengine.engine import Engine, Ledger, resume
from evoengine.engine.build import build_novelty, build_proposer
from evoengine.engine.rundir import RunDir
from evoengine.engine.screening import digest
from evoengine.llm.bandit import make_bandit
from evoengine.problem import EvalResult, load_problem
from evoengine.records import ProposalContext
from evoengine.store import RunStore

SETTINGS = (
    "islands.count=3",
    "islands.population=12",
    "islands.migration_interval=15",
    "islands.reset_interval=70",
    "novelty.embedder=ngram",
    "novelty.threshold=0.995",
    "novelty.window=20",
    "concurrency.proposals=3",
)


class InProcessPool(FakePool):
    """Runs the offline operators' children of the quadratic in this process (no sandbox)."""

    async def evaluate(self, text: str, *, label: str = "candidate", entry: str = "evaluate", **_) -> EvalResult:
        await asyncio.sleep(0)
        scope: dict = {}
        try:
            exec(compile(text, "candidate", "exec"), scope)  # noqa: S102 - the test's own operators' children
            a, b, c = (float(v) for v in scope["params"]())
        except Exception as exc:  # noqa: BLE001 - any failure of a child is an invalid result
            return EvalResult.invalid(f"{type(exc).__name__}: {exc}")
        error = (a - 1.5) ** 2 + (b + 2.0) ** 2 + (c - 0.75) ** 2
        return EvalResult(score=-error, features={"a": max(-5, min(5, a)), "b": max(-5, min(5, b))})


class CrashingProposer:
    """The offline operators, until proposal `crash_at`: then an error ends the run (no clean
    stop, so no snapshot at shutdown: the last one is mid-run)."""

    def __init__(self, config, loaded, crash_at: int):
        self.inner = build_proposer(config, loaded)
        self.crash_at = crash_at
        self.proposed = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def propose(self, ctx: ProposalContext):
        self.proposed += 1
        if self.proposed == self.crash_at:
            raise RuntimeError("the engine crashed")
        return await self.inner.propose(ctx)


def crashed_run(tmp_path: Path, crash_at: int, *overrides: str) -> tuple[Engine, Path]:
    config = load_config(None, [*SETTINGS, *overrides, "budget.candidates=5000"])
    loaded = load_problem(QUADRATIC)
    path = tmp_path / "run"
    run = RunDir.create(path, config, {"problem": "quadratic", "problem_path": str(loaded.path)})
    eng = Engine(run, config, loaded, pool=InProcessPool(), proposer=CrashingProposer(config, loaded, crash_at))
    with pytest.raises(RuntimeError, match="crashed"):
        asyncio.run(eng.run())
    return eng, path


def rebuilt(path: Path, *overrides: str, snapshot: bool = True, saved: Path | None = None) -> Ledger:
    """A ledger rebuilt from the store as a resume does: from the snapshot, or (on a copy of
    the store without it) by replaying every closing."""
    if not snapshot:
        copy = path.parent / f"{path.name}-replayed-{random.random()}"
        copy.mkdir()
        with sqlite3.connect(path / "archive.sqlite") as src, sqlite3.connect(copy / "archive.sqlite") as dst:
            src.backup(dst)
            dst.execute("DELETE FROM resume")
        path = copy
    if saved is not None:
        config = load_config(None, list(overrides), base=yaml.safe_load(saved.read_text()))
    else:
        config = load_config(None, [*SETTINGS, *overrides, "budget.candidates=5000"])
    loaded = load_problem(QUADRATIC)
    store = RunStore.open(path)
    ledger = Ledger(store, config, loaded.problem, Archive(config, loaded.problem))
    proposer = build_proposer(config, loaded)
    ledger.observe, ledger.bandit, ledger.learner = proposer.observe, proposer.stats, proposer
    ledger.novelty = build_novelty(config, loaded.problem, proposer, lambda call: None)
    ledger.rebuild()
    return ledger


def observed(ledger: Ledger) -> dict:
    """Everything a resumed run's next steps depend on, as a user of the engine would see it."""
    archive = ledger.archive
    selections = []
    for k in range(40):
        sel = archive.select(random.Random(k))
        selections.append((sel.island, sel.parent.id, [c.id for c in sel.inspirations], sel.source))
    islands = [(list(i.scores), list(i.children), [c.id for c in i.members]) for i in archive.islands.islands]
    probe = archive.best().text + "\n"
    verdicts = [asyncio.run(ledger.novelty.check(probe, island)) for island in range(3)]
    return {
        "closed": ledger.closed,
        "scores": (ledger.seed_score, ledger.start_score, ledger.spend),
        "failures": {k: list(v) for k, v in ledger.failures.items() if v},
        "kinds": dict(ledger.kinds),
        "archive": archive.state(),
        "stats": archive.stats(),
        "elite_map": archive.elite_map(),
        "islands": islands,
        "selections": selections,
        "novelty": (ledger.novelty.state(), verdicts),
        "proposer": ledger.learner.state(),
        "best": archive.best().id,
    }


def test_a_snapshot_and_the_closings_after_it_give_the_state_of_a_full_replay(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "SNAPSHOT_EVERY", 64)
    live, path = crashed_run(tmp_path, crash_at=300)
    store = RunStore.open(path)
    closed, _, _ = store.resume_point()
    tail = sum(1 for _ in store.closings(closed))
    store.close()
    assert closed >= 192 and tail > 0  # a mid-run snapshot, closings after it
    assert live.archive.islands.resets and live.archive.islands.migrations and live.ledger.kinds["novelty"]

    from_snapshot, replayed = rebuilt(path), rebuilt(path, snapshot=False)
    assert from_snapshot.restored == closed and replayed.restored is None
    assert observed(from_snapshot) == observed(replayed)
    assert from_snapshot.closed == live.ledger.closed  # ... the state of the run that crashed


def test_a_snapshot_taken_under_other_settings_or_disagreeing_with_the_store_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "SNAPSHOT_EVERY", 64)
    _, path = crashed_run(tmp_path, crash_at=150)
    other = ("islands.population=8",)
    first = rebuilt(path, *other)
    assert first.restored is None  # replayed whole ...
    assert observed(first) == observed(rebuilt(path, *other, snapshot=False))
    first.store.close()
    assert rebuilt(path, *other).restored == first.closed  # ... and snapshot at once for the next resume
    conn = sqlite3.connect(path / "archive.sqlite")
    conn.execute("UPDATE resume SET seq = seq - 1")  # as if the store lost the admission it follows
    conn.commit()
    conn.close()
    assert RunStore.open(path).resume_point() is None
    assert observed(rebuilt(path)) == observed(rebuilt(path, snapshot=False))


def test_a_clean_stop_leaves_a_snapshot_of_the_end_and_resume_continues_from_it(tmp_path):
    config = load_config(None, [*SETTINGS, "budget.candidates=90"])
    loaded = load_problem(QUADRATIC)
    path = tmp_path / "run"
    run = RunDir.create(path, config, {"problem": "quadratic", "problem_path": str(loaded.path)})
    asyncio.run(Engine(run, config, loaded, pool=InProcessPool()).run())
    store = RunStore.open(path)
    closed, _, _ = store.resume_point()
    assert closed == len(list(store.closings())) and not list(store.closings(closed))
    store.close()
    again = load_config(None, [*SETTINGS, "budget.candidates=140"])
    eng = Engine(RunDir.reopen(path), again, loaded, pool=InProcessPool())
    summary = asyncio.run(eng.run())
    assert summary.admitted == 140 and eng.ledger._snapped >= closed


def test_a_bandit_restored_from_its_state_chooses_as_the_one_that_learnt_it():
    config = load_config(None, ["bandit.kind=thompson"])
    live = make_bandit(config.bandit, ["a", "b", "c"])
    rng = random.Random(3)
    for _ in range(200):
        live.observe(rng.choice("abc"), rng.random(), rng.random() / 100)
    restored = make_bandit(config.bandit, ["a", "b", "c"])
    restored.restore(live.state())
    assert restored.state() == live.state() and restored.probabilities() == live.probabilities()
    assert [restored.select(random.Random(i)) for i in range(20)] == [live.select(random.Random(i)) for i in range(20)]


@pytest.mark.slow
def test_a_run_killed_after_a_snapshot_resumes_from_it_with_the_state_of_a_full_replay(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "evoengine.cli", "run", str(quadratic), "--budget", "2000", "--run-dir", str(run_dir)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            try:
                with sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True) as conn:
                    snapped = conn.execute("SELECT closed FROM resume").fetchone()
                    closed = conn.execute("SELECT MAX(closed) FROM candidates").fetchone()[0]
            except sqlite3.Error:
                continue
            if snapped and closed >= snapped[0] + 20:  # killed mid-run, well after the snapshot
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert snapped and closed > snapped[0], "the run ended or never snapshot before the kill"

    config_file = run_dir / "config.yaml"
    from_snapshot = rebuilt(run_dir, saved=config_file)
    replayed = rebuilt(run_dir, snapshot=False, saved=config_file)
    assert 0 < from_snapshot.restored < from_snapshot.closed and replayed.restored is None
    assert observed(from_snapshot) == observed(replayed)
    admitted = from_snapshot.admitted
    from_snapshot.store.close()

    cli("resume", str(run_dir), "--budget", str(admitted + 30), "-q", check=True)
    assert status(run_dir)["admitted"] == admitted + 30
    with sqlite3.connect(run_dir / "archive.sqlite") as conn:
        resumed = [r for (r,) in conn.execute("SELECT closed FROM candidates WHERE closed IS NOT NULL ORDER BY closed")]
        assert resumed == list(range(1, len(resumed) + 1))  # one closing order, continued without a gap
        assert conn.execute("SELECT closed FROM resume").fetchone()[0] == resumed[-1]  # the clean stop's snapshot


def test_after_a_resume_a_copy_of_a_candidate_evaluated_before_it_is_refused_without_evaluation(tmp_path):
    from evoengine.engine.screening import Screen
    from evoengine.records import Proposal

    _, path = crashed_run(tmp_path, crash_at=40)
    ledger = rebuilt(path)
    screen = Screen("python", ledger.evaluated, None)
    old = ledger.archive.best()
    copy = "# the same program, reformatted\n" + old.text.replace(" = ", "=")
    failure = asyncio.run(screen.check(Proposal(copy, "offline:x", "offline", (old.id,)), 0, 10_000))
    assert failure is not None and failure.kind == "novelty" and "already evaluated" in failure.reason
    fresh = old.text.replace("return (a, b, c)", "return (a, b, c + 0.5)")
    assert asyncio.run(screen.check(Proposal(fresh, "offline:x", "offline", (old.id,)), 0, 10_001)) is None


def test_a_store_from_before_schema_4_is_upgraded_and_resumed_again_without_the_snapshot_misleading_it(tmp_path):
    _, path = crashed_run(tmp_path, crash_at=60)
    as_schema_1(path)  # as evoengine 0.1 wrote it: no schedule, digests, snapshot
    first = rebuilt(path)  # upgraded, digests filled in, every closing replayed
    assert first.restored is None and first.store.evaluated_digest(digest(first.archive.best().text, "python"))
    first.store.close()
    again = rebuilt(path)  # its snapshot follows closings that have no number: not trusted, replayed again
    assert again.restored is None and observed(again) == observed(first)
