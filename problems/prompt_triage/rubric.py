"""The simulated model that answers support tickets by following (only) what a prompt says.

A deterministic stand-in for a chat model. It reads the first `READ_WORDS` words of the
prompt and notices a fixed set of concepts in it: which labels are named, what each label
is defined to cover, tie-break rules, the output format, worked examples, and a few
misleading rules. Each ticket in `tickets.json` is annotated with the concepts a model
needs in order to label it right and with the label it confuses it with otherwise, so
every wrong answer comes with the reason the prompt caused it.

Concepts are detected per sentence: a sentence counts for a concept when it mentions every
group of words the concept lists (any one word of each group) and none of its exclusions.
Paraphrases are fine as long as they use the domain's ordinary words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

LABELS = ("billing", "refund", "technical", "account", "shipping", "cancellation", "feedback")
READ_WORDS = 350  # the simulated model's attention span over the prompt
EXAMPLE_MATCH = 0.5  # word overlap (Jaccard) above which a worked example is copied


@dataclass(frozen=True)
class Concept:
    id: str
    missing: str  # why a ticket fails when the prompt lacks this (or, for traps, has it)
    all_of: tuple[tuple[str, ...], ...]  # regex alternatives; every group must hit a sentence
    none_of: tuple[str, ...] = ()  # a sentence with any of these does not count
    trap_tag: str = ""  # traps: tickets with this tag are pulled to `trap_label`
    trap_label: str = ""


_ANY = (r"\bany\b", r"\banything\b", r"\bevery", r"\ball\b", r"\balways\b")

CONCEPTS = (
    Concept(
        "def_refund",
        "the prompt never says that asking for money back (a double charge, "
        "an overcharge, a returned item) is a refund rather than billing",
        (
            (r"\brefund",),
            (
                r"money back",
                r"reimburs",
                r"charged twice",
                r"double[- ]charg",
                r"overcharg",
                r"\breturn",
                r"paid back",
                r"pay (it |them )?back",
            ),
        ),
    ),
    Concept(
        "def_billing",
        "the prompt never says that invoices, receipts, prices, taxes and payment methods are billing",
        (
            (r"\bbilling\b",),
            (r"invoice", r"receipt", r"payment method", r"\bprice", r"\btax", r"\bvat\b", r"statement", r"\bcard\b"),
        ),
    ),
    Concept(
        "def_account",
        "the prompt never says that log-in, passwords, two-factor codes, "
        "usernames and profile details are account issues",
        (
            (r"\baccount\b",),
            (
                r"log ?in",
                r"log-in",
                r"sign ?in",
                r"password",
                r"two[- ]factor",
                r"two[- ]step",
                r"\b2fa\b",
                r"profile",
                r"username",
            ),
        ),
    ),
    Concept(
        "def_shipping",
        "the prompt never says that delivery, tracking and courier problems are shipping",
        ((r"\bshipping\b",), (r"deliver", r"tracking", r"courier", r"parcel", r"package")),
    ),
    Concept(
        "def_cancellation",
        "the prompt never says that ending a subscription, stopping a "
        "renewal or closing/deleting the account is a cancellation",
        (
            (r"\bcancellation\b",),
            (r"subscription", r"membership", r"\bplan\b", r"renew", r"account"),
            (r"\bclos", r"delet", r"\bend", r"\bstop", r"terminat", r"unsubscrib", r"\bquit"),
        ),
    ),
    Concept(
        "def_feedback",
        "the prompt never says that suggestions, feature requests and compliments are feedback",
        (
            (r"\bfeedback\b",),
            (
                r"suggest",
                r"feature request",
                r"request(s|ing)? (a |new )?feature",
                r"compliment",
                r"praise",
                r"\bideas?\b",
                r"thanks",
                r"wish",
            ),
        ),
    ),
    Concept(
        "rule_cancel_over_refund",
        "the prompt never says which label wins when a customer cancels and also asks for a refund",
        (
            (r"\bcancel",),
            (r"\brefund",),
            (
                r"cancellation,? (wins|takes precedence|has priority|comes first|first)",
                r"(choose|pick|use|label( it)?( as)?|classify( it)? as|prefer|answer) [\"'“]?cancellation",
                r"cancellation,? (not|rather than|over|instead of) [\"'“]?refund",
                r"(is|as) (a )?[\"'“]?cancellation\b",
            ),
        ),
    ),
    Concept(
        "rule_security_account",
        "the prompt never says that hacked accounts, unauthorised "
        "log-ins and suspicious security e-mails are account issues, not technical",
        ((r"\baccount\b",), (r"hack", r"unauthori[sz]ed", r"suspicious", r"compromis", r"security", r"someone else")),
    ),
    Concept(
        "rule_damaged_shipping",
        "the prompt never says that damaged or wrong items the "
        "customer wants replaced or exchanged are shipping (not refund)",
        (
            (r"\bshipping\b",),
            (r"damaged", r"broken", r"crushed", r"shattered", r"wrong (item|size)"),
            (r"replac", r"exchang", r"new one", r"resend", r"send (another|a new)"),
        ),
    ),
    Concept(
        "rule_single",
        "the prompt never says to give exactly one label, so a ticket with two issues got two labels",
        (
            (
                r"\b(exactly|only|just) one (label|category)",
                r"\ba single (label|category)",
                r"\bone (label|category) only",
                r"\bnever (give|output|answer with) (two|more than one|several|multiple)",
                r"\bnot (two|multiple|several) (labels|categories)",
                r"\bone and only one",
            ),
        ),
    ),
    Concept(
        "format_only",
        "the prompt never asks for the label alone, and the answer came with "
        "an explanation that could not be read as a label",
        (
            (
                r"\b(only|just|nothing but|nothing except) (the |its |a |one |that )?(label|category)",
                r"\bno (explanation|extra text|other text|other words|reasoning)",
                r"\bwithout (any )?(explanation|extra text|other text|comment)",
                r"\b(single|one) word\b",
            ),
        ),
    ),
    Concept(
        "trap_money_billing",
        "the rule that anything about money is billing pulled it to billing",
        (_ANY, (r"money", r"payment", r"\bpaid\b", r"charge", r"\bpay\b"), (r"\bbilling\b",)),
        none_of=(r"refund", r"except", r"unless", r"\bnot\b"),
        trap_tag="money",
        trap_label="billing",
    ),
    Concept(
        "trap_app_technical",
        "the rule that any problem with the app or website is technical pulled it to technical",
        (_ANY, (r"\bapp\b", r"website", r"\bsite\b", r"application"), (r"\btechnical\b",)),
        none_of=(r"account", r"log ?in", r"password", r"except", r"unless", r"\bnot\b"),
        trap_tag="app",
        trap_label="technical",
    ),
    Concept(
        "trap_angry_feedback",
        "the rule that angry customers are feedback pulled it to feedback",
        ((r"angry", r"upset", r"frustrat", r"furious", r"annoyed", r"\brude\b"), (r"\bfeedback\b",)),
        none_of=(r"\bnot\b", r"\bnever\b", r"even if", r"regardless", r"ignore", r"don't", r"n't"),
        trap_tag="angry",
        trap_label="feedback",
    ),
)
CONCEPT_BY_ID = {c.id: c for c in CONCEPTS}
TRAPS = tuple(c for c in CONCEPTS if c.trap_tag)


@dataclass(frozen=True)
class Ticket:
    id: str
    split: str  # train | heldout
    label: str
    text: str
    needs: tuple[str, ...]
    confusion: str
    tags: tuple[str, ...]


@lru_cache(maxsize=1)
def load_tickets() -> tuple[Ticket, ...]:
    rows = json.loads((Path(__file__).resolve().parent / "tickets.json").read_text())
    return tuple(
        Ticket(r["id"], r["split"], r["label"], r["text"], tuple(r["needs"]), r["confusion"], tuple(r["tags"]))
        for r in rows
    )


# ---------------------------------------------------------------- reading the prompt


@dataclass(frozen=True)
class Reading:
    """What the simulated model took from a prompt."""

    labels: frozenset[str]  # labels the prompt names
    concepts: frozenset[str]  # concept ids found (definitions, rules, format, traps)
    examples: tuple[tuple[frozenset[str], str, str], ...]  # (words, label, text) per example
    words: int  # words in the prompt
    truncated: bool  # the prompt was longer than READ_WORDS


_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+")
_WORD = re.compile(r"[a-z][a-z'-]+")
_STOP = frozenset(
    "the and for you your with that this have has was were are from not but can did "
    "its it's i'm i'd don't doesn't what when why how which".split()
)
_EXAMPLE_INLINE = re.compile(r"[\"“](.{8,}?)[\"”]\s*(?:->|=>|→|:|—|–|-)\s*\**\s*([A-Za-z]+)")
_EXAMPLE_PAIR = re.compile(
    r"(?im)^\W*(?:ticket|example|customer|input|message)\s*:\s*(.+?)\s*\n"
    r"\W*(?:label|category|answer|output)\s*:\s*\**\s*([A-Za-z]+)"
)


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in _STOP)


def _sentences(text: str) -> list[str]:
    return [s.strip().lower() for s in _SENTENCE_SPLIT.split(text) if s.strip()]


def _present(concept: Concept, sentences: list[str]) -> bool:
    for s in sentences:
        if any(re.search(p, s) for p in concept.none_of):
            continue
        if all(any(re.search(p, s) for p in group) for group in concept.all_of):
            return True
    return False


def read_prompt(prompt: str) -> Reading:
    """Find the labels, concepts and examples in the part of the prompt the model reads."""
    tokens = prompt.split()
    truncated = len(tokens) > READ_WORDS
    if truncated:  # cut after the READ_WORDS-th word, keeping the line structure before it
        cut = [m.start() for m in re.finditer(r"\S+", prompt)][READ_WORDS]
        prompt = prompt[:cut]
    lowered = prompt.lower()
    labels = frozenset(lab for lab in LABELS if re.search(rf"\b{lab}\b", lowered))
    sentences = _sentences(prompt)
    concepts = frozenset(c.id for c in CONCEPTS if _present(c, sentences))
    examples = []
    for pattern in (_EXAMPLE_INLINE, _EXAMPLE_PAIR):
        for m in pattern.finditer(prompt):
            text, label = m.group(1), m.group(2).lower()
            examples.append((content_words(text), label, text))
    return Reading(labels, concepts, tuple(examples), len(tokens), truncated)


# ---------------------------------------------------------------- answering a ticket


@dataclass(frozen=True)
class Answer:
    ticket: Ticket
    predicted: str
    reason: str  # why it is wrong ("" when right)

    @property
    def correct(self) -> bool:
        return self.predicted == self.ticket.label


def _fallback(ticket: Ticket, reading: Reading) -> str:
    if ticket.confusion in reading.labels:
        return ticket.confusion
    others = [lab for lab in LABELS if lab in reading.labels and lab != ticket.label]
    return others[0] if others else "unknown"


def answer(ticket: Ticket, reading: Reading) -> Answer:
    """The simulated model's label for one ticket, and the prompt's fault if it is wrong."""
    words = content_words(ticket.text)
    for example_words, label, text in reading.examples:
        union = words | example_words
        if union and len(words & example_words) / len(union) >= EXAMPLE_MATCH:
            why = "" if label == ticket.label else f"it copied the prompt's example {text[:50]!r} -> {label}"
            return Answer(ticket, label, why)
    if ticket.label not in reading.labels:
        return Answer(ticket, _fallback(ticket, reading), f"the prompt never names the label {ticket.label!r}")
    for trap in TRAPS:
        if trap.id in reading.concepts and trap.trap_tag in ticket.tags and trap.trap_label != ticket.label:
            return Answer(ticket, trap.trap_label, trap.missing)
    for need in ticket.needs:
        if need in reading.concepts:
            continue
        concept = CONCEPT_BY_ID[need]
        if need == "rule_single":
            return Answer(ticket, f"{ticket.label}, {ticket.confusion}", concept.missing)
        if need == "format_only":
            return Answer(ticket, f"probably {ticket.label}, because ...", concept.missing)
        return Answer(ticket, _fallback(ticket, reading), concept.missing)
    return Answer(ticket, ticket.label, "")


def answer_all(prompt: str, tickets: tuple[Ticket, ...] | None = None) -> tuple[Reading, list[Answer]]:
    reading = read_prompt(prompt)
    return reading, [answer(t, reading) for t in (tickets or load_tickets())]
