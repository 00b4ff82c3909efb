"""Prompt evolution as in GEPA and DSPy: instructions plus few-shot examples for a ticket classifier.

The candidate is two named texts, `instructions` and `examples` (named EVOLVE-BLOCKs). The
evaluator joins them into a system message and asks the model to label each ticket of a
labelled set: accuracy on the training tickets is the score, accuracy on held-out test
tickets a metric. Every question goes through `ask_model`, the one place a model is
called: the evaluator model `reader` when the run's config names one (`evaluator_models:`,
reached through the engine, which holds its key and counts its calls), else `reader.py`,
a deterministic simulated model that follows the prompt's rules literally (order,
conditions, exceptions and worked examples all matter). The prompt is data, never
executed, so it is scored here.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from functools import cache
from pathlib import Path

from evoengine.blocks import PatchError, evolve_blocks
from evoengine.evaluation import models
from evoengine.problem import EvalResult, Feature, Problem

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reader  # noqa: E402  (the simulated model beside this file)

LABELS = reader.LABELS
FEEDBACK_ITEMS = 12
MODEL = "reader"  # the evaluator model this problem asks, when the run configures one
ASKED_AT_ONCE = 8  # questions out at once to a real model (the run's model slots limit them further)
MAX_PROMPT_CHARS = 20_000
# Training tickets scored by `minibatch`: most need an instruction the seed lacks or orders wrongly, four are easy.
MINIBATCH = (
    "t01",
    "t02",
    "t03",
    "t04",
    "t05",
    "t07",
    "t10",
    "t11",
    "t26",
    "t42",
    "t43",
    "t44",
    "t46",
    "t48",
    "t49",
    "t50",
    "t54",
)

DESCRIPTION = f"""\
Write the prompt of a support-ticket classifier: the `instructions` (the system prompt) and
a few worked `examples` (lines "Ticket: ..." followed by "Label: ..."). The model reads
both, then one customer ticket, and must reply with one label from: {", ".join(LABELS)}.

