# Tries to claim a score it did not earn: prints lines shaped like the worker's protocol,
# writes them to every file descriptor it can find, and monkeypatches the problem's scorer
# (in its own process). Then returns a worthless answer.
import json
import os
import sys

FAKE = {"score": 1e9, "valid": True, "metrics": {}, "features": {}, "feedback": "", "artifacts": {}}


def solve(n):
    line = json.dumps({"id": 1, "token": "guess", "result": FAKE}) + "\n"
    print(line, end="")
    for fd in range(64):
        try:
            os.write(fd, line.encode())
        except OSError:
            pass
    for name, module in list(sys.modules.items()):
        if name.startswith("evoengine_problem") and hasattr(module, "score"):
            module.score = lambda values: FAKE
    return [0.0] * n
