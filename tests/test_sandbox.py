"""The evaluation sandbox against hostile candidates: real workers, real processes, no mocks.

Every hostile file in tests/hostile/ is evaluated by a live `EvaluatorPool`, with the
strongest isolation this machine offers ("auto": bubblewrap where it works), with the
namespaces the worker makes itself ("unshare") and with the fallback ("basic": none); the
whole suite runs once more as a normal user (`nobody`). After each one, the test checks the
reason given, that nothing the candidate started is still running, and that the pool still
scores a good candidate correctly. Candidates that spy report what they saw as an artifact.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from conftest import REPO, TEST_PROBLEMS
from hostile.run_suite import leftovers as pool_leftovers

from evoengine.config import Config
from evoengine.errors import ProblemError
from evoengine.evaluation import EvaluatorPool, Limits
from evoengine.evaluation.processes import descendants, local_pid, own_proc_pid, proc_pid, process_table
from evoengine.evaluation.view import ENV_NAMES
from evoengine.problem import Problem

HOSTILE = Path(__file__).parent / "hostile"
LIMITS = Limits(timeout_s=2.0, memory_mb=256, max_processes=16, max_output_kb=64, max_file_mb=16, disk_mb=64)
DIRECT = "# SANDBOX-DIRECT\n"  # makes the test problem run the candidate inside its evaluator
SECRET = f"s3cret-{secrets.token_hex(8)}"
SECRET_ENV = {"DATABASE_URL": f"postgres://app:{SECRET}@db/prod", "HF_AUTH": SECRET, "GH_PAT": SECRET}
CANARY = Path.home() / f".evoengine-canary-{os.getpid()}"


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


def make_scene(root: Path) -> None:
    """A copy of the test problem laid out like a user's files (0755 folders, 0644 files) and
    a pretend run store beside it."""
    shutil.copytree(HOSTILE / "problem", root / "problem", ignore=shutil.ignore_patterns("__pycache__"))
    for path in (root / "problem").iterdir():
        path.chmod(0o644)
    (root / "problem").chmod(0o755)
    (root / "run").mkdir(mode=0o755)
    (root / "run" / "archive.sqlite").write_bytes(b"SQLite format 3\0 pretend store")
    (root / "run" / "archive.sqlite").chmod(0o644)


@pytest.fixture(scope="module")
def problem_dir() -> Iterator[Path]:
    """The test problem, plus what candidates must not see while pools run: a mode-0600 canary
    in this user's home, secrets in environment variables of unremarkable names, and a
    process whose command line names the run directory (as `evoengine run` does)."""
    root = public_dir(0o755)
    make_scene(root)
    CANARY.write_text(SECRET)
    CANARY.chmod(0o600)
    saved = {name: os.environ.get(name) for name in SECRET_ENV}
    os.environ.update(SECRET_ENV)
    engine = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)", "run", "--run-dir", str(root / "run")]
    )
    try:
        yield root
    finally:
        engine.kill()
        engine.wait()
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
        CANARY.unlink()
        shutil.rmtree(root, ignore_errors=True)


def start_pool(problem_dir: Path, limits: Limits, slots: int = 2) -> Harness:
    loop = asyncio.new_event_loop()
    pool = EvaluatorPool(problem_dir / "problem" / "problem.py", slots, limits)
    loop.run_until_complete(pool.start())
    return Harness(pool, loop, problem_dir)


def stop_pool(harness: Harness) -> None:
    harness.run(harness.pool.close())
    harness.loop.close()


# The other isolation levels repeat every case; marked slow to keep the default run short.
@pytest.fixture(
    scope="module",
    params=["auto", pytest.param("unshare", marks=pytest.mark.slow), pytest.param("basic", marks=pytest.mark.slow)],
)
def pool(request, problem_dir) -> Iterator[Harness]:
    harness = start_pool(problem_dir, replace(LIMITS, isolation=request.param))
    yield harness
    stop_pool(harness)


def hostile(name: str, **subs: object) -> str:
    text = (HOSTILE / name).read_text()
    for key, value in subs.items():
        text = text.replace(f"@{key}@", str(value))
    return text


def leftovers(harness: Harness) -> list[str]:
    return pool_leftovers(harness.pool)


def assert_pool_healthy(harness: Harness) -> None:
    """Nothing left running, and a good candidate still gets its honest score."""
    deadline = time.monotonic() + 3.0  # a killed process takes a moment to vanish on a loaded machine
    while (left := leftovers(harness)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []
    result = harness.evaluate(hostile("good.py"), label="good")
    assert result.valid and result.score == pytest.approx(3.0), result.feedback
    assert "lp_iterations" in result.metrics  # scipy's linprog ran inside the sandbox


def alive(pid: int, start: int) -> bool:
    """Whether a process is alive that had `pid` in its own PID namespace (the innermost
    number of its NSpid line) and started at `start` (clock ticks since boot)."""
    for proc in process_table().values():
        if proc.start == start and proc.state not in ("Z", "X"):
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            nspids = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
            if nspids and int(nspids[-1]) == pid:
                return True
    return False


def report(result) -> dict:
    """What a spying candidate reported (tests/hostile/problem: the artifact "report")."""
    assert result.valid, result.feedback
    return json.loads(result.artifacts["report"])


def view_only(harness: Harness) -> None:
    if "filesystem view" not in harness.isolation:
        pytest.skip(f"no filesystem view with isolation {harness.pool.limits.isolation!r} (see docs/reliability.md)")


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
def test_grandchild_that_outlives_its_parent_is_killed(pool, name):
    result = pool.evaluate(hostile(name))
    assert result.score == pytest.approx(3.0), result.feedback
    orphan = report(result)
    assert not alive(orphan["pid"], orphan["start"]), f"orphan {orphan} survived"
    assert_pool_healthy(pool)


def host_files_named(marker: str, harness: Harness) -> list[str]:
    """Files on this machine (outside any sandbox) named after `marker`, where a candidate
    might have put them: /, /tmp, /dev/shm, /var/tmp, and the pool's own folders."""
    found = [str(p) for folder in ("/", "/tmp", "/dev/shm", "/var/tmp") for p in Path(folder).glob(f"{marker}*")]
    return found + [str(p) for p in harness.pool._tmp_root.rglob(f"{marker}*")]


