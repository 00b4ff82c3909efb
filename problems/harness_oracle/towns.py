"""The hidden town register, the task suite, the offline noisy oracle and answer checking.

All of this is trusted code that lives in the evaluator's process; the candidate harness
sees task questions and the oracle's replies, nothing else.

The oracle reads questions in a small fixed grammar (`parse_question`). Its errors are
deterministic: every reply is drawn from a generator seeded by the question's meaning and
how many times that question was already asked in the current task, so the same harness
always gets the same replies, and two harnesses asking the same things get the same
replies (common random numbers). Errors are correlated: some facts carry a fixed
misconception the oracle repeats often, so plain majority voting does not always win.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

SALT = "harness-oracle-4"
ATTRIBUTES = ("population", "founding year", "elevation", "mayor")
NUMERIC = ("population", "founding year", "elevation")

TOWN_NAMES = (
    "Orvale",
    "Tessin",
    "Brask",
    "Calder",
    "Dunmere",
    "Elsby",
    "Fennick",
    "Garrow",
    "Halden",
    "Istra",
    "Lunde",
    "Marrow",
    "Nethby",
    "Ostrel",
    "Pellam",
    "Rudby",
    "Sorrel",
    "Thale",
    "Umber",
    "Wexley",
)
FIRST = (
    "Ida",
    "Bram",
    "Cora",
    "Dov",
    "Elin",
    "Fitz",
    "Greta",
    "Hugo",
    "Ines",
    "Jory",
    "Kaja",
    "Lars",
    "Mira",
    "Nils",
    "Orla",
    "Pim",
    "Runa",
    "Sven",
    "Tove",
    "Ulla",
)
LAST = (
    "Brandt",
    "Castell",
    "Dunn",
    "Ekholm",
    "Falk",
    "Grau",
    "Holm",
    "Jarl",
    "Kessler",
    "Lind",
    "Moss",
    "Nyberg",
    "Oakes",
    "Prior",
    "Quist",
    "Rask",
    "Stahl",
    "Tern",
    "Voss",
    "Wren",
)

# Oracle noise (offline). Chosen so that one call per task is right about 3 times in 4.
MISCONCEPTION_RATE = 0.2  # share of facts the oracle holds a fixed wrong belief about
P_RIGHT_CLEAN = 0.9  # a clean fact is recalled right this often, else a random wrong value
P_RIGHT_MISCONCEIVED = 0.55  # a misconceived fact: right this often ...
P_MISCONCEPTION = 0.3  # ... its fixed wrong value this often, else a random wrong value
P_ARITHMETIC_SLIP = 0.1  # a sum/difference question adds an arithmetic slip this often
P_COMPARE_FLIP = 0.05  # a comparison answer is flipped this often
P_YES_TRUE_CLEAN = 0.93  # "is the X of T V?" when V is right, fact clean: "yes" this often
P_YES_TRUE_MISCONCEIVED = 0.8  # ... V right, fact misconceived
P_YES_MISCONCEPTION = 0.3  # ... V is the oracle's misconception
P_YES_OTHER = 0.06  # ... V is some other wrong value

Fact = tuple[str, str]  # (town, attribute)


@dataclass(frozen=True)
class Town:
    name: str
    population: int
    founding_year: int
    elevation: int
    mayor: str

    def value(self, attribute: str) -> int | str:
        return getattr(self, attribute.replace(" ", "_"))


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, (SALT, *parts))).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def build_register() -> dict[str, Town]:
    """The hidden facts: twenty fictional towns, generated once from a fixed seed."""
    rng = _rng("register")
    mayors = [f"{f} {ln}" for f, ln in zip(FIRST, rng.sample(LAST, len(LAST)), strict=True)]
    towns = {}
    for name, mayor in zip(TOWN_NAMES, mayors, strict=True):
        towns[name] = Town(name, rng.randrange(1200, 90000), rng.randrange(1150, 1920), rng.randrange(5, 2400), mayor)
    return towns


REGISTER = build_register()
TOWN_BY_MAYOR = {t.mayor.lower(): t.name for t in REGISTER.values()}


# ---------------------------------------------------------------- the task suite


@dataclass(frozen=True)
class Task:
    id: str
    kind: str  # lookup | sum | difference | compare | hop
    question: str
    answer: str  # kept here, in the evaluator; never sent to the harness
    heldout: bool


N_TRAIN, N_HELDOUT = 60, 30


def _number(n: int) -> str:
    return str(n)


def build_tasks() -> list[Task]:
    """90 tasks over the register (60 to train on, 30 held out), fixed once and for all."""
    rng = _rng("tasks")
    names = list(TOWN_NAMES)
    kinds = ["lookup", "sum", "difference", "compare", "hop"]
    tasks = []
    for i in range(N_TRAIN + N_HELDOUT):
        kind = kinds[i % len(kinds)]
        a, b = rng.sample(names, 2)
        ta, tb = REGISTER[a], REGISTER[b]
        attr = rng.choice(NUMERIC)
        if kind == "lookup":
            attr = rng.choice(ATTRIBUTES)
            q = f"Who is the mayor of {a}?" if attr == "mayor" else f"What is the {attr} of {a}?"
            ans = str(ta.value(attr))
        elif kind in ("sum", "difference"):
            attr = rng.choice(("population", "elevation"))
            op = "plus" if kind == "sum" else "minus"
            if kind == "difference" and ta.value(attr) < tb.value(attr):
                a, b, ta, tb = b, a, tb, ta
            q = f"What is the {attr} of {a} {op} the {attr} of {b}?"
            va, vb = int(ta.value(attr)), int(tb.value(attr))
            ans = _number(va + vb if op == "plus" else va - vb)
        elif kind == "compare":
            if attr == "founding year":
                q = f"Which town was founded earlier, {a} or {b}?"
                ans = a if ta.founding_year < tb.founding_year else b
            else:
                q = f"Which town has the larger {attr}, {a} or {b}?"
                ans = a if ta.value(attr) > tb.value(attr) else b
        else:  # hop
            q = f"What is the {attr} of the town whose mayor is {ta.mayor}?"
            ans = str(ta.value(attr))
        tasks.append(Task(f"t{i + 1:02d}", kind, q, ans, heldout=i >= N_TRAIN))
    return tasks


TASKS = build_tasks()


def ordered_tasks() -> list[Task]:
    """The order the harness meets the tasks in: fixed, with held-out tasks mixed in."""
    order = list(TASKS)
    _rng("order").shuffle(order)
    return order


# ---------------------------------------------------------------- reading questions

_ATTR = r"(population|founding year|year of founding|elevation|altitude|mayor)"
_NAME = r"([a-z][a-z' -]*?)"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("combine", re.compile(rf"^(?:what is|what's) the {_ATTR} of {_NAME} (plus|minus) the {_ATTR} of {_NAME}$")),
    ("hop", re.compile(rf"^(?:what is|what's) the {_ATTR} of the town whose mayor is {_NAME}$")),
    ("lookup", re.compile(rf"^(?:what is|what's) the {_ATTR} of {_NAME}$")),
    ("mayor", re.compile(rf"^who is the mayor of {_NAME}$")),
    ("founded", re.compile(rf"^in what year was {_NAME} founded$")),
    ("compare", re.compile(rf"^which town has the (larger|smaller|higher|lower|bigger) {_ATTR}, {_NAME} or {_NAME}$")),
    ("earlier", re.compile(rf"^which town was founded (earlier|later|first|last), {_NAME} or {_NAME}$")),
    ("reverse", re.compile(rf"^(?:which town's mayor is|which town has mayor|which town has the mayor) {_NAME}$")),
    ("verify_mayor", re.compile(rf"^is {_NAME} the mayor of {_NAME}$")),
    ("verify_founded", re.compile(rf"^was {_NAME} founded in (-?[\d,]+)$")),
    ("verify", re.compile(rf"^is the {_ATTR} of {_NAME} (?:equal to |exactly )?(-?[\d,]+|[a-z][a-z' -]*)$")),
]
_ATTR_ALIASES = {"year of founding": "founding year", "altitude": "elevation"}


class Unanswerable(Exception):
    """A question outside the grammar or about an unknown town; the message is the reply."""


def normalise(question: str) -> str:
    q = " ".join(str(question).lower().replace("\u2019", "'").split())
    return q.rstrip(" ?.!")


def _town(name: str) -> str:
    for t in REGISTER:
        if t.lower() == name.strip():
            return t
    raise Unanswerable(f"I don't know a town called {name.strip().title()}.")


def _attr(word: str) -> str:
    return _ATTR_ALIASES.get(word, word)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def parse_question(question: str) -> tuple:
    """The meaning of a question as a tuple, e.g. ("lookup", "Orvale", "population")."""
    q = normalise(question)
    for kind, pattern in _PATTERNS:
        m = pattern.match(q)
        if not m:
            continue
        g = m.groups()
        if kind == "combine":
            return ("combine", _town(g[1]), _attr(g[0]), g[2], _town(g[4]), _attr(g[3]))
        if kind == "hop":
            return ("hop", _attr(g[0]), g[1].strip())
        if kind == "lookup":
            return ("lookup", _town(g[1]), _attr(g[0]))
        if kind == "mayor":
            return ("lookup", _town(g[0]), "mayor")
        if kind == "founded":
            return ("lookup", _town(g[0]), "founding year")
        if kind == "compare":
            larger = g[0] in ("larger", "higher", "bigger")
            return ("compare", _attr(g[1]), larger, _town(g[2]), _town(g[3]))
        if kind == "earlier":
            return ("compare", "founding year", g[0] in ("later", "last"), _town(g[1]), _town(g[2]))
        if kind == "reverse":
            return ("reverse", g[0].strip())
        if kind == "verify_mayor":
            return ("verify", _town(g[1]), "mayor", g[0].strip())
        if kind == "verify_founded":
            return ("verify", _town(g[0]), "founding year", g[1].replace(",", ""))
        return ("verify", _town(g[1]), _attr(g[0]), g[2].replace(",", "").strip())
    raise Unanswerable("I don't understand the question.")


# ---------------------------------------------------------------- the offline oracle


def _misconceived_facts() -> frozenset[Fact]:
    """Exactly MISCONCEPTION_RATE of all facts, chosen once from a fixed seed."""
    facts = sorted((t, a) for t in TOWN_NAMES for a in ATTRIBUTES)
    return frozenset(_rng("misconceived").sample(facts, round(MISCONCEPTION_RATE * len(facts))))


def _misconception(fact: Fact) -> int | str | None:
    """The fixed wrong value the oracle believes for this fact, if it holds one."""
    if fact not in MISCONCEIVED:
        return None
    return _wrong_value(fact, _rng("misconception", *fact))


def _wrong_value(fact: Fact, rng: random.Random) -> int | str:
    town, attr = fact
    truth = REGISTER[town].value(attr)
    if attr == "mayor":
        return rng.choice([t.mayor for t in REGISTER.values() if t.mayor != truth])
    spread = {"population": max(200, int(truth) // 8), "founding year": 60, "elevation": 300}[attr]
    delta = 0
    while delta == 0:
        delta = rng.randint(-spread, spread)
    return int(truth) + delta


MISCONCEIVED = _misconceived_facts()


def recall(fact: Fact, rng: random.Random) -> int | str:
    """One noisy recollection of a fact."""
    truth = REGISTER[fact[0]].value(fact[1])
    wrong = _misconception(fact)
    u = rng.random()
    if wrong is None:
        return truth if u < P_RIGHT_CLEAN else _wrong_value(fact, rng)
    if u < P_RIGHT_MISCONCEIVED:
        return truth
    if u < P_RIGHT_MISCONCEIVED + P_MISCONCEPTION:
        return wrong
    return _wrong_value(fact, rng)


def _recall_town_of_mayor(name: str, rng: random.Random) -> str | None:
    """Which town the oracle believes `name` is mayor of (None: it does not know the name).

    When the oracle holds a misconception about a town's mayor, it also keeps tying that
    mayor's name to one fixed wrong town.
    """
    truth = TOWN_BY_MAYOR.get(name.lower())
    if truth is None:
        return None
    others = [t for t in TOWN_NAMES if t != truth]
    u = rng.random()
    if (truth, "mayor") not in MISCONCEIVED:
        return truth if u < P_RIGHT_CLEAN else rng.choice(others)
    if u < P_RIGHT_MISCONCEIVED:
        return truth
    if u < P_RIGHT_MISCONCEIVED + P_MISCONCEPTION:
        return _rng("misplaced mayor", name.lower()).choice(others)
    return rng.choice(others)


def _answer(meaning: tuple, rng: random.Random) -> str:
    kind = meaning[0]
    if kind == "lookup":
        return str(recall((meaning[1], meaning[2]), rng))
    if kind == "combine":
        _, ta, aa, op, tb, ab = meaning
        va, vb = recall((ta, aa), rng), recall((tb, ab), rng)
        if not (isinstance(va, int) and isinstance(vb, int)):
            return "I can only add or subtract numbers."
        value = va + vb if op == "plus" else va - vb
        if rng.random() < P_ARITHMETIC_SLIP:
            value += rng.choice([-1, 1]) * rng.choice([1, 10, 100, 1000])
        return str(value)
    if kind == "compare":
        _, attr, larger, ta, tb = meaning
        if attr == "mayor":
            return "Mayors cannot be compared."
        va, vb = recall((ta, attr), rng), recall((tb, attr), rng)
        first = (va > vb) if larger else (va < vb)
        if rng.random() < P_COMPARE_FLIP:
            first = not first
        return ta if first else tb
    if kind == "reverse":
        town = _recall_town_of_mayor(meaning[1], rng)
        return town if town else f"I don't know anyone called {meaning[1].title()}."
    if kind == "hop":
        _, attr, name = meaning
        town = _recall_town_of_mayor(name, rng)
        if town is None:
            return f"I don't know anyone called {name.title()}."
        return str(recall((town, attr), rng))
    # verify
    _, town, attr, claimed = meaning
    truth = REGISTER[town].value(attr)
    wrong = _misconception((town, attr))
    if attr == "mayor":
        right, is_wrong = claimed == str(truth).lower(), wrong is not None and claimed == str(wrong).lower()
    else:
        right, is_wrong = claimed == str(truth), wrong is not None and claimed == str(wrong)
    if right:
        p_yes = P_YES_TRUE_CLEAN if wrong is None else P_YES_TRUE_MISCONCEIVED
    else:
        p_yes = P_YES_MISCONCEPTION if is_wrong else P_YES_OTHER
    return "yes" if rng.random() < p_yes else "no"


def offline_reply(question: str, repeat: int) -> str:
    """The simulated model's reply to `question` asked for the `repeat`-th time in a task."""
    try:
        meaning = parse_question(question)
    except Unanswerable as exc:
        return str(exc)
    return _answer(meaning, _rng("reply", meaning, repeat))


def question_key(question: str) -> str:
    """What counts as "the same question" for repeats: its meaning, else its normalised text."""
    try:
        return repr(parse_question(question))
    except Unanswerable:
        return normalise(question)


def register_document() -> str:
    """The register as text: what a real model is given to answer from."""
    lines = ["Town register (all figures are exact):"]
    for t in REGISTER.values():
        lines.append(
            f"- {t.name}: population {t.population}; founded in {t.founding_year}; "
            f"elevation {t.elevation} m; mayor {t.mayor}."
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- checking answers

_INT = re.compile(r"-?\d[\d,]*")


def is_correct(task: Task, answer: object) -> bool:
    """Lenient about phrasing, strict about content: one number, town or name, the right one."""
    text = " ".join(str(answer if answer is not None else "").lower().split())
    gold = task.answer
    if gold.lstrip("-").isdigit():
        m = _INT.search(text)
        return bool(m) and m.group().replace(",", "") == gold
    towns = {t.lower() for t in TOWN_NAMES if re.search(rf"\b{t.lower()}\b", text)}
    if gold in REGISTER:
        return towns == {gold.lower()}
    mayors = {m for m in TOWN_BY_MAYOR if m in text}
    return mayors == {gold.lower()}
