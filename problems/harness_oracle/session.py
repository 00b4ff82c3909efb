"""The evaluator's side of one harness run: hand out tasks, answer `ask`, record everything.

`Session` holds the tasks and the per-task records; `serve` runs it against the sealed
child's pipes (the protocol is in `client.py`). Every question goes to the one function
`reply(question, repeat)` the evaluator passes in (its model); the candidate never sees the
answers, the register, or anything but replies.
"""

from __future__ import annotations

import json
import os
import select
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_LINE = 64 * 1024  # longest message the candidate may send
MAX_QUESTION = 2000  # characters of a question passed on to the model


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
    reply: Callable[[str, int], str]  # (question, repeat within the task) -> the model's reply
    check: Callable[[object, object], bool]
    key: Callable[[str], str]  # what counts as the same question
    records: list[TaskRecord] = field(default_factory=list)
    current: int = 0
    failure: str = ""  # why the session ended early, if it did
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

    def handle(self, message: object) -> dict | None:
        """The reply to one client message (None: the session is over)."""
        if isinstance(message, dict) and set(message) == {"fatal"}:
            self.failure = str(message["fatal"])[:2000]
            return None
        record = self.records[self.current]
        if isinstance(message, dict) and set(message) == {"ask"}:
            if record.calls >= self.budget:
                record.refused += 1
                return {"reply": ""}
            question = str(message["ask"])[:MAX_QUESTION]
            key = self.key(question)
            text = self.reply(question, self._repeats[key])
            self._repeats[key] += 1
            self._replies.add(text)
            record.calls += 1
            record.other_questions += key != self.key(self.tasks[self.current].question)
            record.distinct_replies = len(self._replies)
            return {"reply": text}
        if isinstance(message, dict) and "answer" in message and set(message) <= {"answer", "error"}:
            answer = message["answer"]
            record.answer = str(answer)[:MAX_QUESTION] if answer is not None else ""
            record.error = str(message.get("error") or "")[:500]
            record.correct = self.check(self.tasks[self.current], answer)
            self.current += 1
            self._repeats.clear()
            self._replies.clear()
            return self.opening()
        self.failure = f'expected {{"ask": question}} or {{"answer": answer}}, got {str(message)[:80]}'
        return None


def serve(session: Session, stdin: int, stdout: int, deadline: float) -> None:
    """Run the session over the child's pipes until the suite ends, the child goes, or time is up."""
    os.set_blocking(stdin, False)
    pending = bytearray()
    outgoing: dict | None = session.opening()
    while outgoing is not None:
        try:
            os.write(stdin, (json.dumps(outgoing) + "\n").encode())
        except BlockingIOError:
            session.failure = "the harness stopped reading the evaluator's replies"
            return
        except BrokenPipeError:
            session.failure = _last_words(stdout, deadline) or "the harness process ended before the suite did"
            return
        if outgoing.get("done"):
            return
        outgoing = None
        while outgoing is None and not session.failure:
            if b"\n" in pending:
                line, _, rest = bytes(pending).partition(b"\n")
                pending = bytearray(rest)
                try:
                    message = json.loads(line)
                except ValueError:
                    session.failure = f"unreadable message from the harness: {line[:80]!r}"
                    return
                outgoing = session.handle(message)
                if outgoing is None:
                    return
                continue
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stdout], [], [], left)[0]:
                session.failure = "the harness did not finish the suite in time"
                return
            chunk = os.read(stdout, 1 << 16)
            if not chunk:
                session.failure = "the harness process ended before the suite did"
                return
            pending.extend(chunk)
            if len(pending) > MAX_LINE and b"\n" not in pending:
                session.failure = f"a message from the harness exceeded {MAX_LINE} bytes"
                return


def _last_words(stdout: int, deadline: float) -> str:
    """The reason the client gave before it ended ({"fatal": ...}), if it gave one."""
    data = b""
    while time.monotonic() < deadline and select.select([stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
        chunk = os.read(stdout, 1 << 16)
        if not chunk or len(data) > MAX_LINE:
            break
        data += chunk
    for line in data.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and set(message) == {"fatal"}:
            return str(message["fatal"])[:2000]
    return ""