The score is the share of the training tickets labelled right; held-out test tickets are
scored too and reported as `test_accuracy`, so write general instructions, not copies of
training tickets. The model follows what the prompt says, literally and in order: it
answers only with labels the prompt names; it applies the first instruction that fits a
ticket, so when two instructions could apply, the one written first wins unless an
exception ("unless ...") says otherwise; it copies the label of a worked example that a
ticket closely resembles; and it reads only about the first {reader.READ_WORDS} words.
Feedback lists training tickets it got wrong, with its reply and the expected label.
"""

problem = Problem(
    name="prompt_triage",
    description=DESCRIPTION,
    initial="initial.txt",
    language="text",
    kind="prompt",
    features=(
        Feature("words", 0.0, 300.0, 10),  # prompt length, both texts
        Feature("examples", 0.0, 8.0, 8),  # worked examples (Ticket/Label pairs)
    ),
    timeout_s=30.0,
    memory_mb=512,
    vocabulary="vocabulary.txt",  # prompt-line fragments for the offline text operators
    evaluator_models=(MODEL,),
)


@cache
def tickets() -> tuple[dict, ...]:
    return tuple(json.loads((Path(__file__).resolve().parent / "tickets.json").read_text()))


def ask_model(messages: list[dict[str, str]]) -> str:
    """The one place the model is asked: chat messages in, the reply's text out.

    With an evaluator model `reader` configured, it answers (at temperature 0; a failed call
    raises, so the candidate is invalid with the reason). Offline, the simulated model in
    reader.py reads the system message as the prompt and answers the last user message.
    """
    if models.available(MODEL):
        return models.chat(messages, model=MODEL, temperature=0.0)
    return reader.answer(reader.read(messages[0]["content"]), messages[-1]["content"]).reply


def evaluate(candidate_path: str) -> EvalResult:
    """Label every ticket with the prompt; training accuracy is the score."""
    system, error = system_prompt(candidate_path)
    if system is None:
        return EvalResult.invalid(error)
    answers = label_all(system, tickets())
    train = [a for a in answers if a["split"] == "train"]
    test = [a for a in answers if a["split"] != "train"]
    accuracy = _share(train)
    return EvalResult(
        score=accuracy,
        metrics={
            "accuracy": accuracy,
            "test_accuracy": _share(test),
            "words": float(len(system.split())),
            "examples": float(count_examples(system)),
        },
        features={"words": min(300.0, float(len(system.split()))), "examples": min(8.0, float(count_examples(system)))},
        feedback=_feedback(train, len(system.split())),
        instances={a["id"]: float(a["correct"]) for a in train},
    )


def minibatch(candidate_path: str) -> EvalResult:
    """The cheap gate before `evaluate` (see `evaluation.gate`): accuracy on a fixed dozen
    training tickets, one for each confusion a prompt has to settle."""
    system, error = system_prompt(candidate_path)
    if system is None:
        return EvalResult.invalid(error)
    answers = label_all(system, [t for t in tickets() if t["id"] in MINIBATCH])
    right = sum(a["correct"] for a in answers)
    return EvalResult(
        score=right / len(answers),
        feedback=f"{right}/{len(answers)} minibatch tickets right",
        instances={a["id"]: float(a["correct"]) for a in answers},
    )


def system_prompt(candidate_path: str) -> tuple[str | None, str]:
    """The system message: the instructions, a blank line, the examples (markers removed)."""
    text = Path(candidate_path).read_text(errors="replace")
    if len(text) > MAX_PROMPT_CHARS:
        return None, f"the prompt has {len(text)} characters; keep it under {MAX_PROMPT_CHARS}"
    try:
        blocks = {b.name: text[b.start : b.end].strip() for b in evolve_blocks(text, "#")}
    except PatchError as exc:
        return None, f"the prompt's EVOLVE-BLOCK markers are broken: {exc}"
    system = "\n\n".join(part for part in (blocks.get("instructions", ""), blocks.get("examples", "")) if part)
    return (system, "") if system.strip() else (None, "the prompt is empty")


def label_all(system: str, batch) -> list[dict]:
    asked = [[{"role": "system", "content": system}, {"role": "user", "content": t["text"]}] for t in batch]
    if models.available(MODEL):  # a real model: several questions out at once
        replies = models.chat_many(asked, model=MODEL, temperature=0.0, at_once=ASKED_AT_ONCE)
    else:
        replies = [ask_model(messages) for messages in asked]
    return [
        {**ticket, "reply": reply, "correct": parse_label(reply) == ticket["label"]}
        for ticket, reply in zip(batch, replies, strict=True)
    ]


def parse_label(reply: str) -> str | None:
    """The one label a reply names, else None (the reply then counts as wrong)."""
    found = [lab for lab in LABELS if re.search(rf"\b{lab}\b", reply, re.I)]
    return found[0] if len(found) == 1 else None


def count_examples(system: str) -> int:
    lines = system.splitlines()
    return sum(
        bool(re.match(r"\s*ticket\s*:", a, re.I) and re.match(r"\s*label\s*:", b, re.I))
        for a, b in zip(lines, lines[1:], strict=False)
    )


def _share(answers: list[dict]) -> float:
    return sum(a["correct"] for a in answers) / len(answers) if answers else 0.0


def _feedback(train: list[dict], words: int) -> str:
    """Which training tickets went wrong, what the model replied and what was expected."""
    wrong = [a for a in train if not a["correct"]]
    lines = [f"{len(train) - len(wrong)}/{len(train)} training tickets labelled right."]
    if words > reader.READ_WORDS:
        lines.append(f"The prompt has {words} words; the model stops reading after about {reader.READ_WORDS}.")
    confusions = Counter((a["label"], parse_label(a["reply"]) or "no label") for a in wrong)
    if len(confusions) > 1:
        lines.append(
            "Most common confusions (expected -> replied): "
            + ", ".join(f"{e} -> {r} ({n})" for (e, r), n in confusions.most_common(5))
        )
    if wrong:
        lines.append("Wrong tickets:")
        for a in wrong[:FEEDBACK_ITEMS]:
            lines.append(f"  {a['id']} {a['text'][:80]!r}: replied {a['reply'][:40]!r}, expected {a['label']}")
        if len(wrong) > FEEDBACK_ITEMS:
            lines.append(f"  ... and {len(wrong) - FEEDBACK_ITEMS} more")
    return "\n".join(lines)
