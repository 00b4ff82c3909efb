"""The protocol client, run in the sealed child: import the candidate, solve what comes.

Not imported by the evaluator: `problem.py` reads this file as text and the sealed child
executes it (standard library only). Messages are JSON lines on stdin and stdout:

    evaluator -> {"task": "...", "budget": 16}      one task at a time, in a fixed order
    client    -> {"ask": "question"}                charged to the current task
    evaluator -> {"reply": "..."}                   "" once the task's budget is spent
    client    -> {"answer": "...", "error": ""}     closes the task
    evaluator -> {"done": true}                     after the last task
    client    -> {"fatal": "..."}                   the candidate could not be imported

The candidate's own prints go to /dev/null. Everything here runs in the candidate's
process, so the candidate could rewrite it; it could not buy anything the evaluator refuses.
"""

import importlib.util
import json
import os
import sys
import traceback


def _main():
    protocol_out = os.dup(1)
    os.dup2(2, 1)  # the candidate's prints go where stderr goes: /dev/null
    incoming = os.fdopen(0, "r", encoding="utf-8", errors="replace")

    def send(message):
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(protocol_out, data) :]

    def receive():
        line = incoming.readline()
        if not line:
            raise ConnectionError("the evaluator closed the channel")
        return json.loads(line)

    def ask(question):
        send({"ask": str(question)})
        return str(receive().get("reply", ""))

    try:
        spec = importlib.util.spec_from_file_location("harness", "/work/harness.py")
        harness = importlib.util.module_from_spec(spec)
        sys.modules["harness"] = harness
        spec.loader.exec_module(harness)
        solve = harness.solve
    except BaseException as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "/work/harness.py"]
        line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else (frames[-1].lineno if frames else None)
        where = f" (line {line} of the harness)" if line else ""
        send({"fatal": f"importing the harness raised {type(exc).__name__}: {exc}{where}"})
        return
    message = receive()
    while not message.get("done"):
        try:
            answer, error = solve(message["task"], ask, int(message["budget"])), ""
        except ConnectionError:
            raise
        except Exception as exc:
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "/work/harness.py"]
            where = f" (line {frames[-1].lineno})" if frames else ""
            answer, error = "", f"{type(exc).__name__}: {exc}{where}"
        send({"answer": "" if answer is None else str(answer)[:2000], "error": error[:500]})
        message = receive()


_main()
