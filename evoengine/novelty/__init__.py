"""Novelty rejection: refuse a child that is a near-copy of something its island already has.

Before a child is evaluated, `Novelty.check(text, island)` embeds it and compares it by
cosine similarity with the island's `window` most recent admitted candidates (and with
the seed, which belongs to every island). An identical text is always rejected; above
`threshold` the child is rejected too, unless a judge (an async callable
`judge(child_text, nearest_text) -> bool`, usually a model the engine wraps) says it is
really new. `Novelty.add(candidate)` records an admitted candidate; the memory is a
bounded deque per island, so replaying a run's candidates through `add` rebuilds it
exactly, and embeddings are computed lazily, at the next check, for the entries that
are still in the window.

How the similarity is measured is the embedder's (`embedders.py`); the default, "tokens",
compares the structure of the editable text, so that `threshold` reads as the share of
structure a child may keep from its nearest neighbour. When the seed is admitted,
`advise` logs what the threshold means on that seed, and warns when it refuses every
small edit (see `threshold_advice`).

Cost of a check: one embedding plus a sparse or dense matrix-vector product against the
window. The stacked matrix is rebuilt only every `_REBUILD` additions; rows added since
are compared one by one, and rows that left the window are masked.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import Novelty as NoveltyConfig
from ..records import Candidate
from .advice import threshold_advice
from .embedders import Embedder, chunk_lines, make_embedder

__all__ = ["Novelty", "Verdict", "chunk_lines", "make_embedder", "threshold_advice"]

log = logging.getLogger(__name__)

Judge = Callable[[str, str], Awaitable[bool]]

_REBUILD = 32  # additions after which an island's stacked matrix is rebuilt
_RECENT = 64  # embeddings of recently checked texts kept for `add`


@dataclass(frozen=True)
class Verdict:
    """Whether a child may go on to evaluation, and why."""

    novel: bool
    similarity: float
    nearest_id: int | None
    reason: str


# ---------------------------------------------------------------------- memory


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _dense(row: Any) -> np.ndarray:
    return row.toarray().ravel() if hasattr(row, "toarray") else np.asarray(row).ravel()


def _stack(rows: list[Any]) -> Any:
    if hasattr(rows[0], "toarray"):  # sparse n-gram rows (scipy is loaded by then)
        import scipy.sparse as sp

        return sp.vstack(rows, format="csr")
    return np.vstack(rows)


@dataclass
class _Entry:
    id: int
    text: str
    digest: bytes
    seq: int
    vector: Any = None


@dataclass
class _Memory:
    """One island's recent candidates, with a stacked matrix rebuilt now and then."""

    window: int
    entries: deque = field(default_factory=deque)
    added: int = 0
    block: Any = None
    block_seqs: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    block_entries: list[_Entry] = field(default_factory=list)

    def add(self, entry: _Entry) -> None:
        self.entries.append(entry)
        self.added += 1
        if len(self.entries) > self.window:
            self.entries.popleft()

    def identical(self, digest: bytes) -> _Entry | None:
        return next((e for e in self.entries if e.digest == digest), None)

    def nearest(self, query: np.ndarray) -> tuple[float, _Entry | None]:
        if not self.entries:
            return -1.0, None
        oldest = self.entries[0].seq
        last = int(self.block_seqs[-1]) if len(self.block_seqs) else -1
        fresh = [e for e in self.entries if e.seq > last]
        stale = int(np.count_nonzero(self.block_seqs < oldest))
        if len(fresh) > _REBUILD or stale > self.window // 2:
            self.block_entries = list(self.entries)
            self.block = _stack([e.vector for e in self.block_entries])
            self.block_seqs = np.array([e.seq for e in self.block_entries], dtype=np.int64)
            fresh = []
        best, nearest = -1.0, None
        if self.block is not None and len(self.block_seqs):
            sims = np.asarray(self.block @ query, dtype=np.float64).ravel()
            sims[self.block_seqs < oldest] = -np.inf
            i = int(np.argmax(sims))
            if sims[i] > best:
                best, nearest = float(sims[i]), self.block_entries[i]
        for e in fresh:
            s = float(np.asarray(e.vector @ query).ravel()[0])
            if s > best:
                best, nearest = s, e
        return best, nearest


# --------------------------------------------------------------------- novelty


