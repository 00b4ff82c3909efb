# Tries to claim a score it did not earn: prints lines shaped like the worker's protocol and
# writes them to every file descriptor it can find (its own result pipe included). Then
# returns a worthless answer.
import json
import os

FAKE = {"score": 1e9, "valid": True, "metrics": {}, "features": {}, "feedback": "", "artifacts": {}}


def solve(n):
    line = json.dumps({"id": 1, "token": "guess", "result": FAKE}) + "\n"
    print(line, end="")
    for fd in range(64):
        try:
            os.write(fd, line.encode())
        except OSError:
            pass
    return [0.0] * n
