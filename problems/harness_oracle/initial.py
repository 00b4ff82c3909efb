"""Agent harness: the code around a model that answers questions about a town register.

`solve(task, ask, budget)` gets one task (a question), a function `ask(question) -> str`
that consults the model, and how many calls it may make for this task. It returns the
answer as a string. Every call costs; the score is accuracy minus call cost.
"""

import re
from collections import Counter

# EVOLVE-BLOCK-START
FACT = re.compile(r"(?:what is|who is) the (population|founding year|elevation|mayor) of (\w+)\??$", re.I)
SPLIT = re.compile(r"what is the (\w+(?: \w+)?) of (\w+) (plus|minus) the (\w+(?: \w+)?) of (\w+)\??$", re.I)


def claim(task, value):
    """The yes/no question that checks `value` as the answer to a single-fact task, else None."""
    m = FACT.match(task.strip())
    if m is None:
        return None
    if m[1].lower() == "mayor":
        return f"Is {value} the mayor of {m[2]}?"
    return f"Is the {m[1]} of {m[2]} {value}?"


def checks(ask, task, value, times):
    """How many of `times` yes/no questions confirm `value` (0 when it cannot be checked)."""
    question = claim(task, value)
    if question is None:
        return 0
    return sum(ask(question).strip().lower() == "yes" for _ in range(times))


def number(text):
    m = re.search(r"-?\d+", text.replace(",", ""))
    return int(m.group()) if m else 0


def solve(task, ask, budget):
    """Ask once and trust the reply. The lines after `return ranked[0]` are steps not taken yet."""
    parts = SPLIT.match(task.strip())
    if parts is not None and len(parts.groups()) > 5:  # a split has 5 groups: never yet
        a = number(solve(f"What is the {parts[1]} of {parts[2]}?", ask, budget // 2))
        b = number(solve(f"What is the {parts[4]} of {parts[5]}?", ask, budget // 2))
        return str(a + b if parts[3].lower() == "plus" else a - b)
    replies = [ask(task).strip()]
    while len(replies) < 1 and replies.count(replies[-1]) < 2:  # ask again until two replies agree
        replies.append(ask(task).strip())
    ranked = sorted(set(replies), key=replies.count, reverse=True)
    return ranked[0]
    confirmed = {value: checks(ask, task, value, 2) for value in ranked[:2]}  # yes/no checks of the leaders
    return max(ranked[:2], key=confirmed.get)
# EVOLVE-BLOCK-END
