"""The oracle session: a separate trusted process that serves `ask` to the candidate harness.

Why a process of its own. `call_candidate` forks the evaluator, so the candidate child gets
a copy of the evaluator's memory. The task answers must therefore never be loaded in the
evaluator: they live only in this server process, forked from the evaluator *before* it
imports `towns`, and made non-dumpable so nothing can read its memory. The evaluator gets
back only per-task results (right or wrong, how many calls), never the answers.

The channel is two named pipes in a private temporary folder: the candidate writes JSON
lines to `requests` and reads JSON lines from `replies`. The server drives the session:

    server -> {"task": "...", "budget": 16}          one task at a time, in a fixed order
    client -> {"ask": "question"}                     charged to the current task
    server -> {"reply": "..."}                        "" once the task's budget is spent
    client -> {"answer": "...", "error": ""}          closes the task
    server -> {"done": true}                          after the last task

Anything else the candidate sends is refused; nothing it sends can reach another task's
count, the answers or the results pipe to the evaluator.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINE = 64 * 1024  # longest message the candidate may send
MAX_QUESTION = 2000  # characters of a question passed on to the oracle
MODEL_ENV = "EVOENGINE_HARNESS_MODEL"
BASE_URL_ENV = "EVOENGINE_HARNESS_BASE_URL"
KEY_ENV_ENV = "EVOENGINE_HARNESS_API_KEY_ENV"
TEMPERATURE_ENV = "EVOENGINE_HARNESS_TEMPERATURE"

PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4


@dataclass
class Channel:
    """The named pipes' folder and the evaluator's ends of the control and results pipes."""

    folder: Path
    pid: int  # the server process
    results_fd: int  # evaluator reads the server's results here
    control_fd: int  # evaluator closes this to tell the server the candidate is finished

    def finish(self, timeout_s: float) -> dict:
        """Tell the server the candidate is done, read its results, reap it, clean up."""
        os.close(self.control_fd)
        data = bytearray()
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self.results_fd], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
                chunk = os.read(self.results_fd, 1 << 16)
                if not chunk:
                    break
                data.extend(chunk)
        finally:
            os.close(self.results_fd)
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            for name in ("requests", "replies"):
                (self.folder / name).unlink(missing_ok=True)
            self.folder.rmdir()
        try:
            results = json.loads(bytes(data))
        except ValueError:
            return {"server_error": "the oracle process ended without reporting results"}
        return results if isinstance(results, dict) else {"server_error": "malformed results"}


def start(budget: int) -> Channel:
    """Fork the oracle server and return the channel the candidate should be given."""
    folder = Path(tempfile.mkdtemp(prefix="evo-oracle-"))
    os.mkfifo(folder / "requests", 0o600)
    os.mkfifo(folder / "replies", 0o600)
    results_r, results_w = os.pipe()
    control_r, control_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the server process, always ends in os._exit
        code = 1
        try:
            os.close(results_r)
            os.close(control_w)
            _harden()
            results = serve(folder, control_r, budget)
            _write_all(results_w, json.dumps(results).encode())
            code = 0
        except BaseException:
            try:
                _write_all(results_w, json.dumps({"server_error": traceback.format_exc(limit=3)}).encode())
            except BaseException:
                pass
        finally:
            os._exit(code)
    os.close(results_w)
    os.close(control_r)
    return Channel(folder, pid, results_r, control_w)


def _harden() -> None:
    """Non-dumpable (no ptrace, no /proc/<pid>/mem) and dies with the evaluator."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the evaluator's own sandbox must do
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# ---------------------------------------------------------------- the session


@dataclass
class TaskRecord:
    id: str
    kind: str
    question: str
    heldout: bool
    calls: int = 0
    refused: int = 0  # asks after the budget was spent (not charged, answered "")
    other_questions: int = 0  # calls that were not the task's own question
    distinct_replies: int = 0
    answer: str | None = None  # None: the harness never answered
    correct: bool = False
    error: str = ""


