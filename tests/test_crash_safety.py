"""A search survives being killed at any moment: SIGKILL of `evoengine run` / `resume` (and of
its whole process group) at random points, again and again, loses nothing that was admitted,
leaves no evaluator behind and ends with exactly the budget.

The schedule of kills is random but seeded (`KILL_SEED`), so a failure can be replayed; the
timing of the machine still varies, which is the point: every run of this test kills at
slightly different moments.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO, cli, status

from evoengine.store import RunStore

KILL_SEED = 20240607
BUDGET = 500  # large enough that no cycle finishes the run before its kill, on a quiet machine too
WORKER_MODULE = "evoengine.evaluation.worker"
# What must never change once a candidate is admitted.
ROW_COLUMNS = (
    "id",
    "seq",
    "text",
    "parents",
    "score",
    "valid",
    "island",
    "generation",
    "operator",
    "metrics",
    "features",
    "feedback",
    "origin",
)


# ---------------------------------------------------------------- reading the run from outside


def _connect(run_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True, timeout=30)


def admitted_rows(run_dir: Path) -> dict[int, tuple]:
    """Every admitted candidate, by id, with the columns that must never change."""
    conn = _connect(run_dir)
    try:
        rows = conn.execute(
            f"SELECT {', '.join(ROW_COLUMNS)} FROM candidates WHERE status='evaluated' ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    return {row[0]: row for row in rows}


def admitted_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COALESCE(MAX(seq), 0) FROM candidates").fetchone()[0]


def integrity(run_dir: Path) -> str:
    conn = _connect(run_dir)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def evaluator_processes(engine_pids: set[int]) -> list[tuple[int, str]]:
    """Evaluation workers (and anything forked from them, which keeps their command line)
    started by one of `engine_pids`, found in the process table. Other tests' workers on the
    same machine have another `--parent` and are ignored."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in args if a]
        if WORKER_MODULE not in words or "--parent" not in words:
            continue
        i = words.index("--parent")
        if i + 1 < len(words) and words[i + 1].isdigit() and int(words[i + 1]) in engine_pids:
            found.append((int(entry.name), " ".join(words)))
    return found


def wait_for_no_evaluators(engine_pids: set[int], timeout: float = 20.0) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while True:
        left = evaluator_processes(engine_pids)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


# ---------------------------------------------------------------- killing


@dataclass
class Kill:
    kind: str  # "start-up", "mid-run" or "burst"
    cycle: int
    command: str
    admitted_before: int  # what the store held when the process was started
    admitted_seen: int  # the most the poller saw committed before the kill
    admitted_after: int  # what the store holds after the kill
    at_s: float  # seconds after the process was started
    finished_by_itself: bool = False