@pytest.mark.parametrize("direct", [False, True], ids=["via_call_candidate", "in_evaluator"])
def test_candidate_writes_nothing_outside_its_folder(pool, direct):
    view_only(pool)
    store = pool.problem_dir / "run" / "archive.sqlite"
    evaluator = pool.problem_dir / "problem" / "problem.py"
    before = {p: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in (store, evaluator)}
    marker = f"evoengine-marker-{secrets.token_hex(6)}"
    text = hostile("write_outside.py", MARKER=marker, STORE_FILE=store, EVALUATOR_FILE=evaluator)
    outcome = report(pool.evaluate(DIRECT + text if direct else text))
    # The store is not in its view; the problem folder is, read-only (and not its uid's).
    assert outcome["store"] == outcome["chmod_store"] == "refused: No such file or directory", outcome
    assert outcome["evaluator"] in ("refused: Read-only file system", "refused: Permission denied"), outcome
    assert outcome["root"].startswith("refused"), outcome
    # Its own /tmp, /dev/shm and /var/tmp take the writes, and vanish with the evaluation.
    assert {outcome[k] for k in ("tmp", "dev_shm", "var_tmp", "parent_dir")} == {"written"}, outcome
    assert {p: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in before} == before
    assert host_files_named(marker, pool) == []
    assert [p for p in pool.pool._tmp_root.rglob("*") if not p.name.startswith("slot-")] == []
    assert_pool_healthy(pool)


def test_candidate_cannot_read_the_users_home_shadow_the_run_or_secret_variables(pool):
    view_only(pool)
    store = pool.problem_dir / "run" / "archive.sqlite"
    seen = report(pool.evaluate(hostile("read_secrets.py", CANARY=CANARY, STORE_FILE=store, SECRET=SECRET)))
    absent = "refused: No such file or directory"
    assert seen["canary"] == seen["shadow"] == seen["store"] == absent, seen
    assert CANARY.name not in seen["home"], seen  # at most the folders leading to Python are there
    assert seen["stores_found"] == {}, seen  # no process of the engine's is visible
    assert seen["processes_seen"] <= 4, seen  # the namespace's init, the evaluator, the candidate
    assert seen["secret_in_environ"] == seen["secret_in_other_environ"] == [], seen
    assert not set(SECRET_ENV) & set(seen["env_names"]), seen
    assert_pool_healthy(pool)


