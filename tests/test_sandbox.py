"""The evaluation sandbox against hostile candidates: real workers, real processes, no mocks.

Every hostile file in tests/hostile/ is evaluated by a live `EvaluatorPool`, once with the
strongest isolation this machine offers ("auto") and once with the fallback ("basic": no
namespaces). After each one, the test checks the reason given, that nothing the candidate
started is still running, and that the pool still scores a good candidate correctly.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from evoengine.errors import ProblemError
from evoengine.evaluation import EvaluatorPool, Limits
from evoengine.evaluation.processes import (
    descendants,
    local_pid,
    own_proc_pid,
    proc_pid,
    process_table,
)
from evoengine.evaluation.sandbox import sandbox_uid

HOSTILE = Path(__file__).parent / "hostile"
LIMITS = Limits(timeout_s=2.0, memory_mb=256, max_processes=16, max_output_kb=64, max_file_mb=16)
DIRECT = "# SANDBOX-DIRECT\n"  # makes the test problem run the candidate inside its evaluator


class Harness:
    """A started pool plus the event loop it lives in, for synchronous tests."""

    def __init__(self, pool: EvaluatorPool, loop: asyncio.AbstractEventLoop, problem_dir: Path):
        self.pool, self.loop, self.problem_dir = pool, loop, problem_dir

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def evaluate(self, text: str, label: str = "candidate"):
        return self.run(self.pool.evaluate(text, label=label))

    @property
    def isolation(self) -> str:
        return self.pool.isolation


def public_dir(mode: int) -> Path:
    """A folder the sandbox uid can reach (pytest's tmp_path sits under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="evoengine-sandbox-test-"))
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def problem_dir() -> Iterator[Path]:
    """A copy of the test problem, laid out like a user's files: 0755 folders, 0644 files."""
    root = public_dir(0o755)
    shutil.copytree(HOSTILE / "problem", root / "problem", ignore=shutil.ignore_patterns("__pycache__"))
    for path in (root / "problem").iterdir():
        path.chmod(0o644)
    (root / "problem").chmod(0o755)
    (root / "run").mkdir(mode=0o755)
    (root / "run" / "archive.sqlite").write_bytes(b"SQLite format 3\0 pretend store")
    (root / "run" / "archive.sqlite").chmod(0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def start_pool(problem_dir: Path, limits: Limits, slots: int = 2) -> Harness:
    loop = asyncio.new_event_loop()
    pool = EvaluatorPool(problem_dir / "problem" / "problem.py", slots, limits)
    loop.run_until_complete(pool.start())
    return Harness(pool, loop, problem_dir)


def stop_pool(harness: Harness) -> None:
    harness.run(harness.pool.close())
    harness.loop.close()


# The fallback ("basic") repeats every case; it is marked slow to keep the default run short.
@pytest.fixture(scope="module", params=["auto", pytest.param("basic", marks=pytest.mark.slow)])
def pool(request, problem_dir) -> Iterator[Harness]:
    harness = start_pool(problem_dir, replace(LIMITS, isolation=request.param))
    yield harness
    stop_pool(harness)


@pytest.fixture
def report_dir() -> Iterator[Path]:
    path = public_dir(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def hostile(name: str, **subs: object) -> str:
    text = (HOSTILE / name).read_text()
    for key, value in subs.items():
        text = text.replace(f"@{key}@", str(value))
    return text


def leftovers(harness: Harness) -> list[str]:
    """Processes still alive below the workers (beyond their own namespace init), or owned
    by the sandbox uids."""
    table = process_table()
    found = []
    for worker in map(proc_pid, harness.pool.worker_pids()):
        assert worker is not None
        for proc in descendants(worker, table):
            if proc.ppid == worker and "PID namespace" in harness.isolation:
                continue  # the namespace's init, which is the worker loop itself
            found.append(f"pid {proc.pid} ({proc.state}) under worker {worker}")
    uids = {sandbox_uid(slot, os.getpid()) for slot in range(harness.pool.slots)}
    for pid in table:
        try:
            with open(f"/proc/{pid}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if uid in uids:
            found.append(f"pid {pid} runs as sandbox uid {uid}")
    return found


def assert_pool_healthy(harness: Harness) -> None:
    """Nothing left running, and a good candidate still gets its honest score."""
    assert leftovers(harness) == []
    result = harness.evaluate(hostile("good.py"), label="good")
    assert result.valid and result.score == pytest.approx(3.0), result.feedback
    assert "lp_iterations" in result.metrics  # scipy's linprog ran inside the sandbox


def alive(pid: int, start: int) -> bool:
    proc = process_table().get(pid)
    return proc is not None and proc.start == start and proc.state not in ("Z", "X")


# ------------------------------------------------------------------ hostile candidates

CASES = [
    ("infinite_loop.py", r"solve\(\) timed out after 1 s"),
    ("infinite_loop_direct.py", r"^timed out after 2 s"),
    ("ignore_sigterm.py", r"solve\(\) timed out after 1 s"),
    ("ignore_sigterm_direct.py", r"^timed out after 2 s"),
    ("fork_bomb.py", r"fork bomb: \d+ forks made, [1-9]\d* refused"),
    ("memory_bomb.py", r"solve\(\) raised MemoryError"),
    ("memory_bomb_numpy.py", r"solve\(\) raised \w*MemoryError"),
    ("memory_bomb_direct.py", r"evaluate\(\) raised MemoryError"),
    ("deep_recursion.py", r"solve\(\): the candidate process killed by signal SIGSEGV"),
    ("recursion_error.py", r"solve\(\) raised RecursionError"),
    ("segfault.py", r"solve\(\): the candidate process killed by signal SIGSEGV"),
    ("segfault_direct.py", r"^the evaluation process killed by signal SIGSEGV"),
    ("exit_code.py", r"solve\(\): the candidate process exited with code 3"),
    ("exit_code_direct.py", r"^the evaluation process exited with code 3"),
    ("sys_exit_at_import.py", r"the candidate process exited with code 4"),
    ("non_serialisable.py", r"solve\(\) returned a non-serialisable value: a set"),
    ("big_output.py", r"solve\(\) printed more than 64 KB of output"),
    # Python ignores SIGXFSZ, so the file-size limit surfaces as EFBIG from write().
    ("big_file.py", r"solve\(\) raised OSError: \[Errno 27\] File too large"),
    ("big_file_direct.py", r"evaluate\(\) raised OSError: \[Errno 27\] File too large"),
]


@pytest.mark.parametrize("name, reason", CASES, ids=[c[0].removesuffix(".py") for c in CASES])
def test_hostile_candidate_is_scored_invalid_with_the_reason_and_cleaned_up(pool, name, reason):
    started = time.monotonic()
    result = pool.evaluate(hostile(name), label=name)
    assert not result.valid and result.score is None
    assert re.search(reason, result.feedback), result.feedback[:2000]
    assert time.monotonic() - started < LIMITS.timeout_s + 3
    assert_pool_healthy(pool)


def test_a_syntax_error_is_reported_with_its_line(pool):
    result = pool.evaluate("def solve(n)\n    return [1.0] * n\n")
    assert not result.valid
    assert re.search(r"importing candidate.py raised SyntaxError: .*\(line 1 of candidate.py\)", result.feedback)
    assert_pool_healthy(pool)


def test_output_is_captured_and_capped_in_the_feedback(pool):
    result = pool.evaluate(hostile("big_output_direct.py"))
    assert not result.valid
    assert result.feedback.startswith("evaluate() raised RuntimeError: after 5 MB of output")
    assert re.search(r"--- output: last 65536 of 500\d{4} bytes ---\ny+\n", result.feedback)
    assert len(result.feedback.encode()) < 64 * 1024 + 8 * 1024
    assert_pool_healthy(pool)


@pytest.mark.parametrize("name", ["orphan_grandchild.py", "orphan_grandchild_direct.py"])
def test_grandchild_that_outlives_its_parent_is_killed(pool, report_dir, name):
    result = pool.evaluate(hostile(name, REPORT_DIR=report_dir))
    assert result.valid and result.score == pytest.approx(3.0), result.feedback
    orphan = json.loads((report_dir / "orphan.json").read_text())
    assert not alive(orphan["pid"], orphan["start"]), f"orphan {orphan} survived"
    assert_pool_healthy(pool)


@pytest.mark.parametrize("direct", [False, True], ids=["via_call_candidate", "in_evaluator"])
def test_candidate_cannot_write_the_store_the_evaluator_or_outside_its_folder(pool, report_dir, direct):
    if "same uid" in pool.isolation:
        pytest.skip(
            "candidates run as the engine's own user here: files that user may write "
            "cannot be protected (see docs/reliability.md)"
        )
    store = pool.problem_dir / "run" / "archive.sqlite"
    evaluator = pool.problem_dir / "problem" / "problem.py"
    before = {p: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in (store, evaluator)}
    text = hostile("write_outside.py", REPORT_DIR=report_dir, STORE_FILE=store, EVALUATOR_FILE=evaluator)
    result = pool.evaluate(DIRECT + text if direct else text)
    assert result.valid, result.feedback
    outcome = json.loads((report_dir / "write_outside.json").read_text())
    for target in ("store", "evaluator", "parent_dir", "chmod_store"):
        assert outcome[target].startswith("refused"), outcome
    assert {p: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in before} == before
    assert not Path(outcome["cwd"]).exists()  # its temporary folder is gone
    assert not (Path(outcome["cwd"]).parent / "escaped.txt").exists()
    assert_pool_healthy(pool)


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    received.append(conn.recv(100))
                except OSError:
                    received.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize("name", ["network.py", "network_direct.py"])
def test_network_is_refused_when_disabled(pool, listener, name):
    if "no network" not in pool.isolation:
        pytest.skip("no network namespace or seccomp filter on this platform")
    port, received = listener
    result = pool.evaluate(hostile(name, PORT=port))
    assert not result.valid
    assert re.search(r"Network is unreachable|Permission denied", result.feedback), result.feedback
    time.sleep(0.3)
    assert received == []
    assert_pool_healthy(pool)


def test_network_works_when_allowed(problem_dir, listener):
    port, received = listener
    harness = start_pool(problem_dir, replace(LIMITS, network=True), slots=1)
    try:
        result = harness.evaluate(hostile("network.py", PORT=port))
        assert result.valid, result.feedback
        deadline = time.monotonic() + 2
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert received == [b"candidate was here"]
    finally:
        stop_pool(harness)


@pytest.mark.parametrize(
    "name, reason",
    [
        # Its writes reach only its own result pipe (garbling it) and its captured output.
        ("fake_score.py", "the candidate wrote to its result channel itself"),
        # In the evaluator process itself, its writes reach the real result channel.
        ("fake_score_direct.py", "result channel received data that did not come from the evaluator"),
    ],
)
def test_candidate_cannot_report_a_fake_score(pool, name, reason):
    result = pool.evaluate(hostile(name))
    assert not result.valid and reason in result.feedback, result.feedback
    assert_pool_healthy(pool)


def test_candidate_monkeypatching_the_scorer_gets_its_honest_score(pool):
    result = pool.evaluate(hostile("monkeypatch_score.py"))
    assert result.valid and result.score == 0.0, result.feedback
    assert_pool_healthy(pool)


def test_killing_every_process_it_can_does_not_hurt_the_pool(pool):
    if "PID namespace" not in pool.isolation and "uid " not in pool.isolation:
        pytest.skip("kill(-1) as the engine's own user would kill the test run itself")
    result = pool.evaluate(hostile("kill_everything.py"))
    assert result.valid or "SIGKILL" in result.feedback, result.feedback
    assert_pool_healthy(pool)


# ------------------------------------------------------------------ the pool itself


def test_problem_that_fails_to_import_raises_problem_error_naming_the_file(tmp_path):
    (tmp_path / "seed.py").write_text("def solve(n):\n    return [1.0] * n\n")
    (tmp_path / "problem.py").write_text("import no_such_module_anywhere\n")
    pool = EvaluatorPool(tmp_path / "problem.py", 1, LIMITS)
    with pytest.raises(ProblemError, match=r"problem\.py.*no_such_module_anywhere"):
        asyncio.run(pool.start())
    asyncio.run(pool.close())


@pytest.fixture(scope="module")
def lone_pool(problem_dir) -> Iterator[Harness]:
    """One slot, a short timeout and a short backstop: for killing and hanging workers."""
    harness = start_pool(problem_dir, replace(LIMITS, timeout_s=1.5), slots=1)
    harness.pool.backstop_s = 0.5
    yield harness
    stop_pool(harness)


def test_a_worker_killed_mid_evaluation_is_replaced(lone_pool):
    restarts = lone_pool.pool.stats.worker_restarts

    async def kill_soon():
        await asyncio.sleep(0.5)
        os.kill(lone_pool.pool.worker_pids()[0], signal.SIGKILL)

    async def both():
        evaluation = lone_pool.pool.evaluate(hostile("infinite_loop_direct.py"))
        return (await asyncio.gather(evaluation, kill_soon()))[0]

    result = lone_pool.run(both())
    assert not result.valid and "evaluation worker exited unexpectedly" in result.feedback
    time.sleep(0.2)  # the parent-death signal reaches the namespace
    assert leftovers(lone_pool) == []
    assert_pool_healthy(lone_pool)
    assert lone_pool.pool.stats.worker_restarts == restarts + 1


def test_a_cancelled_evaluation_kills_its_worker_and_the_next_one_works(lone_pool, report_dir):
    async def cancel_soon():
        task = asyncio.ensure_future(
            lone_pool.pool.evaluate(
                hostile("orphan_grandchild_direct.py", REPORT_DIR=report_dir).replace(
                    "return [1.0] * n", "while True: pass"
                )
            )
        )
        while not (report_dir / "orphan.json").exists():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    lone_pool.run(cancel_soon())
    orphan = json.loads((report_dir / "orphan.json").read_text())
    time.sleep(0.2)
    assert not alive(orphan["pid"], orphan["start"])
    assert_pool_healthy(lone_pool)


def test_a_hung_worker_is_killed_and_replaced_by_the_pool(lone_pool):
    worker = lone_pool.pool.worker_pids()[0]
    loop_process = proc_pid(worker)
    if "PID namespace" in lone_pool.isolation:  # the loop runs in the namespace's init
        loop_process = next(p.pid for p in process_table().values() if p.ppid == loop_process)
    os.kill(local_pid(loop_process), signal.SIGSTOP)
    started = time.monotonic()
    result = lone_pool.evaluate(hostile("good.py"))
    assert not result.valid and "did not answer within 2 s" in result.feedback
    assert time.monotonic() - started < 5
    assert worker not in lone_pool.pool.worker_pids()
    assert_pool_healthy(lone_pool)


def test_closing_the_pool_leaves_no_process_or_folder_behind(problem_dir):
    harness = start_pool(problem_dir, LIMITS, slots=2)
    workers = harness.pool.worker_pids()
    tmp_root = harness.pool._tmp_root
    assert tmp_root.is_dir()
    stop_pool(harness)
    table = process_table()
    assert [w for w in workers if w in table and table[w].state not in ("Z", "X")] == []
    assert not tmp_root.exists()


def test_evaluations_begin_after_one_worker_and_the_others_join_as_they_boot(problem_dir):
    harness = start_pool(problem_dir, LIMITS, slots=3)
    try:
        # start() returned once the first worker was ready; the others were still booting
        assert harness.pool._idle.qsize() < 3

        async def six():
            return await asyncio.gather(*(harness.pool.evaluate(hostile("good.py")) for _ in range(6)))

        assert all(r.valid for r in harness.run(six()))
        deadline = time.monotonic() + 60
        while len(harness.pool.worker_pids()) < 3 and time.monotonic() < deadline:
            harness.run(asyncio.sleep(0.05))
        assert len(harness.pool.worker_pids()) == 3
    finally:
        stop_pool(harness)


def test_closing_a_pool_while_its_workers_boot_leaves_none_behind(problem_dir):
    me = own_proc_pid()
    before = {p.pid for p in descendants(me, process_table())}
    harness = start_pool(problem_dir, LIMITS, slots=4)  # closed at once: three are still booting
    stop_pool(harness)
    left = [p for p in descendants(me, process_table()) if p.pid not in before and p.state not in ("Z", "X")]
    assert left == []


def test_throughput_of_trivial_candidates(pool):
    """Isolation should cost milliseconds of CPU per candidate, not a fresh interpreter."""
    before = (pool.pool.stats.evaluations, pool.pool.stats.cpu_s, time.process_time())
    started = time.monotonic()

    async def many():
        return await asyncio.gather(*(pool.pool.evaluate(hostile("good.py")) for _ in range(50)))

    results = pool.run(many())
    wall = time.monotonic() - started
    assert all(r.valid for r in results)
    count = pool.pool.stats.evaluations - before[0]
    sandbox_cpu = (pool.pool.stats.cpu_s - before[1]) / count
    pool_cpu = (time.process_time() - before[2]) / count
    print(
        f"\n[{pool.isolation}] 50 candidates, 2 slots: {wall:.2f} s wall, "
        f"{sandbox_cpu * 1000:.1f} ms CPU in workers and sandboxes + "
        f"{pool_cpu * 1000:.1f} ms in the pool, per candidate"
    )
    assert sandbox_cpu + pool_cpu < 0.05