class Novelty:
    """Near-duplicate rejection per island, with an optional judge for the borderline."""

    def __init__(
        self,
        config: NoveltyConfig,
        judge: Judge | None = None,
        client: Any = None,
        *,
        language: str = "python",
        comment: str = "#",
    ):
        """`language` and `comment` are the problem's: the "tokens" embedder reads the
        EVOLVE-BLOCKs (marked with `comment`) with the tokenizer for `language`."""
        self.config = config
        self.judge = judge
        self.language, self.comment = language, comment
        self.embedder: Embedder | None = make_embedder(config, client, language, comment) if config.enabled else None
        self._memories: dict[int | None, _Memory] = {}  # None: seeds, shared by every island
        self._recent: OrderedDict[bytes, Any] = OrderedDict()
        self._seq = 0
        self.counts = dict.fromkeys(
            ("checks", "rejected", "identical", "judged", "judge_novel", "judge_errors", "embedded"), 0
        )

    def _memory(self, island: int | None) -> _Memory:
        if island not in self._memories:
            self._memories[island] = _Memory(self.config.window)
        return self._memories[island]

    def add(self, candidate: Candidate) -> None:
        """Remember an admitted candidate on its island (a seed on every island)."""
        if self.embedder is None:
            return
        if candidate.operator == "seed" and self._seq == 0:
            self.advise(candidate.text)
        digest = _digest(candidate.text)
        island = None if candidate.operator == "seed" else candidate.island
        entry = _Entry(candidate.id, candidate.text, digest, self._seq, self._recent.get(digest))
        self._seq += 1
        self._memory(island).add(entry)

    def state(self) -> dict[str, Any]:
        """What `add` remembered, as candidate ids (JSON-ready); embeddings are not kept: they
        are computed again, lazily, as after a replay."""
        memories = [
            [island, [[e.id, e.seq] for e in memory.entries], memory.added] for island, memory in self._memories.items()
        ]
        return {"seq": self._seq, "memories": memories}

    @staticmethod
    def referenced(state: dict[str, Any]) -> set[int]:
        return {cid for _, entries, _ in state["memories"] for cid, _ in entries}

    def restore(self, state: dict[str, Any], by_id: dict[int, Candidate]) -> None:
        """Set the memory to a `state()` taken earlier; `by_id` holds the candidates it names."""
        self._memories = {}
        for island, entries, added in state["memories"]:
            memory = self._memory(island)
            for cid, seq in entries:
                text = by_id[cid].text
                memory.entries.append(_Entry(cid, text, _digest(text), seq))
            memory.added = added
        self._seq = state["seq"]

    async def _embed_one(self, text: str, digest: bytes) -> Any:
        if digest in self._recent:
            self._recent.move_to_end(digest)
            return self._recent[digest]
        (vector,) = await self.embedder.embed([text])  # type: ignore[union-attr]
        self.counts["embedded"] += 1
        self._recent[digest] = vector
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        return vector

    async def _fill(self, memories: list[_Memory]) -> None:
        """Embed remembered entries that have no vector yet (again if `add` ran meanwhile)."""
        while missing := [e for m in memories for e in m.entries if e.vector is None]:
            vectors = await self.embedder.embed([e.text for e in missing])  # type: ignore[union-attr]
            self.counts["embedded"] += len(missing)
            for e, v in zip(missing, vectors, strict=True):
                e.vector = v

    async def check(self, text: str, island: int) -> Verdict:
        """Is `text` new enough to be worth evaluating on `island`?"""
        if self.embedder is None:
            return Verdict(True, 0.0, None, "novelty check disabled")
        self.counts["checks"] += 1
        memories = [m for m in (self._memories.get(island), self._memories.get(None)) if m]
        digest = _digest(text)
        for memory in memories:
            same = memory.identical(digest)
            if same is not None:
                self.counts["rejected"] += 1
                self.counts["identical"] += 1
                return Verdict(False, 1.0, same.id, f"identical to candidate {same.id}")
        if self.config.threshold >= 1.0 and self.judge is None:  # only copies are refused
            return Verdict(True, 0.0, None, "not a copy (threshold 1.0: similarity not checked)")
        query = _dense(await self._embed_one(text, digest))
        await self._fill(memories)
        similarity, nearest = -1.0, None
        for memory in memories:
            s, e = memory.nearest(query)
            if e is not None and s > similarity:
                similarity, nearest = s, e
        if nearest is None:
            return Verdict(True, 0.0, None, "nothing to compare with yet")
        threshold = self.config.threshold
        if similarity <= threshold:
            return Verdict(
                True, similarity, nearest.id, f"similarity {similarity:.4f} to candidate {nearest.id} <= {threshold}"
            )
        above = f"similarity {similarity:.4f} to candidate {nearest.id} > {threshold}"
        if self.judge is None:
            novel, reason = False, f"near-duplicate: {above}"
        else:
            self.counts["judged"] += 1
            try:
                novel = bool(await self.judge(text, nearest.text))
                reason = (
                    f"{above}, but the judge found it novel" if novel else f"{above}; the judge agreed it is not novel"
                )
            except Exception as exc:  # a failing judge must not stop the run; stay conservative
                self.counts["judge_errors"] += 1
                log.warning(
                    "novelty judge failed (%s: %s); treating the child as a near-duplicate", type(exc).__name__, exc
                )
                novel, reason = False, f"{above}; judge failed: {type(exc).__name__}"
        self.counts["judge_novel" if novel else "rejected"] += 1
        return Verdict(novel, similarity, nearest.id, reason)

    def advise(self, seed_text: str) -> None:
        """Log what `threshold` means on the seed; a warning when it refuses every small edit."""
        advice = threshold_advice(self.config, seed_text, self.language, self.comment, self.judge is not None)
        if advice is not None:
            warn, message = advice
            log.log(logging.WARNING if warn else logging.INFO, message)

    def stats(self) -> dict[str, Any]:
        remembered = sum(len(m.entries) for m in self._memories.values())
        return {
            **self.counts,
            "enabled": self.embedder is not None,
            "embedder": self.config.embedder,
            "remembered": remembered,
        }
