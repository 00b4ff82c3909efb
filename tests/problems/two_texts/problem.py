"""A test problem whose candidate is two named texts: a system prompt and a few-shot block."""

from pathlib import Path

from evoengine import EvalResult, Problem

problem = Problem(
    name="two_texts",
    description="Two texts for a classifier: the system prompt names the labels, the examples "
    "show them. Each useful line raises the score.",
    initial="initial.txt",
    language="text",
    kind="prompt",
    vocabulary="vocabulary.txt",
    timeout_s=10,
    memory_mb=512,
)

WANTED = {"system": ("billing", "refund", "shipping"), "examples": ("example: billing", "example: refund")}


def evaluate(path: str) -> EvalResult:
    from evoengine.blocks import evolve_blocks

    text = Path(path).read_text()
    blocks = {b.name: text[b.start : b.end].lower() for b in evolve_blocks(text)}
    hits = {f"{name}:{w}": float(w in blocks.get(name, "")) for name, words in WANTED.items() for w in words}
    return EvalResult(
        score=sum(hits.values()), instances=hits, feedback="missing: " + ", ".join(k for k, v in hits.items() if not v)
    )
