"""Prompt evolution: the system prompt of a support-ticket classifier.

The candidate is plain text. Offline it is scored by `rubric`, a deterministic simulated
model that labels each ticket correctly only when the prompt states what that ticket needs
(the label's name, its definition, a tie-break rule, the output format), so the feedback
can name, ticket by ticket, what the prompt is missing. With EVOENGINE_PROMPT_MODEL set, a
real chat model answers instead. The prompt is data, never executed, so it is scored here.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from evoengine.problem import EvalResult, Feature, Problem

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rubric  # noqa: E402  (the simulated model beside this file)

MODEL_ENV = "EVOENGINE_PROMPT_MODEL"
BASE_URL_ENV = "EVOENGINE_PROMPT_BASE_URL"
KEY_ENV_ENV = "EVOENGINE_PROMPT_API_KEY_ENV"
CONCURRENCY_ENV = "EVOENGINE_PROMPT_CONCURRENCY"
USING_MODEL = bool(os.environ.get(MODEL_ENV))
FEEDBACK_ITEMS = 12
# Training tickets scored by `minibatch`: between them they need every definition and rule,
# and each rule is the only thing missing from one of them once the definitions are there,
# so every helpful line can raise the minibatch score on its own.
MINIBATCH = ("t01", "t04", "t08", "t09", "t10", "t11", "t17", "t19", "t22", "t26", "t32")
MAX_PROMPT_CHARS = 20_000

DESCRIPTION = f"""\
Write the system prompt of a support-ticket classifier. The model reads your prompt, then
one customer ticket, and must answer with one label from: {", ".join(rubric.LABELS)}.

The score is the share of the {sum(t.split == "train" for t in rubric.load_tickets())} training
tickets labelled right. Further held-out tickets are scored too and reported as
`heldout_accuracy`: write general rules, not copies of training tickets.

The model follows what the prompt says and nothing else. It can only answer with labels
the prompt names; it tells confusable labels apart only when the prompt defines them
(billing vs refund, account vs technical, shipping vs refund, cancellation vs account, ...);
it needs a rule to decide between two labels when a ticket raises two issues; it explains
itself unless told to reply with the label alone; it copies the label of a worked example
when a ticket closely resembles it; and it obeys blanket rules literally, including bad
ones. It reads only the first {rubric.READ_WORDS} words of the prompt. Feedback lists the
training tickets it got wrong and which instruction was missing or misleading.
"""

problem = Problem(
    name="prompt_triage",
    description=DESCRIPTION,
    initial="initial.txt",
    language="text",
    kind="prompt",
    features=(
        Feature("words", 0.0, 400.0, 8),  # prompt length
        Feature("examples", 0.0, 8.0, 8),  # worked examples in the prompt
    ),
    timeout_s=900.0 if USING_MODEL else 30.0,
    memory_mb=512,
    vocabulary="vocabulary.txt",  # candidate rule lines for the offline text operators
)


def evaluate(candidate_path: str) -> EvalResult:
    """Score the prompt with the simulated model (or a real one when configured)."""
    prompt = Path(candidate_path).read_text(errors="replace")
    if not prompt.strip():
        return EvalResult.invalid("the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        return EvalResult.invalid(f"the prompt has {len(prompt)} characters; keep it under {MAX_PROMPT_CHARS}")
    reading = rubric.read_prompt(prompt)
    answers = model_answers(prompt) if USING_MODEL else [rubric.answer(t, reading) for t in rubric.load_tickets()]
    return score_answers(answers, reading)


def minibatch(candidate_path: str) -> EvalResult:
    """The cheap gate before `evaluate` (see `evaluation.gate`): accuracy on a fixed handful of
    training tickets that between them need every definition and rule. A child whose score
    here is not above its parent's is not evaluated in full."""
    prompt = Path(candidate_path).read_text(errors="replace")
    if not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        return EvalResult.invalid("the prompt is empty or too long")
    reading = rubric.read_prompt(prompt)
    tickets = [t for t in rubric.load_tickets() if t.id in MINIBATCH]
    answers = model_answers(prompt, tickets) if USING_MODEL else [rubric.answer(t, reading) for t in tickets]
    right = sum(a.correct for a in answers)
    return EvalResult(
        score=right / len(answers),
        feedback=f"{right}/{len(answers)} minibatch tickets right",
        instances={a.ticket.id: float(a.correct) for a in answers},
    )


