"""The `ray` evaluation backend: a local two-node Ray cluster on loopback, evaluations sent
to it through `RayPool` and through the CLI, and what happens when parts of it die.

The cluster is two `ray start --block` processes (a head and a worker node, one CPU each),
both on 127.0.0.2: Ray replaces 127.0.0.1 with the machine's network address, so a
loopback cluster needs another address of 127.0.0.0/8. Every process they start is killed
by pid at the end. Dashboard and usage stats are off, object stores small.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, TEST_PROBLEMS, cli, problem_folder

from evoengine.config import Ray
from evoengine.errors import EvoError, ProblemError
from evoengine.evaluation import EvaluatorPool, Limits
from evoengine.evaluation.processes import descendants, process_table
from evoengine.evaluation.ray_backend import RayPool

HOST = "127.0.0.2"
QUADRATIC = TEST_PROBLEMS / "quadratic" / "problem.py"
HOSTILE = Path(__file__).resolve().parent / "hostile"
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",  # the same on any machine, whatever ~/.ray holds
    # notice dead nodes within seconds, not the default ~30 s
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    # a driver whose cluster is gone gives up after 10 s, not the default 60 s
    "RAY_gcs_rpc_server_reconnect_timeout_s": "10",
}

# The `ray` command installed beside this Python (CI's PATH may not include its bin folder).
RAY_CLI = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray") or "ray"

HAVE_RAY = importlib.util.find_spec("ray") is not None
NO_RAY = "Ray is not installed (pip install -e '.[test,ray]')"
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason=NO_RAY)


def params(a: float, delay: float = 0.0) -> str:
    """A quadratic candidate; its score tells which candidate a result belongs to."""
    sleep = f"    import time; time.sleep({delay})\n" if delay else ""
    return f"def params():\n{sleep}    return ({a}, -2.0, 0.75)\n"


def score_of(a: float) -> float:
    return -((a - 1.5) ** 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class RayNode:
    """One `ray start --block` process and everything below it."""

    def __init__(self, name: str, args: list[str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        self.proc = subprocess.Popen(
            [
                RAY_CLI,
                "start",
                "--block",
                f"--node-ip-address={HOST}",
                "--num-cpus=1",
                "--object-store-memory=80000000",
                "--disable-usage-stats",
                f"--dashboard-agent-listen-port={_free_port()}",
                f"--metrics-export-port={_free_port()}",
                f"--runtime-env-agent-port={_free_port()}",
                *args,
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **RAY_ENV},
        )

    def wait_started(self, timeout: float = 120.0) -> None:
        stop = time.monotonic() + timeout
        while "Ray runtime started" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > stop:
                raise RuntimeError(f"ray node {self.name} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        return [p.pid for p in descendants(self.proc.pid, process_table())]

    def pid_of(self, name: str) -> int:
        for pid in self.pids():
            if _cmdline(pid).startswith(name) or f"/{name} " in _cmdline(pid):
                return pid
        raise LookupError(f"no {name} process below ray node {self.name}")

    def kill(self) -> None:
        """SIGKILL the whole tree, by pid, until nothing of it is left."""
        for _ in range(50):
            pids = self.pids()
            alive = self.proc.poll() is None
            if not pids and not alive:
                return
            for pid in ([self.proc.pid] if alive else []) + pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.poll()
            time.sleep(0.1)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class LocalCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="evr-"))  # short: Ray's socket paths are long
        self.port = _free_port()
        self.address = f"{HOST}:{self.port}"
        self.nodes: list[RayNode] = []
        try:
            self.head = self.add(
                RayNode(
                    "head",
                    [
                        "--head",
                        f"--port={self.port}",
                        "--include-dashboard=false",
                        f"--temp-dir={self.dir}",
                        f"--ray-client-server-port={_free_port()}",
                    ],
                    self.dir,
                )
            )
            self.worker = self.add(RayNode("worker", [f"--address={self.address}"], self.dir))
        except BaseException:
            self.stop()
            raise

    def add(self, node: RayNode) -> RayNode:
        self.nodes.append(node)
        node.wait_started()
        return node

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
        # anything of ours that left the trees (re-parented when its parent died) still
        # names the cluster's folder on its command line
        for _ in range(20):
            strays = [pid for pid in process_table() if str(self.dir) in _cmdline(pid)]
            if not strays:
                break
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    if not HAVE_RAY:
        pytest.skip(NO_RAY)
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)  # for the drivers the tests start
    c = LocalCluster()
    try:
        yield c
    finally:
        c.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ray_config(cluster: LocalCluster, **kw) -> Ray:
    return Ray(address=cluster.address, **kw)


def run(coro):
    return asyncio.run(coro)


def busy_evaluations(node: RayNode) -> dict[int, list[int]]:
    """Evaluations running below `node` now: {Ray worker pid: [its evaluation processes]}.

    An evaluation worker (the process a Ray worker started: bubblewrap, or Python) is busy
    while it has a grandchild: its namespace's init has forked an evaluator. A warm idle
    one has the init alone below it.
    """
    table = process_table()
    busy: dict[int, list[int]] = {}
    for proc in descendants(node.proc.pid, table):
        args = _cmdline(proc.pid).split()
        if "evoengine.evaluation.worker" not in args or not _cmdline(proc.ppid).startswith("ray::"):
            continue
        below = descendants(proc.pid, table)
        if any(p.ppid != proc.pid for p in below):
            busy[proc.ppid] = [proc.pid] + [p.pid for p in below]
    return busy


def alive(pids: list[int]) -> list[int]:
    table = process_table()
    return [pid for pid in pids if pid in table and table[pid].state not in ("Z", "X")]


async def wait_for(check, timeout: float = 60.0):
    stop = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > stop:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.1)
    return value


class LoopPool:
    """A pool living on its own event loop, so one pool can serve several tests."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(pool.start())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def evaluate_all(self, texts: list[str]):
        async def all_at_once():
            return await asyncio.gather(*(self.pool.evaluate(t, label=f"c{i}") for i, t in enumerate(texts)))

        return self.run(all_at_once())

    def close(self) -> None:
        self.run(self.pool.close())
        self.loop.close()


