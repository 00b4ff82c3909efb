"""Record and replay of model calls.

Every model call carries `request_hash`: a digest of what was asked (model id, messages,
temperature, max_tokens). The run store keeps each call with its hash and reply, so a
later run can be replayed from an earlier run's store with no endpoint at all
(`config.replay: <run dir>`): `ReplayBook` answers each request with the recorded reply
for the same hash, in the order they were recorded when one request was made several
times, and raises a `ModelError` naming the request when the store has no reply for it.
A request made for proposal k (`current_proposal`, set by the engine) gets
the reply recorded for proposal k first: two proposals of a concurrent run may ask the same
thing and get different answers, in whichever order they came back.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import defaultdict, deque
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

# The proposal the current task works for (the engine sets it): a replayed run answers its
# model calls with the replies that very proposal got in the recorded run.
current_proposal: ContextVar[int | None] = ContextVar("evoengine_proposal", default=None)


def request_hash(model_id: str, messages: list[dict[str, str]], temperature: float, max_tokens: int) -> str:
    """Stable digest of one request; equal requests give equal hashes across runs."""
    payload = {
        "model": model_id,
        "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
        "temperature": round(float(temperature), 6),
        "max_tokens": int(max_tokens),
    }
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(eq=False)
class RecordedCall:
    """One stored answer: the reply (or the error the original run got) and its usage."""

    reply: str | None
    tokens_in: int
    tokens_out: int
    cost: float
    error: str | None
    used: bool = False


class ReplayBook:
    """Recorded replies of an earlier run, looked up by request hash.

    Identical requests get the recorded replies in their original order; asking once more
    than the original run did is a miss, like asking something it never asked.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "archive.sqlite"
        if not self.path.is_file():
            raise ModelError(
                f"replay: {self.path} does not exist; set `replay:` to the directory of an "
                f"earlier run (it holds archive.sqlite)"
            )
        self._calls: dict[str, deque[RecordedCall]] = defaultdict(deque)
        self._by_proposal: dict[tuple[int, str], deque[RecordedCall]] = defaultdict(deque)
        self._lock = threading.Lock()
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
                rows = db.execute(
                    "SELECT request_hash, reply, tokens_in, tokens_out, cost, error, proposal_id "
                    "FROM model_calls ORDER BY id"
                ).fetchall()
        except sqlite3.Error as exc:
            raise ModelError(f"replay: cannot read recorded model calls from {self.path}: {exc}") from exc
        for digest, reply, tokens_in, tokens_out, cost, error, proposal_id in rows:
            call = RecordedCall(reply, int(tokens_in or 0), int(tokens_out or 0), float(cost or 0.0), error)
            self._calls[digest].append(call)
            if proposal_id is not None:
                self._by_proposal[(proposal_id, digest)].append(call)

    def take(self, digest: str, model: str, for_proposal: int | None = None) -> RecordedCall:
        """The next recorded answer to this request (the one proposal `for_proposal` got, if it
        asked it), or a `ModelError` on a miss."""
        with self._lock:
            queues = [self._by_proposal.get((for_proposal, digest))] if for_proposal is not None else []
            for queue in [*queues, self._calls.get(digest)]:
                while queue:
                    call = queue.popleft()
                    if not call.used:
                        call.used = True
                        return call
        raise ModelError(
            f"replay: model {model!r} was asked something the run in {self.run_dir} never "
            f"asked (request {digest[:12]}), or asked it more often; the replayed run has "
            f"diverged from the recorded one: use the same problem, config and seed, or "
            f"drop `replay:` to call the endpoint"
        )