def score_answers(answers: list[rubric.Answer], reading: rubric.Reading) -> EvalResult:
    """Accuracy on the training split is the score; held-out accuracy is a metric."""
    train = [a for a in answers if a.ticket.split == "train"]
    heldout = [a for a in answers if a.ticket.split == "heldout"]
    accuracy = sum(a.correct for a in train) / len(train)
    metrics = {
        "accuracy": accuracy,
        "heldout_accuracy": sum(a.correct for a in heldout) / len(heldout) if heldout else 0.0,
        "words": float(reading.words),
        "labels_named": float(len(reading.labels)),
        "rules_found": float(sum(not c.startswith("trap") for c in reading.concepts)),
        "traps_found": float(sum(c.startswith("trap") for c in reading.concepts)),
    }
    return EvalResult(
        score=accuracy,
        metrics=metrics,
        features={"words": min(400.0, float(reading.words)), "examples": min(8.0, float(len(reading.examples)))},
        feedback=_feedback(train, reading),
        instances={a.ticket.id: float(a.correct) for a in train},
    )


def _feedback(train: list[rubric.Answer], reading: rubric.Reading) -> str:
    wrong = [a for a in train if not a.correct]
    lines = [f"{len(train) - len(wrong)}/{len(train)} training tickets labelled right."]
    if reading.truncated:
        lines.append(
            f"The prompt has {reading.words} words; the model stopped reading after "
            f"{rubric.READ_WORDS}, so everything after that was ignored."
        )
    missing = [lab for lab in rubric.LABELS if lab not in reading.labels]
    if missing:
        lines.append(f"Labels the prompt never names (the model cannot answer them): {', '.join(missing)}.")
    causes = Counter(a.reason for a in wrong)
    if len(causes) > 1:
        lines.append("Most common causes:")
        lines += [f"  {n} ticket(s): {reason}" for reason, n in causes.most_common(4)]
    if wrong:
        lines.append("Wrong tickets:")
        for a in wrong[:FEEDBACK_ITEMS]:
            lines.append(
                f"  {a.ticket.id} {a.ticket.text[:70]!r} -> {a.predicted!r}; expected {a.ticket.label}: {a.reason}"
            )
        if len(wrong) > FEEDBACK_ITEMS:
            lines.append(f"  ... and {len(wrong) - FEEDBACK_ITEMS} more")
    return "\n".join(lines)


# ---------------------------------------------------------------- a real model instead


def parse_label(reply: str) -> str:
    """The one label a reply names, else the reply itself (which then counts as wrong)."""
    text = " ".join(reply.lower().split())
    found = [lab for lab in rubric.LABELS if re.search(rf"\b{lab}\b", text)]
    return found[0] if len(found) == 1 else (text[:60] or "(empty reply)")


def model_answers(prompt: str, tickets: list[rubric.Ticket] | None = None) -> list[rubric.Answer]:
    """Label every ticket with the configured chat model (system = the prompt, user = ticket).

    Environment: EVOENGINE_PROMPT_MODEL (model id; setting it switches to this path),
    EVOENGINE_PROMPT_BASE_URL (OpenAI-compatible endpoint; default: the openai client's
    default or OPENAI_BASE_URL), EVOENGINE_PROMPT_API_KEY_ENV (variable holding the key;
    default OPENAI_API_KEY), EVOENGINE_PROMPT_CONCURRENCY (parallel requests; default 4).
    Temperature 0 and a fixed seed, so endpoints that honour them repeat themselves.
    """
    from openai import OpenAI

    key = os.environ.get(os.environ.get(KEY_ENV_ENV, "OPENAI_API_KEY"), "") or "none"
    client = OpenAI(base_url=os.environ.get(BASE_URL_ENV) or None, api_key=key, max_retries=3)
    model = os.environ[MODEL_ENV]

    def label(ticket: rubric.Ticket) -> rubric.Answer:
        try:
            response = client.chat.completions.create(
                model=model,
                temperature=0.0,
                seed=0,
                max_tokens=32,
                messages=[{"role": "system", "content": prompt}, {"role": "user", "content": ticket.text}],
            )
            reply = response.choices[0].message.content or ""
        except Exception as exc:  # one failed request is one wrong ticket, with the reason
            return rubric.Answer(ticket, "(no reply)", f"the model call failed: {type(exc).__name__}: {exc}")
        predicted = parse_label(reply)
        return rubric.Answer(
            ticket, predicted, "" if predicted == ticket.label else f"the model replied {reply[:80]!r}"
        )

    workers = max(1, int(os.environ.get(CONCURRENCY_ENV, "4")))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(label, rubric.load_tickets() if tickets is None else tickets))