@dataclass
class Chaos:
    run_dir: Path
    rng: random.Random
    log_dir: Path
    engine_pids: set[int] = field(default_factory=set)
    kills: list[Kill] = field(default_factory=list)
    resumes: int = 0

    def spawn(self, args: list[str], cycle: int) -> subprocess.Popen:
        out = open(self.log_dir / f"cycle{cycle:02d}.log", "w")  # the child keeps its own copy
        proc = subprocess.Popen(
            [sys.executable, "-m", "evoengine.cli", *args],
            cwd=REPO,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        out.close()
        self.engine_pids.add(proc.pid)
        return proc

    def poll_admitted(self) -> int:
        if not (self.run_dir / "archive.sqlite").exists():
            return 0
        try:
            conn = _connect(self.run_dir)
            try:
                return admitted_count(conn)
            finally:
                conn.close()
        except sqlite3.Error:
            return 0

    def cycle(self, args: list[str], kind: str, cycle: int, within: float = 2.5) -> Kill:
        """Start `evoengine ARGS`, kill its process group at a point chosen by `kind`
        (`within`: the latest moment of a start-up kill, in seconds)."""
        before = self.poll_admitted()
        proc = self.spawn(args, cycle)
        t0 = time.monotonic()
        seen = before
        if kind == "start-up":  # importing, opening the store, starting workers, replaying
            deadline = t0 + self.rng.uniform(0.0, within)
            while time.monotonic() < deadline and proc.poll() is None:
                seen = max(seen, self.poll_admitted())
                time.sleep(0.01)
        else:
            # mid-run: the search is under way (one new admission), then a random moment up to
            # 0.6 s (or 15 admissions) later; burst: straight after the k-th new admission,
            # while the next ones are being committed.
            want = before + (1 if kind == "mid-run" else self.rng.randint(1, 6))
            extra = self.rng.uniform(0.0, 0.6) if kind == "mid-run" else 0.0
            give_up = t0 + 60
            while proc.poll() is None and time.monotonic() < give_up:
                seen = max(seen, self.poll_admitted())
                if seen >= want:
                    break
                time.sleep(0.002)
            if extra:
                end = time.monotonic() + extra
                while time.monotonic() < end and proc.poll() is None and seen < before + 15:
                    seen = max(seen, self.poll_admitted())
                    time.sleep(0.01)
        at = time.monotonic() - t0
        finished = proc.poll() is not None
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        kill = Kill(kind, cycle, args[0], before, seen, self.poll_admitted(), at, finished)
        self.kills.append(kill)
        return kill


# ---------------------------------------------------------------- the test


@pytest.mark.slow
def test_resume_after_twenty_random_sigkills_loses_nothing(tmp_path, quadratic):
    run_dir = tmp_path / "run"
    logs = tmp_path / "logs"
    logs.mkdir()
    rng = random.Random(KILL_SEED)
    chaos = Chaos(run_dir, rng, logs)
    kinds = ["start-up"] * 7 + ["mid-run"] * 7 + ["burst"] * 6
    rng.shuffle(kinds)
    run_args = [
        "run",
        str(quadratic),
        "--budget",
        str(BUDGET),
        "--run-dir",
        str(run_dir),
        "-q",
        "--set",
        "concurrency.evaluations=2",
    ]
    resume_args = ["resume", str(run_dir), "-q"]
    kept: dict[int, tuple] = {}  # every row ever seen admitted, as first seen
    t_start = time.monotonic()

    def check_after_kill(kill: Kill) -> None:
        assert not kill.finished_by_itself, (
            f"cycle {kill.cycle}: the process ended before the kill (budget reached? then raise "
            f"BUDGET). Its output:\n{(logs / f'cycle{kill.cycle:02d}.log').read_text()[-3000:]}\n"
            + "\n".join(map(str, chaos.kills))
        )
        left = wait_for_no_evaluators(chaos.engine_pids)
        assert not left, f"cycle {kill.cycle} ({kill.kind}): evaluator processes outlived the kill: {left}"
        if not (run_dir / "archive.sqlite").exists():
            return
        assert integrity(run_dir) == "ok"
        said = cli("status", str(run_dir), check=True).stdout
        assert f"stopped    without saying why (killed?); `evoengine resume {run_dir}` goes on" in said
        rows = admitted_rows(run_dir)
        assert len(rows) >= kill.admitted_seen, (
            f"cycle {kill.cycle}: {kill.admitted_seen} admissions were visible before the kill, "
            f"only {len(rows)} after it"
        )
        assert len(rows) <= BUDGET
        assert sorted(r[1] for r in rows.values()) == list(range(1, len(rows) + 1))
        for cid, row in kept.items():
            assert rows.get(cid) == row, f"cycle {kill.cycle}: admitted candidate {cid} changed or vanished"
        for cid, row in rows.items():
            kept.setdefault(cid, row)

    # The very first seconds of a new run: the seed is not admitted yet.
    first = chaos.cycle(run_args, "start-up", 0, within=0.2)
    check_after_kill(first)
    # At most the seed: the first worker alone takes ~0.3 s to boot on an idle machine (a kill
    # at up to 0.4 s found a child admitted too there).
    assert first.admitted_after <= 1
    if not (run_dir / "archive.sqlite").exists():  # killed before the store existed
        proc = cli(*resume_args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "does not exist" in proc.stderr or "evoengine run" in proc.stderr, proc.stderr

    for n, kind in enumerate(kinds, start=1):
        args = resume_args if (run_dir / "archive.sqlite").exists() else run_args
        chaos.resumes += args is resume_args
        check_after_kill(chaos.cycle(args, kind, n))

    # Let it finish.
    final = chaos.spawn(resume_args, len(kinds) + 1)
    chaos.resumes += 1
    assert final.wait(timeout=300) == 0, (logs / f"cycle{len(kinds) + 1:02d}.log").read_text()
    elapsed = time.monotonic() - t_start

    rows = admitted_rows(run_dir)
    for cid, row in kept.items():
        assert rows.get(cid) == row, f"admitted candidate {cid} changed or vanished"
    assert len(rows) == BUDGET  # the budget was counted on across every kill, never exceeded
    seqs = sorted(r[1] for r in rows.values())
    assert seqs == list(range(1, BUDGET + 1))
    by_seq = {r[1]: r for r in rows.values()}
    for cid, row in rows.items():
        for parent in json.loads(row[3]):
            assert parent in rows, f"candidate {cid} has a dangling parent {parent}"
            assert rows[parent][1] < row[1], f"candidate {cid} was admitted before its parent {parent}"
    assert by_seq[1][8] == "seed"

    # Every row of every status is readable, through SQLite and through the public API.
    conn = _connect(run_dir)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM candidates GROUP BY status").fetchall())
        for row in conn.execute("SELECT parents, metrics, features, artifacts, instances, timings FROM candidates"):
            for value in row:
                json.loads(value)
    finally:
        conn.close()
    assert "pending" not in statuses
    import evoengine

    api_rows = evoengine.open_run(run_dir).candidates()
    assert [(c.id, c.text, c.score, tuple(c.parents)) for c in api_rows] == [
        (r[0], r[2], r[4], tuple(json.loads(r[3]))) for r in sorted(rows.values(), key=lambda r: r[1])
    ]
    cli("lineage", str(run_dir), "--export", "json", "-o", str(tmp_path / "lineage.json"), check=True)
    graph = json.loads((tmp_path / "lineage.json").read_text())
    assert len(graph["nodes"]) == BUDGET

    # `status --json` tells the same story as the rows.
    s = status(run_dir)
    valid = [r for r in rows.values() if r[5]]
    best = max(valid, key=lambda r: (r[4], -r[1]))
    assert s["admitted"] == BUDGET
    assert s["valid"] == len(valid)
    assert s["best_score"] == best[4] and s["best_id"] == best[0]
    assert s["seed_score"] == by_seq[1][4]
    assert s["in_flight"] == 0
    assert s["stopped"] == {"reason": "budget", "message": ""} and s["running_pid"] is None
    assert s["abandoned_proposals"] == statuses.get("abandoned", 0)
    assert s["failed_proposals"] == statuses.get("failed", 0)

    assert not wait_for_no_evaluators(chaos.engine_pids)
    leftovers = [p for pid in chaos.engine_pids for p in Path("/tmp").glob(f"evoengine-eval-{pid}-*")]
    assert not leftovers, f"temporary folders of killed runs were not removed: {leftovers}"

    kills = [k for k in chaos.kills if not k.finished_by_itself]
    counts = {kind: sum(k.kind == kind for k in kills) for kind in ("start-up", "mid-run", "burst")}
    assert len(kills) >= 20 and all(v >= 6 for v in counts.values()), counts
    abandoned = statuses.get("abandoned", 0)
    of_resume = sum(k.command == "resume" for k in kills)
    summary = (
        f"{len(kills)} SIGKILLs ({counts}; {len(kills) - of_resume} of `run`, {of_resume} of "
        f"`resume`), {chaos.resumes} resumes in all, {BUDGET} admitted, {abandoned} in-flight "
        f"proposals abandoned and made again, {elapsed:.0f} s"
    )
    print(summary)
    (tmp_path / "summary.txt").write_text(summary + "\n" + "\n".join(map(str, kills)))


@pytest.mark.slow
def test_kill_in_the_first_seconds_can_be_resumed_or_says_what_to_do(tmp_path, quadratic):
    """Killed while importing, creating the store, starting workers or scoring the seed: either
    `resume` carries on, or it says plainly that no run was started and how to start one."""
    outcomes = []
    # When the store appears depends on how busy the machine is: time it once, kill around it.
    calibration = tmp_path / "calibration"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "evoengine.cli", "run", str(quadratic), "--budget", "4", "--run-dir", str(calibration)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    while not (calibration / "archive.sqlite").exists() and proc.poll() is None:
        time.sleep(0.01)
    store_at = time.monotonic() - started
    proc.wait()
    for n, delay in enumerate(round(store_at * f, 2) for f in (0.1, 0.4, 0.8, 1.2, 2.0)):
        run_dir = tmp_path / f"run{n}"
        args = ["run", str(quadratic), "--budget", "4", "--run-dir", str(run_dir), "-q"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "evoengine.cli", *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not wait_for_no_evaluators({proc.pid})
        resumed = cli("resume", str(run_dir), "-q")
        assert "Traceback" not in resumed.stderr
        if resumed.returncode == 0:
            outcomes.append(f"{delay} s: resumed")
        else:
            assert resumed.returncode == 2, resumed.stderr
            assert str(run_dir) in resumed.stderr, resumed.stderr
            assert "does not exist" in resumed.stderr or "evoengine run" in resumed.stderr, resumed.stderr
            cli(*args, check=True)  # nothing was there to lose: the same command starts it
            outcomes.append(f"{delay} s: started again")
        assert status(run_dir)["admitted"] == 4
        assert integrity(run_dir) == "ok"
    print("kill in the first seconds:", outcomes)
    assert any(o.endswith("resumed") for o in outcomes), outcomes  # at least one kill landed after the store existed


@pytest.mark.slow
def test_best_file_matches_the_store_after_a_kill_between_admission_and_best_file(tmp_path, quadratic):
    """A kill after the store committed a new best but before `best/` was rewritten leaves the
    file stale or missing; the resumed run brings it back in line with the store, even when
    no better candidate comes along (every candidate of this problem scores the same)."""
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "initial.py").write_text((quadratic / "initial.py").read_text())
    (flat / "problem.py").write_text(
        "from evoengine import EvalResult, Problem\n"
        "problem = Problem(name='flat', description='every candidate scores 1', initial='initial.py',"
        " timeout_s=10, memory_mb=1024)\n"
        "def evaluate(path):\n    return EvalResult(score=1.0)\n"
    )
    run_dir = tmp_path / "run"
    cli("run", str(flat), "--budget", "3", "--run-dir", str(run_dir), "-q", check=True)
    best_file = run_dir / "best" / "flat.py"
    best_file.write_text("stale\n")  # as if killed between an admission and the best file's write
    (run_dir / "best" / "best.json").unlink()
    cli("resume", str(run_dir), "--budget", "6", "-q", check=True)
    best_text = cli("best", str(run_dir), check=True).stdout
    assert best_file.read_text() == best_text != "stale\n"
    assert json.loads((run_dir / "best" / "best.json").read_text())["id"] == status(run_dir)["best_id"]


def test_a_store_interrupted_while_being_created_is_absent_not_half_made(tmp_path):
    """The store is built aside and renamed into place: a start that dies half-way leaves no
    `archive.sqlite` that `resume` would misread, and the same --run-dir can be used again."""
    run_dir = tmp_path / "run"
    with pytest.raises(TypeError):  # dies while writing the run's metadata
        RunStore.create(run_dir, {"problem": "p", "unserialisable": object()})
    assert not (run_dir / "archive.sqlite").exists()
    proc = cli("resume", str(run_dir))
    assert proc.returncode == 2 and f"evoengine run PROBLEM --run-dir {run_dir}" in proc.stderr
    store = RunStore.create(run_dir, {"problem": "p"})
    try:
        assert store.meta()["problem"] == "p" and store.evaluated_count() == 0
    finally:
        store.close()
    assert [p.name for p in run_dir.iterdir() if not p.name.startswith("archive.sqlite")] == []


def test_temporary_folders_of_killed_engines_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    # An engine killed with -9 cannot remove its evaluation or model-proxy folder in /tmp; the
    # next engine of the same user removes those whose process is gone.
    import tempfile

    from evoengine.files import remove_stale_folders

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f"evoengine-eval-{gone.pid}-abc"
    live = tmp_path / f"evoengine-eval-{os.getpid()}-def"
    other = tmp_path / f"evoengine-models-{gone.pid}-ghi"
    for folder in (dead, live, other):
        (folder / "inside").mkdir(parents=True)
    remove_stale_folders("evoengine-eval-")
    assert not dead.exists() and live.exists() and other.exists()