@pytest.fixture(scope="module")
def quadratic_on_ray(cluster):
    pool = LoopPool(RayPool(QUADRATIC, 2, Limits(timeout_s=10, memory_mb=1024), ray_config(cluster)))
    yield pool
    pool.close()


def local_results(problem: Path, limits: Limits, texts: list[str]):
    pool = LoopPool(EvaluatorPool(problem, 2, limits))
    try:
        return pool.evaluate_all(texts)
    finally:
        pool.close()


# ---------------------------------------------------------------------------- fast, no cluster


def test_ray_backend_without_ray_installed_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    pool = RayPool(QUADRATIC, 1, Limits(), Ray(address="127.0.0.2:1"))
    with pytest.raises(EvoError, match=r"pip install 'evoengine\[ray\]'"):
        run(pool.start())


@needs_ray
def test_unreachable_ray_address_fails_at_start_naming_the_address():
    address = f"{HOST}:{_free_port()}"  # nothing listens there
    pool = RayPool(QUADRATIC, 1, Limits(), Ray(address=address))
    t0 = time.monotonic()
    with pytest.raises(EvoError, match=f"cannot reach a Ray cluster at {address}"):
        run(pool.start())
    assert time.monotonic() - t0 < 10


# ---------------------------------------------------------------------------- on the cluster


