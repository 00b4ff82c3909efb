"""What a novelty threshold means on a problem's seed, said once at start-up.

A threshold is a cosine similarity, and what it refuses depends on the embedder and the
text: character n-grams rate every small edit of a long program above 0.99, token
structure rates constant edits 1.0. `threshold_advice` measures the seed with the chosen
embedder (the offline ones only; a model embedder is not called for this) and says what
the threshold will refuse, as a warning when it refuses every small edit.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from ..blocks import PatchError, evolve_blocks
from ..config import Novelty as NoveltyConfig
from .embedders import NgramEmbedder, TokenEmbedder, structure_tokens

_FIRST_NUMBER = re.compile(r"\d+")


def _cosine(a: Counter, b: Counter) -> float:
    dot = sum(v * b[k] for k, v in a.items())
    norm = math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))
    return dot / norm if norm else 1.0


def one_token_similarity(seed: str, language: str, comment: str) -> tuple[float, int]:
    """The "tokens" similarity between the seed and the seed with one token (in the middle of
    its editable structure) changed, and the number of tokens."""
    tokens = structure_tokens(seed, language, comment)
    if not tokens:
        return 1.0, 0
    changed = list(tokens)
    changed[len(tokens) // 2] = "<changed>"
    embedder = TokenEmbedder(language, comment)
    return _cosine(Counter(embedder.grams(tokens)), Counter(embedder.grams(changed))), len(tokens)


def one_constant_ngram_similarity(seed: str, comment: str) -> float | None:
    """The "ngram" similarity between the seed and the seed with its first number in the
    editable part changed (None: no number there)."""
    try:
        start = evolve_blocks(seed, comment)[0].start
    except PatchError:
        start = 0
    found = _FIRST_NUMBER.search(seed, start)
    if found is None:
        return None
    edited = seed[: found.start()] + str(int(found.group()) + 7) + seed[found.end() :]
    a, b = NgramEmbedder().embed_now([seed, edited])
    return float((a @ b.T).toarray()[0, 0])


def threshold_advice(
    config: NoveltyConfig, seed: str, language: str = "python", comment: str = "#", judged: bool = False
) -> tuple[bool, str] | None:
    """(is it a warning, the message) about `config.threshold` on `seed`; None when there is
    nothing to say (novelty off, or a threshold of 1.0, which refuses only copies)."""
    threshold = config.threshold
    if not config.enabled or threshold >= 1.0:
        return None
    then = "the judge decides" if judged else "the child is refused"
    if config.embedder == "tokens":
        similarity, count = one_token_similarity(seed, language, comment)
        message = (
            f"novelty.threshold={threshold:g} (embedder tokens): above it {then}, so a child must change more "
            f"than {1 - threshold:.1%} of the structure of every recent candidate of its island (its EVOLVE-BLOCK "
            f"tokens, numbers and strings abstracted). Edits of constants or strings alone change nothing "
            f"(similarity 1.0); on this seed ({count} tokens) one changed token gives {similarity:.3f}"
        )
        if similarity > threshold and not judged:
            return True, message + (
                f", so every small edit is refused too. The offline operators make mostly such edits: with them, "
                f"keep novelty.threshold at 1.0 (or at least {similarity:.3f} to let one-token edits through)"
            )
        return False, message + "."
    if config.embedder == "ngram":
        similarity = one_constant_ngram_similarity(seed, comment)
        if similarity is not None and similarity > threshold and not judged:
            return True, (
                f"novelty.threshold={threshold:g} (embedder ngram): character n-grams rate a one-constant edit of "
                f"this seed {similarity:.4f} similar, so every such edit is refused. novelty.embedder=tokens "
                f"compares structure instead (constant edits pass only at 1.0)"
            )
        return None
    return False, (
        f"novelty.threshold={threshold:g} is a cosine similarity of {config.embedder} embeddings, whose scale "
        f"depends on the model: watch the novelty rejections in `evoengine status` over the first candidates"
    )