@dataclass
class Session:
    """One harness run over the task suite; `handle` takes one client message."""

    tasks: list
    budget: int
    reply: Callable[[str, int], str]  # (question, repeat) -> oracle reply
    check: Callable[[object, object], bool]
    key: Callable[[str], str]
    records: list[TaskRecord] = field(default_factory=list)
    current: int = 0
    protocol_error: str = ""
    _repeats: Counter = field(default_factory=Counter)
    _replies: set = field(default_factory=set)

    def __post_init__(self) -> None:
        self.records = [TaskRecord(t.id, t.kind, t.question, t.heldout) for t in self.tasks]

    @property
    def finished(self) -> bool:
        return self.current >= len(self.tasks)

    def opening(self) -> dict:
        if self.finished:
            return {"done": True}
        return {"task": self.tasks[self.current].question, "budget": self.budget}

    def handle(self, message: object) -> list[dict]:
        """The server's reply messages to one client message."""
        if self.finished:
            return [{"error": "the session is over"}]
        record = self.records[self.current]
        if isinstance(message, dict) and "ask" in message and len(message) == 1:
            if record.calls >= self.budget:
                record.refused += 1
                return [{"reply": ""}]
            question = str(message["ask"])[:MAX_QUESTION]
            key = self.key(question)
            text = self.reply(question, self._repeats[key])
            self._repeats[key] += 1
            self._replies.add(text)
            record.calls += 1
            record.other_questions += key != self.key(self.tasks[self.current].question)
            record.distinct_replies = len(self._replies)
            return [{"reply": text}]
        if isinstance(message, dict) and "answer" in message and set(message) <= {"answer", "error"}:
            answer = message["answer"]
            record.answer = str(answer)[:MAX_QUESTION] if answer is not None else ""
            record.error = str(message.get("error") or "")[:500]
            record.correct = self.check(self.tasks[self.current], answer)
            self.current += 1
            self._repeats.clear()
            self._replies.clear()
            return [self.opening()]
        return [{"error": 'expected {"ask": question} or {"answer": answer}'}]

    def results(self) -> dict:
        return {
            "tasks": [vars(r) for r in self.records],
            "protocol_error": self.protocol_error,
            "oracle": os.environ.get(MODEL_ENV) or "offline",
        }


def serve(folder: Path, control_fd: int, budget: int) -> dict:
    """Run one session over the named pipes until the suite ends or the evaluator says stop."""
    import towns  # only here, in the server process: the answers never enter the evaluator

    oracle = model_reply if os.environ.get(MODEL_ENV) else towns.offline_reply
    session = Session(towns.ordered_tasks(), budget, oracle, towns.is_correct, towns.question_key)
    requests = os.open(folder / "requests", os.O_RDWR | os.O_NONBLOCK)
    replies = os.open(folder / "replies", os.O_RDWR | os.O_NONBLOCK)
    pending = bytearray()
    outgoing = [session.opening()]
    try:
        while True:
            for message in outgoing:
                try:
                    _write_all(replies, (json.dumps(message) + "\n").encode())
                except BlockingIOError:
                    session.protocol_error = "the harness stopped reading the oracle's replies"
                    return session.results()
            outgoing = []
            ready, _, _ = select.select([requests, control_fd], [], [])
            if control_fd in ready:  # the candidate process is gone (or the evaluator gave up)
                return session.results()
            try:
                pending.extend(os.read(requests, 1 << 16))
            except BlockingIOError:  # woken without data; wait again
                continue
            while b"\n" in pending:
                line, _, rest = bytes(pending).partition(b"\n")
                pending = bytearray(rest)
                try:
                    message = json.loads(line)
                except ValueError:
                    session.protocol_error = f"unreadable message from the harness: {line[:80]!r}"
                    return session.results()
                outgoing += session.handle(message)
            if len(pending) > MAX_LINE:
                session.protocol_error = f"a message from the harness exceeded {MAX_LINE} bytes"
                return session.results()
    finally:
        os.close(requests)
        os.close(replies)


# ---------------------------------------------------------------- a real model as the oracle


def model_reply(question: str, repeat: int) -> str:
    """Ask the configured chat model, which answers from the register document.

    Configured by environment variables: EVOENGINE_HARNESS_MODEL (model id; setting it
    switches the oracle from the offline simulation to the model), EVOENGINE_HARNESS_BASE_URL
    (an OpenAI-compatible endpoint; default: the openai client's own default or
    OPENAI_BASE_URL), EVOENGINE_HARNESS_API_KEY_ENV (the variable holding the key; default
    OPENAI_API_KEY) and EVOENGINE_HARNESS_TEMPERATURE (default 0.7). The request's `seed`
    is derived from (question, repeat) so that endpoints honouring it repeat themselves.
    """
    import hashlib

    import towns
    from openai import OpenAI

    global _client
    if _client is None:
        key = os.environ.get(os.environ.get(KEY_ENV_ENV, "OPENAI_API_KEY"), "") or "none"
        _client = OpenAI(base_url=os.environ.get(BASE_URL_ENV) or None, api_key=key, max_retries=3)
    seed = int.from_bytes(hashlib.sha256(f"{towns.question_key(question)}|{repeat}".encode()).digest()[:4], "big")
    system = (
        "Answer questions about the towns in this register. Reply with the answer only: "
        "a number, a town name, a person's name, or yes/no.\n\n" + towns.register_document()
    )
    try:
        response = _client.chat.completions.create(
            model=os.environ[MODEL_ENV],
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
            temperature=float(os.environ.get(TEMPERATURE_ENV, "0.7")),
            max_tokens=64,
            seed=seed,
        )
        return (response.choices[0].message.content or "").strip()
    except Exception as exc:  # a failed call is an unhelpful reply, not a crashed evaluation
        return f"(the model call failed: {type(exc).__name__})"


_client = None