def test_only_allow_listed_and_declared_variables_reach_an_evaluation(problem_dir, monkeypatch):
    monkeypatch.setenv("EVOENGINE_TEST_DATASET", "/data/sets/7")
    problem = Problem(name="p", description="d", initial="seed.py", env=("EVOENGINE_TEST_DATASET",))
    limits = replace(LIMITS, env=Limits.from_config(problem, Config().evaluation).env)
    assert limits.env == ("EVOENGINE_TEST_DATASET",)
    harness = start_pool(problem_dir, limits, slots=1)
    try:
        spy = "import os\ndef solve(n):\n    return {'values': [1.0] * n, 'report': dict(os.environ)}\n"
        seen = report(harness.evaluate(spy))
        assert seen["EVOENGINE_TEST_DATASET"] == "/data/sets/7"
        assert not set(SECRET_ENV) & set(seen)
        assert set(seen) <= ENV_NAMES | {"EVOENGINE_TEST_DATASET", "HOME", "TMPDIR", "PWD", "USER", "LOGNAME"} | {
            k for k in seen if k.startswith("LC_")
        }
        assert seen["HOME"] == seen["PWD"] == "/tmp/candidate" and seen["TMPDIR"] == "/tmp"
    finally:
        stop_pool(harness)


def test_a_run_directory_inside_the_problem_folder_is_hidden_from_candidates():
    root = public_dir(0o755)
    make_scene(root)
    run_dir = root / "problem" / "my-run"
    seed = hostile("read_secrets.py", CANARY=CANARY, STORE_FILE=run_dir / "archive.sqlite", SECRET=SECRET)
    (root / "problem" / "seed.py").write_text(seed)
    command = [sys.executable, "-m", "evoengine.cli", "run", str(root / "problem"), "--budget", "1"]
    try:
        proc = subprocess.run([*command, "--run-dir", str(run_dir), "-q"], capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with sqlite3.connect(run_dir / "archive.sqlite") as db:
            (artifacts,) = db.execute("SELECT artifacts FROM candidates WHERE seq = 1").fetchone()
        assert json.loads(json.loads(artifacts)["report"])["store"].startswith("refused")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_filling_the_disk_stops_at_the_quota_and_the_next_candidate_has_it_all_again(problem_dir):
    harness = start_pool(problem_dir, replace(LIMITS, max_file_mb=64, disk_mb=128, timeout_s=20), slots=1)
    try:
        view_only(harness)
        for _ in range(2):
            filled = report(harness.evaluate(hostile("fill_disk.py")))
            # 40 x 50 MB asked; the one tmpfs of 128 MB holds its folder and /dev/shm together
            assert 100 <= filled["own_folder"]["mb"] <= 128, filled
            assert filled["own_folder"]["stopped"] == "No space left on device", filled
            assert filled["dev_shm"] == {"mb": 0, "stopped": "No space left on device"}, filled
            assert leftovers(harness) == []
    finally:
        stop_pool(harness)


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
    # unreachable (no interface), refused by seccomp, or refused by the namespace's own loopback
    assert re.search(r"Network is unreachable|Permission denied|Connection refused", result.feedback), result.feedback
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


def orphan_of_a_spinning_parent(procs: list) -> bool:
    """Whether a sleeping process hangs below a running one: the orphan, handed back to the
    evaluator (a subreaper), which spins in solve()."""
    running = {p.pid for p in procs if p.state == "R"}
    return any(p.state == "S" and p.ppid in running for p in procs)


def test_a_cancelled_evaluation_kills_its_worker_and_the_next_one_works(lone_pool):
    worker = proc_pid(lone_pool.pool.worker_pids()[0])
    spinning = hostile("orphan_grandchild_direct.py").replace(
        "def solve(n):\n", "def solve(n):\n    while True:\n        pass\n"
    )

    async def cancel_soon():
        task = asyncio.ensure_future(lone_pool.pool.evaluate(spinning))
        below: list = []
        while not orphan_of_a_spinning_parent(below):
            await asyncio.sleep(0.02)
            below = descendants(worker, process_table())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return below

    below = lone_pool.run(cancel_soon())
    assert len(below) >= 3  # the evaluator, the orphan, and the namespace's init or more
    time.sleep(0.2)
    table = process_table()
    assert [p for p in below if p.pid in table and table[p.pid].start == p.start and table[p.pid].state != "Z"] == []
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


# ------------------------------------------------------------------ as a normal user


def as_nobody(home: Path, *command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `command` as the user nobody, as a normal user runs evoengine (tests/hostile/as_user.py)."""
    if os.geteuid() != 0:
        pytest.skip("these tests already run as a normal user; switching to nobody needs root")
    proc = subprocess.run(
        [sys.executable, str(HOSTILE / "as_user.py"), str(home), "--", *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if proc.returncode == 77:
        pytest.skip(proc.stderr.strip())
    return proc


def nobody_scene() -> tuple[Path, Path]:
    """A scene for nobody: the problem (readable), a home of its own (0700) holding a 0600
    canary, and a folder for runs that it can write."""
    root = public_dir(0o755)
    make_scene(root)
    home = root / "home"
    (home / "canary").parent.mkdir(mode=0o700)
    (home / "canary").write_text(SECRET)
    (home / "canary").chmod(0o600)
    (root / "runs").mkdir()
    for path in (home, home / "canary", root / "runs"):
        shutil.chown(path, "nobody", "nogroup")
    return root, home


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["auto", "unshare"])
def test_every_hostile_kind_is_contained_as_a_normal_user(problem_dir, listener, isolation):
    port, received = listener
    root, home = nobody_scene()
    store, evaluator = root / "run" / "archive.sqlite", root / "problem" / "problem.py"
    before = store.read_bytes(), evaluator.read_bytes()
    marker = f"evoengine-marker-{secrets.token_hex(6)}"
    cases = {name: hostile(name) for name, _ in CASES}
    spies = {
        "orphan_grandchild.py": hostile("orphan_grandchild.py"),
        "write_outside.py": hostile("write_outside.py", MARKER=marker, STORE_FILE=store, EVALUATOR_FILE=evaluator),
        "read_secrets.py": hostile("read_secrets.py", CANARY=home / "canary", STORE_FILE=store, SECRET=SECRET),
        "fill_disk.py": hostile("fill_disk.py"),
        "network.py": hostile("network.py", PORT=port),
        "fake_score.py": hostile("fake_score.py"),
        "monkeypatch_score.py": hostile("monkeypatch_score.py"),
        "kill_everything.py": hostile("kill_everything.py"),
        "good.py": hostile("good.py"),
    }
    limits = replace(LIMITS, isolation=isolation, max_file_mb=64, disk_mb=128)
    spec = root / "spec.json"
    spec.write_text(json.dumps({"problem": str(evaluator), "limits": asdict(limits), "cases": {**cases, **spies}}))
    proc = as_nobody(home, sys.executable, str(HOSTILE / "run_suite.py"), str(spec))
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout)
        assert out["uid"] == 65534 and "filesystem view" in out["isolation"], out["isolation"]
        assert out["missing"] == [], out["missing"]
        results = {name: r["result"] for name, r in out["results"].items()}
        assert {name: r["leftovers"] for name, r in out["results"].items() if r["leftovers"]} == {}
        for name, reason in CASES:
            assert re.search(reason, results[name]["feedback"]), (name, results[name]["feedback"][:500])
        unwrap = {
            name: json.loads(results[name]["artifacts"]["report"])
            for name in spies
            if "report" in results[name]["artifacts"]
        }
        assert not alive(unwrap["orphan_grandchild.py"]["pid"], unwrap["orphan_grandchild.py"]["start"])
        wrote = unwrap["write_outside.py"]
        assert wrote["store"] == wrote["chmod_store"] == "refused: No such file or directory", wrote
        assert wrote["evaluator"] in ("refused: Read-only file system", "refused: Permission denied"), wrote
        assert (store.read_bytes(), evaluator.read_bytes()) == before
        assert [p for f in ("/", "/tmp", "/dev/shm", "/var/tmp") for p in Path(f).glob(f"{marker}*")] == []
        seen = unwrap["read_secrets.py"]
        assert seen["canary"] == seen["shadow"] == seen["store"] == "refused: No such file or directory", seen
        assert seen["stores_found"] == {} and seen["secret_in_environ"] == seen["secret_in_other_environ"] == []
        filled = unwrap["fill_disk.py"]["own_folder"]
        assert 100 <= filled["mb"] <= 128 and filled["stopped"] == "No space left on device", filled
        assert not results["network.py"]["valid"] and received == []
        assert not results["fake_score.py"]["valid"] and results["monkeypatch_score.py"]["score"] == 0.0
        assert results["kill_everything.py"]["valid"] or "SIGKILL" in results["kill_everything.py"]["feedback"]
        assert results["good.py"]["score"] == pytest.approx(3.0)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("user", ["root", "nobody"])
def test_a_spying_seed_run_by_evoengine_sees_nothing_of_the_user_or_the_run(problem_dir, user):
    """The real command, end to end: its command line names the run directory, its
    environment holds the secrets, its user's home the canary; the seed looks for all three."""
    root, home = nobody_scene()
    canary = home / "canary" if user == "nobody" else CANARY
    run_dir = root / "runs" / "spy"
    seed = hostile("read_secrets.py", CANARY=canary, STORE_FILE=run_dir / "archive.sqlite", SECRET=SECRET)
    (root / "problem" / "seed.py").write_text(seed)
    command = [sys.executable, "-m", "evoengine.cli", "run", str(root / "problem"), "--budget", "1"]
    command += ["--run-dir", str(run_dir), "-q"]
    try:
        if user == "nobody":
            proc = as_nobody(home, *command)
        else:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with sqlite3.connect(run_dir / "archive.sqlite") as db:
            artifacts, feedback = db.execute("SELECT artifacts, feedback FROM candidates WHERE seq = 1").fetchone()
        seen = json.loads(json.loads(artifacts).get("report", "null") or "null") or feedback
        assert seen["canary"] == seen["shadow"] == seen["store"] == "refused: No such file or directory", seen
        assert canary.name not in seen["home"] and seen["stores_found"] == {}, seen
        assert seen["secret_in_environ"] == seen["secret_in_other_environ"] == [], seen
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------ the engine dies


def worker_processes(engine_pid: int) -> list[int]:
    """Every process started for the pool of `engine_pid` (forked processes keep the worker's
    command line, which names the pool's pid after --parent)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if b"evoengine.evaluation.worker" in words and str(engine_pid).encode() in words:
            i = words.index(b"--parent")
            if words[i + 1] == str(engine_pid).encode():
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_every_worker_process_dies_with_an_engine_killed_mid_run():
    run_dir = public_dir(0o755) / "run"
    log = run_dir.parent / "engine.log"
    with log.open("wb") as out:
        engine = subprocess.Popen(
            [sys.executable, "-m", "evoengine.cli", "run", str(TEST_PROBLEMS / "quadratic"), "--budget", "100000"]
            + ["--run-dir", str(run_dir), "-q"],
            cwd=REPO,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline:  # the search is under way: admissions, and the workers up
            assert engine.poll() is None, f"the engine ended early:\n{log.read_text(errors='replace')[-3000:]}"
            try:  # read-only: a plain connect before the engine made its store would create an empty one
                with sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True) as db:
                    admitted = db.execute("SELECT count(*) FROM candidates WHERE seq IS NOT NULL").fetchone()[0]
            except sqlite3.Error:
                admitted = 0
            workers = worker_processes(engine.pid) if admitted >= 5 else []
            if len(workers) >= 2:
                break
            time.sleep(0.05)
        assert len(workers) >= 2, f"no evaluation workers found:\n{log.read_text(errors='replace')[-3000:]}"
        os.kill(engine.pid, signal.SIGKILL)  # the engine only: workers are in sessions of their own
        killed = time.monotonic()
        while worker_processes(engine.pid) and time.monotonic() < killed + 5:
            time.sleep(0.001)
        latency = time.monotonic() - killed
        assert worker_processes(engine.pid) == [], f"workers outlived the engine by {latency:.1f} s"
        print(f"\nall {len(workers)}+ worker processes gone {latency * 1000:.0f} ms after SIGKILL of the engine")
    finally:
        engine.kill()
        engine.wait()
        shutil.rmtree(run_dir.parent, ignore_errors=True)
