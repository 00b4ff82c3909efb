"""The simulated model: a deterministic stand-in for a chat model that does what a prompt says.

It reads the system prompt (the instructions, then the worked examples) the way a careful
but literal model would, and answers a ticket from what it read:

- **Cues.** A fixed set of topics (`CUES`: money back, a charge, cancelling, log-in,
  security, delivery, damage, a replacement, a bug, a suggestion, praise, anger), each
  recognised by ordinary words, in prompts and tickets alike, so paraphrases count.
- **Rules** come from the instructions read as a decision list, top to bottom, and the first
  rule that fires wins. A rule is a condition ("When the ticket asks for money back,") and
  an action ("label it refund.") on one line or on consecutive lines, or a definition
  ("- refund: the customer wants money back."); consecutive condition
  lines pool their cues ("When ... , / or when ... , / label it X."). An exception
  ("unless they also want to cancel,") on the condition's lines, or on the line right
  after the action, stops the rule for tickets with that cue. A condition with no action
  after it, or an action with no condition before it, does nothing.
- **Default**: "Otherwise, label it X." answers tickets no rule and no example covers.
- **Examples**: a "Ticket: ..." line followed by a "Label: ..." line is a worked example;
  a ticket about the same topics as an example (the same cues), when no rule fires, gets
  its label (of several such examples, the one sharing most words).
- With no label named anywhere in the prompt, or nothing in it that applies to a ticket,
  it says it is not sure.
- It reads only the first `READ_WORDS` words of the prompt.

`answer(reading, ticket_text)` returns the reply and what decided it (a rule, an example or
the default); the evaluator sees only the reply, as it would from a real model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

LABELS = ("billing", "refund", "technical", "account", "shipping", "cancellation", "feedback")
READ_WORDS = 250

CUES: dict[str, tuple[str, ...]] = {
    "money_back": (
        r"money back",
        r"\brefund",
        r"reimburs",
        r"paid back",
        r"pay (?:it |me )?back",
        r"\breturn(?:ed)? the (?:difference|fee|money)",
        r"\bthe difference\b",
        r"fee back",
        r"(?:pay|send|give)\b[\w\s']{0,25}\bback\b",
    ),
    "charge": (
        r"\bcharg",
        r"\bpa(?:y|id|yment)",
        r"invoice",
        r"receipt",
        r"\bprice",
        r"\btax",
        r"\bvat\b",
        r"\bbill",
        r"statement",
        r"\bcost",
    ),
    "cancel": (
        r"\bcancel",
        r"unsubscrib",
        r"stop renewing",
        r"\b(?:close|delete|end|terminate)\b[\w\s']{0,20}\b(?:account|subscription|membership|plan)",
    ),
    "login": (
        r"log ?in",
        r"log-in",
        r"logged",
        r"sign ?in",
        r"password",
        r"two[- ](?:factor|step)",
        r"\b2fa\b",
        r"username",
        r"profile",
        r"email address",
    ),
    "security": (
        r"hack",
        r"unauthori[sz]ed",
        r"suspicious",
        r"someone (?:else|is using|logged)",
        r"security",
        r"did not make",
        r"didn't request",
    ),
    "delivery": (
        r"deliver",
        r"package",
        r"parcel",
        r"courier",
        r"tracking",
        r"\bship",
        r"depot",
        r"sender",
        r"\bdoor\b",
    ),
    "damaged": (r"broken", r"damaged", r"crushed", r"shattered", r"wrong (?:size|item|colou?r)", r"defective"),
    "replace": (r"replace", r"exchange", r"send (?:a |me a )?new", r"new one"),
    "bug": (
        r"crash",
        r"error",
        r"\bbug",
        r"freez",
        r"blank",
        r"\bslow",
        r"not working",
        r"stopped working",
        r"does nothing",
        r"doesn't work",
        r"expired",
        r"after the (?:latest )?update",
        r"\bfail",
        r"(?:does ?n[o']t|not|won't) (?:work|load|open)",
        r"glitch",
    ),
    "suggestion": (
        r"suggest",
        r"feature",
        r"would be nice",
        r"please add",
        r"could you add",
        r"can you add",
        r"\badd (?:a|an)\b",
        r"\bwish",
    ),
    "praise": (r"thank", r"\bgreat\b", r"\blove\b", r"happy", r"compliment", r"well done", r"good job"),
    "angry": (r"angry", r"furious", r"upset", r"annoyed"),
}
_CUE_RE = {cue: re.compile("|".join(words), re.I) for cue, words in CUES.items()}
_LABEL = "|".join(LABELS)
_CONDITION = re.compile(
    r"\b(?:when|whenever|if|where|for (?:a |any )?tickets?|tickets? (?:that|which|about|with))\b", re.I
)
_EXCEPTION = re.compile(r"\b(?:unless|except (?:when|if|for)|but not (?:when|if))\b", re.I)
_ACTION = re.compile(
    rf"(?:label (?:it|them|the ticket)(?: as)?|answer|reply|choose|pick|classify (?:it )?as|it is|it's|use|->|→|=>)\s*[:\"']?\s*({_LABEL})\b",
    re.I,
)
_DEFINITION = re.compile(rf"^\s*(?:[-*•]\s*)?({_LABEL})\s*[:=]\s*(.+)$", re.I)
_DEFAULT = re.compile(
    r"\b(?:otherwise|else|in (?:all )?other cases|by default|if nothing else (?:applies|fits))\b", re.I
)
_TICKET = re.compile(r"^\s*(?:ticket|customer|input)\s*:\s*(.+)$", re.I)
_EXAMPLE_LABEL = re.compile(rf"^\s*(?:label|answer|output)\s*:\s*\"?({_LABEL})\b", re.I)
_WORD = re.compile(r"[a-z0-9']+")
STOPWORDS = frozenset(
    "a an the and or but to of in on for my me i is it its it's this that was were be been have has had "
    "you your we our us they their them with at from by as so not no do does did can could would "
    "please just also when if then than there here what which who how why all any some".split()
)


def cues(text: str) -> frozenset[str]:
    """The topics a text mentions."""
    return frozenset(cue for cue, pattern in _CUE_RE.items() if pattern.search(text))


def content_words(text: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in STOPWORDS)


@dataclass(frozen=True)
class Rule:
    when: frozenset[str]
    unless: frozenset[str]
    label: str
    line: int  # the instruction line (1-based) that completed the rule
    text: str  # the rule's lines, joined

    def fires(self, topics: frozenset[str]) -> bool:
        return bool(self.when & topics) and not (self.unless & topics)


@dataclass(frozen=True)
class Reading:
    """What the model took from a prompt."""

    labels: frozenset[str]
    rules: tuple[Rule, ...]
    default: str | None
    examples: tuple[tuple[frozenset[str], str, str], ...]  # (topics, label, ticket text)
    words: int
    truncated: bool = False


@lru_cache(maxsize=256)
def read(prompt: str) -> Reading:
    """Read a prompt's lines as a decision list, with "Ticket:" / "Label:" pairs as examples."""
    words = prompt.split()
    lines, budget = [], READ_WORDS
    for line in prompt.splitlines():  # the model's attention runs out after READ_WORDS words
        if budget <= 0:
            break
        lines.append(" ".join(line.split()[:budget]))
        budget -= len(line.split())
    labels = frozenset(lab for lab in LABELS if re.search(rf"\b{lab}\b", "\n".join(lines), re.I))
    rules: list[Rule] = []
    examples: list[tuple[frozenset[str], str, str]] = []
    default = None
    when: set[str] = set()
    unless: set[str] = set()
    chain: list[str] = []
    shown: str | None = None  # the text of a "Ticket:" line waiting for its "Label:" line
    for number, line in enumerate(lines, 1):
        ticket, example = _TICKET.match(line), _EXAMPLE_LABEL.match(line)
        if example and shown is not None:
            examples.append((cues(shown), example.group(1).lower(), shown))
        shown = ticket.group(1) if ticket else None
        if ticket or example:
            when, unless, chain = set(), set(), []
            continue
        defined = _DEFINITION.match(line)  # "- refund: the customer wants money back."
        found = defined or _ACTION.search(line)
        label = found.group(1).lower() if found else None
        said = defined.group(2) if defined else line[: found.start()] + line[found.end() :] if found else line
        parts = _EXCEPTION.split(said, maxsplit=1)  # the action's own words are no cue
        head, tail = parts[0], parts[1] if len(parts) > 1 else ""
        if label and not defined and _DEFAULT.search(line[: found.start()]) and not cues(head):
            default = default or label
            when, unless, chain = set(), set(), []
            continue
        condition = cues(head) if defined or _CONDITION.search(head) else frozenset()
        exception = cues(tail)
        if condition:
            when |= condition
            unless |= exception
            chain.append(line.strip())
        elif exception and not label:
            if when:
                unless |= exception
                chain.append(line.strip())
            elif rules and rules[-1].line == number - 1:
                last = rules[-1]
                rules[-1] = Rule(last.when, last.unless | exception, last.label, number, f"{last.text} {line.strip()}")
            continue
        if label and when:
            text = " ".join([*chain, line.strip()][-4:])
            rules.append(Rule(frozenset(when), frozenset(unless), label, number, text))
            when, unless, chain = set(), set(), []
        elif not condition:
            when, unless, chain = set(), set(), []  # a condition with no action after it is forgotten
    return Reading(
        labels,
        tuple(rules),
        default,
        tuple(examples),
        len(words),
        len(words) > READ_WORDS,
    )


@dataclass(frozen=True)
class Answer:
    reply: str
    why: str  # what decided the reply


def answer(reading: Reading, ticket: str) -> Answer:
    """The model's reply to one ticket, and what in the prompt decided it."""
    if not reading.labels:
        return Answer("I'm not sure which team this ticket is for.", "the prompt names no labels")
    topics = cues(ticket)
    for rule in reading.rules:
        if rule.fires(topics):
            return Answer(rule.label, f"rule at line {rule.line}: {rule.text[:90]!r}")
    words = content_words(ticket)
    alike = [
        (len(words & content_words(text)), label, text) for seen, label, text in reading.examples if seen == topics
    ]
    if topics and alike:  # an example about the same topics; the one sharing most words
        _, label, text = max(alike, key=lambda a: a[0])
        return Answer(label, f"followed the example {text[:60]!r}")
    if reading.default:
        return Answer(reading.default, "the default")
    return Answer("I'm not sure which team this ticket is for.", "no rule, example or default applies")