@pytest.mark.slow
def test_candidates_scored_on_ray_match_the_local_pool_exactly(cluster, quadratic_on_ray):
    texts = [params(a) for a in (0.0, 1.5, 3.0, -1.0)] + [
        "def params():\n    raise ValueError('no')\n",
        "def params():\n    return 'abc'\n",
        "this is not python",
    ]
    on_ray = quadratic_on_ray.evaluate_all(texts)
    assert [r.score for r in on_ray[:4]] == [score_of(a) for a in (0.0, 1.5, 3.0, -1.0)]
    assert not any(r.valid for r in on_ray[4:])
    assert on_ray == local_results(QUADRATIC, Limits(timeout_s=10, memory_mb=1024), texts)
    # another entry point of the problem file (the engine's minibatch gate uses one)
    other = quadratic_on_ray.run(quadratic_on_ray.pool.evaluate(texts[0], entry="minibatch"))
    assert not other.valid and "defines no function minibatch" in other.feedback
    assert "PID namespace" in quadratic_on_ray.pool.isolation or "process group" in quadratic_on_ray.pool.isolation
    assert quadratic_on_ray.pool.stats.evaluations >= len(texts)


@pytest.mark.slow
def test_circle_packing_seed_scores_the_same_on_ray(cluster):
    problem = REPO / "problems" / "circle_packing" / "problem.py"
    limits = Limits(timeout_s=60, memory_mb=1024)
    seed = (problem.parent / "initial.py").read_text()
    pool = LoopPool(RayPool(problem, 1, limits, ray_config(cluster)))
    try:
        [on_ray] = pool.evaluate_all([seed])
    finally:
        pool.close()
    [local] = local_results(problem, limits, [seed])
    assert on_ray.valid and on_ray.score > 0.9
    assert on_ray == local


@pytest.mark.slow
def test_sandbox_limits_inside_ray_tasks_are_those_of_the_local_pool(cluster):
    """Timeouts, memory limits, crashes, fork bombs and output capping: the same verdicts."""
    problem = HOSTILE / "problem" / "problem.py"
    limits = Limits(timeout_s=3, memory_mb=512, max_processes=16, max_output_kb=64)
    names = ["good", "infinite_loop", "segfault", "big_output", "fork_bomb"]
    texts = [(HOSTILE / f"{name}.py").read_text() for name in names]
    names.append("one_gigabyte")  # fine without a memory limit, refused under 512 MB
    texts.append("def solve(n):\n    block = bytearray(1 << 30)\n    return [1.0] * n\n")
    pool = LoopPool(RayPool(problem, 2, limits, ray_config(cluster)))
    try:
        on_ray = pool.evaluate_all(texts)
    finally:
        pool.close()
    local = local_results(problem, limits, texts)

    def verdicts(results):
        return {
            name: (r.valid, re.sub(r"\d+", "N", r.feedback.splitlines()[0]) if r.feedback else "")
            for name, r in zip(names, results, strict=True)
        }

    assert verdicts(on_ray) == verdicts(local)
    ray_verdicts = verdicts(on_ray)
    assert ray_verdicts.pop("good")[0]
    assert not any(valid for valid, _ in ray_verdicts.values())
    assert "timed out after N s" in ray_verdicts["infinite_loop"][1]
    assert "MemoryError" in ray_verdicts["one_gigabyte"][1]
    big = on_ray[names.index("big_output")]
    assert len(big.feedback) < 64 * 1024 + 2000  # output capped at max_output_kb, as locally


@pytest.mark.slow
def test_problem_that_cannot_import_on_the_nodes_fails_at_start_naming_the_cause(cluster, tmp_path):
    """Here the package is missing only on the Ray nodes (where the problem folder is Ray's
    copy of it), as on a node set up without it."""
    folder = problem_folder(
        tmp_path / "needs_a_package",
        "from evoengine import EvalResult, Problem\n"
        "if 'runtime_resources' in __file__:\n"
        "    import package_missing_on_the_nodes  # noqa\n"
        "problem = Problem(name='needs', description='d', initial='initial.py')\n"
        "def evaluate(path):\n"
        "    return EvalResult(score=1.0)\n",
        "def params():\n    return (0.0, 0.0, 0.0)\n",
    )
    pool = RayPool(folder / "problem.py", 1, Limits(timeout_s=10), ray_config(cluster))
    with pytest.raises(
        ProblemError,
        match=r"cannot be evaluated on the Ray cluster(.|\n)*"
        r"package_missing_on_the_nodes",
    ):
        run(pool.start())
    assert pool.driver_pid() is None


