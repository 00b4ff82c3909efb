"""`call_candidate`: run one function of a candidate file in a child process and get its value.

A problem's `evaluate(path)` is trusted; the candidate is not. Importing the candidate into
the evaluator would let it rewrite the evaluator's memory (its score, its checks, the result
channel). `call_candidate` forks a child that imports the candidate file, calls the function
and sends the value back as JSON over a pipe of its own: the child has no other descriptor
of the evaluator's (it cannot write the evaluator's result), cannot ptrace it (the sandbox
makes the evaluator non-dumpable), and only plain data comes back (never a pickle).

Arguments travel by fork, so they can be anything (numpy arrays included); the value must
be JSON-like: None, bool, int, float, str, lists/tuples, dicts with string keys, numpy
arrays and scalars (arrays become nested lists, tuples become lists). Anything else, or
any fault in the candidate, raises `CandidateError` with a one-line reason.

After each call, every process that appeared below the caller during the call is killed
(calls from several threads of one evaluator are serialised so this stays exact).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import processes
from .protocol import one_message, write_message
from .sandbox import enter_child

MAX_RESULT_MB = 64
_MAX_DEPTH = 200


class CandidateError(Exception):
    """Candidate code failed: raised, timed out, crashed, exited, printed or returned too much.

    `kind` is one of: raised, missing, timeout, signal, exit, unserialisable, output,
    too_large, garbled. `output` holds the tail of what the candidate printed.
    """

    def __init__(self, message: str, *, kind: str, output: str = "", details: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.output = output
        self.details = details  # e.g. the candidate's traceback, when it raised


@dataclass
class _Settings:
    timeout_s: float = 60.0
    max_output_kb: int = 256


_settings = _Settings()
_lock = threading.Lock()


def configure(*, timeout_s: float, max_output_kb: int) -> None:
    """Defaults for calls made by this process (the sandbox sets them from the run's limits)."""
    _settings.timeout_s = float(timeout_s)
    _settings.max_output_kb = int(max_output_kb)


def call_candidate(
    candidate_path: str | Path, function: str, *args: Any, timeout_s: float | None = None, **kwargs: Any
) -> Any:
    """Import `candidate_path` in a child process, call `function(*args, **kwargs)`, return its value.

    `timeout_s` defaults to the evaluation's own timeout. Raises `CandidateError` for any
    fault of the candidate's; never returns a value that did not survive a JSON round trip.
    """
    path = Path(candidate_path).resolve()
    timeout = _settings.timeout_s if timeout_s is None else float(timeout_s)
    with _lock:
        return _call(path, function, args, kwargs, timeout, _settings.max_output_kb * 1024)


def _call(path: Path, function: str, args: tuple, kwargs: dict, timeout: float, cap: int) -> Any:
    # Processes the evaluator already had are spared; usually it has none, and then neither
    # this nor the sweep after the call needs to read /proc.
    had_children = processes.has_children()
    spare = processes.snapshot_descendants() if had_children else frozenset()
    parent = os.getpid()
    output = _Output(cap)

    def child(result_w: int, out_w: int | None) -> None:
        assert out_w is not None
        _child(path, function, args, kwargs, result_w, out_w, parent)

    try:
        finished = processes.run_child(child, timeout, MAX_RESULT_MB, failed=70, output=output.feed)
    finally:
        if had_children or processes.has_children():  # orphans come back to a subreaper
            processes.kill_descendants(spare)

    def fail(why: str, kind: str, details: str = "") -> CandidateError:
        return CandidateError(why, kind=kind, output=output.tail(), details=details)

    if finished.stopped == "timeout":
        raise fail(f"{function}() timed out after {timeout:g} s", "timeout")
    if finished.stopped == "output":
        raise fail(f"{function}() printed more than {cap // 1024} KB of output", "output")
    if finished.stopped == "result":
        raise fail(f"{function}() returned a value larger than {MAX_RESULT_MB} MB", "too_large")
    status, message = finished.status, one_message(finished.result)
    if message is None and (status != 0 or not finished.result):
        kind = "signal" if status is not None and os.WIFSIGNALED(status) else "exit"
        raise fail(f"{function}(): the candidate process {processes.describe_status(status)} before returning", kind)
    if message is None:
        raise fail(f"{function}(): the candidate wrote to its result channel itself (garbled result)", "garbled")
    if "value" in message:
        return message["value"]
    kind = str(message.get("error", "raised"))
    text = str(message.get("message", ""))
    if kind == "raised":
        where = f"importing {path.name}" if message.get("phase") == "import" else f"{function}()"
        line = message.get("line")
        at = f" (line {line} of {path.name})" if line else ""
        said = f": {text}" if text else ""
        raise fail(
            f"{where} raised {message.get('type', 'Exception')}{said}{at}", "raised", str(message.get("traceback", ""))
        )
    if kind == "unserialisable":
        raise fail(f"{function}() returned a non-serialisable value: {text}", kind)
    raise fail(f"{path.name} defines no function {function}()", "missing")


class _Output:
    """Forwards the candidate's output to our stdout up to `cap` bytes and keeps a short tail."""

    def __init__(self, cap: int, keep: int = 4096) -> None:
        self.cap, self.keep, self.total = cap, keep, 0
        self._tail = bytearray()

    def feed(self, chunk: bytes) -> bool:
        allowed = chunk[: max(0, self.cap - self.total)]
        self.total += len(chunk)
        if allowed:
            with contextlib.suppress(OSError):
                os.write(1, allowed)
        self._tail = (self._tail + chunk)[-self.keep :]
        return self.total <= self.cap

    def tail(self) -> str:
        return self._tail.decode("utf-8", "replace")


# ---------------------------------------------------------------------------- in the child


def _child(
    path: Path, function: str, args: tuple, kwargs: dict, result_w: int, out_w: int, parent: int
) -> None:  # pragma: no cover - runs in the child
    enter_child(parent, 71, out_w, result_w)
    processes.reopen_stdio()
    sys.path.insert(0, str(path.parent))
    sys.argv = [str(path)]
    phase = "import"
    try:
        spec = importlib.util.spec_from_file_location("evoengine_candidate", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path.name} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules["evoengine_candidate"] = module
        spec.loader.exec_module(module)
        target = getattr(module, function, None)
        if not callable(target):
            message: dict[str, Any] = {"error": "missing"}
        else:
            phase = "call"
            value = target(*args, **kwargs)
            try:
                message = {"value": _plain(value, 0)}
            except Exception as exc:
                message = {"error": "unserialisable", "message": safe_str(exc)}
    except SystemExit as exc:
        processes.flush_stdio()
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        os._exit(code & 0xFF)
    except BaseException as exc:
        message = {
            "error": "raised",
            "phase": phase,
            "type": type(exc).__name__,
            "message": safe_str(exc),
            "line": _line(exc, path),
            "traceback": traceback_tail(exc, 4000),
        }
    processes.flush_stdio()
    try:
        write_message(3, message)
    except (TypeError, ValueError) as exc:  # only from hostile str subclasses and the like
        write_message(3, {"error": "unserialisable", "message": safe_str(exc)})
    os._exit(0)


def _plain(value: Any, depth: int) -> Any:
    """Plain JSON data, or ValueError naming what could not be converted."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"nested more than {_MAX_DEPTH} levels deep")
    if value is None or type(value) in (bool, int, float, str):
        return value
    for base in (bool, int, float, str):  # subclasses (IntEnum, ...) become the base type
        if isinstance(value, base):
            return base(value)
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic)):
        if value.dtype.kind not in "biufU":
            raise ValueError(f"a numpy {type(value).__name__} of dtype {value.dtype}")
        return _plain(value.tolist(), depth + 1)
    if isinstance(value, (list, tuple)):
        return [_plain(item, depth + 1) for item in value]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValueError(f"a dict with a non-string key {bad[0]!r}")
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    raise ValueError(f"a {type(value).__name__}")


def safe_str(exc: BaseException) -> str:
    """`str(exc)`, cut to 2,000 characters, even where candidate code made that fail."""
    try:
        return str(exc)[:2000]
    except BaseException:
        return f"<{type(exc).__name__} whose str() failed>"


def traceback_tail(exc: BaseException, chars: int) -> str:
    """The last `chars` characters of `exc`'s traceback ('' where formatting it fails)."""
    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-chars:]
    except BaseException:
        return ""


def _line(exc: BaseException, path: Path) -> int | None:
    """The line of the candidate file `path` where `exc` was raised (None: not in that file)."""
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        return exc.lineno
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    return frames[-1].lineno if frames else None
