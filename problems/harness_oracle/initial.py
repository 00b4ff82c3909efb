"""Agent harness: the code around a model that answers questions about a town register.

`solve(task, ask, budget)` gets one task (a question), a function `ask(question) -> str`
that consults the oracle model, and the number of calls it may make for this task. It
returns the answer as a string. Every call costs; the score is accuracy minus call cost.
"""

from __future__ import annotations


# EVOLVE-BLOCK-START
def solve(task, ask, budget):
    """Ask the oracle the task's question `votes` times and keep the most common reply.

    With one vote this is a single call that trusts the reply.
    """
    votes = 1
    replies = [ask(task).strip() for _ in range(max(1, min(votes, budget)))]
    return max(replies, key=replies.count)
# EVOLVE-BLOCK-END


def run_suite(channel):
    """Frozen: connect to the evaluator's oracle and solve every task it sends, in order."""
    import json
    import os

    out = open(os.path.join(channel, "requests"), "w", encoding="utf-8")
    inp = open(os.path.join(channel, "replies"), encoding="utf-8")

    def send(message):
        out.write(json.dumps(message) + "\n")
        out.flush()

    def receive():
        line = inp.readline()
        if not line:
            raise ConnectionError("the oracle closed the channel")
        return json.loads(line)

    def ask(question):
        send({"ask": str(question)})
        return str(receive().get("reply", ""))

    solved = 0
    message = receive()
    while not message.get("done"):
        try:
            answer, error = solve(message["task"], ask, int(message["budget"])), ""
        except ConnectionError:
            raise
        except Exception as exc:
            answer, error = "", f"{type(exc).__name__}: {exc}"
        send({"answer": "" if answer is None else str(answer), "error": error})
        solved += 1
        message = receive()
    return solved