@pytest.mark.slow
def test_search_through_the_cli_with_ray_admits_every_candidate_once(cluster, tmp_path):
    run_dir = tmp_path / "run"
    proc = cli(
        "run",
        str(TEST_PROBLEMS / "quadratic"),
        "--ray",
        cluster.address,
        "--budget",
        "12",
        "--run-dir",
        str(run_dir),
        "--set",
        "concurrency.evaluations=2",
        env=RAY_ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ray backend: {cluster.address}, 2 node(s)" in proc.stderr  # it really used the cluster
    state = json.loads(cli("status", str(run_dir), "--json", check=True).stdout)
    assert state["admitted"] == 12
    assert state["in_flight"] == 0
    assert state["best_score"] is not None and state["best_score"] >= state["seed_score"]


@pytest.mark.slow
def test_killed_ray_worker_without_retries_gives_one_invalid_result_naming_the_death(cluster):
    pool = LoopPool(RayPool(QUADRATIC, 2, Limits(timeout_s=10, memory_mb=1024), ray_config(cluster, max_retries=0)))
    try:

        async def scenario():
            calls = [
                asyncio.ensure_future(pool.pool.evaluate(params(a, delay=4), label=f"slow {a}")) for a in (1.0, 2.0)
            ]
            [(ray_worker, sandboxes)] = (await wait_for(lambda: busy_evaluations(cluster.worker))).items()
            os.kill(ray_worker, signal.SIGKILL)
            results = await asyncio.gather(*calls)
            return results, sandboxes

        results, sandboxes = pool.run(scenario())
        assert len(results) == 2
        died = [r for r in results if not r.valid]
        assert len(died) == 1 and "died" in died[0].feedback and "max_retries=0" in died[0].feedback
        [survivor] = [r for r in results if r.valid]
        assert survivor.score in (score_of(1.0), score_of(2.0))
        # the evaluation worker and the sandbox below the killed Ray worker went with it
        pool.run(wait_for(lambda: not alive(sandboxes), 15))
    finally:
        pool.close()


@pytest.mark.slow
def test_worker_node_killed_mid_evaluation_is_retried_and_nothing_is_lost_or_duplicated(cluster, quadratic_on_ray):
    async def scenario():
        values = (1.0, 2.0)
        calls = [
            asyncio.ensure_future(quadratic_on_ray.pool.evaluate(params(a, delay=4), label=f"slow {a}")) for a in values
        ]
        await wait_for(lambda: busy_evaluations(cluster.worker))
        os.kill(cluster.worker.pid_of("raylet"), signal.SIGKILL)
        t0 = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*calls), 120)
        return values, results, time.monotonic() - t0

    values, results, after_kill = quadratic_on_ray.run(scenario())
    assert len(results) == len(values)  # one result per call
    assert [r.score for r in results] == [score_of(a) for a in values]  # each its own, all valid
    assert after_kill > 3  # the killed one really ran again (on the head)
    # the pool goes on working with the node gone
    [again] = quadratic_on_ray.evaluate_all([params(0.5)])
    assert again.score == score_of(0.5)


@pytest.mark.slow
def test_ray_cluster_going_away_stops_the_run_with_a_clear_error(cluster, quadratic_on_ray):
    pool = quadratic_on_ray.pool

    async def scenario():
        call = asyncio.ensure_future(pool.evaluate(params(1.0, delay=5), label="slow"))
        await wait_for(lambda: busy_evaluations(cluster.head))
        cluster.head.kill()
        with pytest.raises(
            EvoError,
            match=rf"the Ray cluster at {cluster.address} went away.*"
            r"the run is stopped; resume with `evoengine resume",
        ):
            await asyncio.wait_for(call, 120)
        with pytest.raises(EvoError, match="went away"):
            await pool.evaluate(params(0.0), label="after")

    quadratic_on_ray.run(scenario())
