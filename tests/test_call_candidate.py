"""`call_candidate`: what an evaluator gets back from candidate code, and what it is protected from.

These run call_candidate from the test process itself (outside the sandbox), with real
forked children; tests/test_sandbox.py runs it inside the sandbox.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from evoengine.evaluation import CandidateError, call_candidate
from evoengine.evaluation import call as call_module
from evoengine.evaluation.processes import process_table


def write(tmp_path: Path, source: str, name: str = "cand.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def alive(pid: int, start: int | None = None) -> bool:
    proc = process_table().get(pid)
    return proc is not None and proc.state not in ("Z", "X") and (start is None or proc.start == start)


def test_values_come_back_as_plain_json_data(tmp_path):
    path = write(
        tmp_path,
        """
        import numpy as np
        def solve(n, scale=1.0):
            return {"array": np.arange(n) * scale, "pair": (1, "two"), "scalar": np.float32(0.5),
                    "nested": [np.eye(2, dtype=int)], "none": None, "flag": np.bool_(True)}
    """,
    )
    value = call_candidate(path, "solve", 3, scale=2.0, timeout_s=10)
    assert value == {
        "array": [0.0, 2.0, 4.0],
        "pair": [1, "two"],
        "scalar": 0.5,
        "nested": [[[1, 0], [0, 1]]],
        "none": None,
        "flag": True,
    }


def test_arguments_travel_by_fork_and_mutations_do_not_come_back(tmp_path):
    path = write(
        tmp_path,
        """
        def solve(points, table):
            points *= 0
            table.clear()
            return float(points.sum())
    """,
    )
    points, table = np.ones(4), {"keep": 1}
    assert call_candidate(path, "solve", points, table, timeout_s=10) == 0.0
    assert points.tolist() == [1.0, 1.0, 1.0, 1.0] and table == {"keep": 1}


@pytest.mark.parametrize(
    "source, kind, message",
    [
        (
            "def solve():\n    raise ValueError('bad input')\n",
            "raised",
            r"solve\(\) raised ValueError: bad input \(line 2 of cand.py\)",
        ),
        (
            "x = 1 / 0\ndef solve():\n    return 1\n",
            "raised",
            r"importing cand.py raised ZeroDivisionError: division by zero \(line 1 of cand.py\)",
        ),
        ("def solve()\n    return 1\n", "raised", r"importing cand.py raised SyntaxError: .*\(line 1"),
        ("def solve():\n    while True:\n        pass\n", "timeout", r"solve\(\) timed out after 0.5 s"),
        (
            "import ctypes\ndef solve():\n    return ctypes.string_at(0)\n",
            "signal",
            r"solve\(\): the candidate process killed by signal SIGSEGV",
        ),
        ("import os\ndef solve():\n    os._exit(3)\n", "exit", r"solve\(\): the candidate process exited with code 3"),
        ("import sys\ndef solve():\n    sys.exit(5)\n", "exit", r"exited with code 5"),
        (
            "def solve():\n    return object()\n",
            "unserialisable",
            r"solve\(\) returned a non-serialisable value: a object",
        ),
        ("def solve():\n    return {1: 'x'}\n", "unserialisable", r"non-string key 1"),
        ("def solve():\n    return 1j\n", "unserialisable", r"a complex"),
        ("def other():\n    return 1\n", "missing", r"cand.py defines no function solve\(\)"),
    ],
)
def test_candidate_faults_become_candidate_errors_saying_what_happened(tmp_path, source, kind, message):
    path = write(tmp_path, source)
    started = time.monotonic()
    with pytest.raises(CandidateError, match=message) as info:
        call_candidate(path, "solve", timeout_s=0.5)
    assert info.value.kind == kind
    assert time.monotonic() - started < 5


def test_printing_too_much_is_stopped_and_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(call_module._settings, "max_output_kb", 4)
    path = write(
        tmp_path,
        """
        def solve():
            while True:
                print("spam " * 100)
    """,
    )
    with pytest.raises(CandidateError, match=r"solve\(\) printed more than 4 KB of output") as info:
        call_candidate(path, "solve", timeout_s=10)
    assert info.value.kind == "output" and "spam" in info.value.output


def test_output_within_the_limit_is_passed_through(tmp_path, capfd):
    path = write(
        tmp_path,
        """
        def solve():
            print("hello from the candidate")
            return 7
    """,
    )
    assert call_candidate(path, "solve", timeout_s=10) == 7
    assert "hello from the candidate" in capfd.readouterr().out


def test_candidate_cannot_write_into_the_callers_descriptors(tmp_path):
    channel_r, channel_w = os.pipe()  # stands for the evaluator's own result channel
    try:
        path = write(
            tmp_path,
            """
            import os
            def solve():
                hits = 0
                for fd in range(4, 1024):
                    try:
                        os.write(fd, b'{"score": 1e9}\\n')
                        hits += 1
                    except OSError:
                        pass
                return hits
        """,
        )
        assert call_candidate(path, "solve", timeout_s=10) == 0
        os.set_blocking(channel_r, False)
        with pytest.raises(BlockingIOError):
            os.read(channel_r, 100)
    finally:
        os.close(channel_r)
        os.close(channel_w)


def test_candidate_cannot_fake_its_own_return_through_its_channel(tmp_path):
    path = write(
        tmp_path,
        """
        import os
        def solve():
            os.write(3, b'{"value": 1000000000.0}\\n')
            return 0.0
    """,
    )
    with pytest.raises(CandidateError, match="garbled") as info:
        call_candidate(path, "solve", timeout_s=10)
    assert info.value.kind == "garbled"


def test_background_processes_started_by_a_call_are_killed_when_it_returns(tmp_path):
    report = tmp_path / "child.json"
    path = write(
        tmp_path,
        f"""
        import json, os, time
        def solve():
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            json.dump({{"pid": pid}}, open({str(report)!r}, "w"))
            return 1
    """,
    )
    assert call_candidate(path, "solve", timeout_s=10) == 1
    pid = json.loads(report.read_text())["pid"]
    deadline = time.monotonic() + 5  # SIGKILL was sent; its delivery on the other core is not instant
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(pid)


def test_processes_the_evaluator_started_itself_survive_a_call(tmp_path):
    helper = subprocess.Popen(["sleep", "30"])
    try:
        path = write(tmp_path, "def solve():\n    return 1\n")
        assert call_candidate(path, "solve", timeout_s=10) == 1
        assert helper.poll() is None
    finally:
        helper.kill()
        helper.wait()


def test_orphans_that_escape_with_setsid_are_killed_under_a_subreaper(tmp_path):
    """Inside the sandbox the evaluator is a child subreaper; a forked child plays it here."""
    report = tmp_path / "orphan.json"
    path = write(
        tmp_path,
        f"""
        import json, os, time
        def solve():
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    pid = int(os.readlink("/proc/self"))
                    start = int(open(f"/proc/{{pid}}/stat", "rb").read().rsplit(b")", 1)[1].split()[19])
                    json.dump({{"pid": pid, "start": start}}, open({str(report)!r}, "w"))
                    time.sleep(60)
                os._exit(0)
            while not os.path.exists({str(report)!r}):
                time.sleep(0.01)
            time.sleep(0.05)
            return 1
    """,
    )
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the "evaluator": a subreaper calling the candidate
        code = 2
        try:
            ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
            ok = call_candidate(path, "solve", timeout_s=10) == 1
            orphan = json.loads(report.read_text())
            code = 0 if ok and not alive(orphan["pid"], orphan["start"]) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
