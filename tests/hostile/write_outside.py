# Tries to write where a candidate must not: the run store, the evaluator, the folder above
# its own; and somewhere world-writable (which cannot be prevented). Reports what happened.
import json
import os

REPORT_DIR = "@REPORT_DIR@"
TARGETS = {
    "store": "@STORE_FILE@",
    "evaluator": "@EVALUATOR_FILE@",
    "parent_dir": os.path.join(os.path.dirname(os.getcwd()), "escaped.txt"),
    "world_writable": os.path.join(REPORT_DIR, "world_writable.txt"),
}


def solve(n):
    outcome = {"cwd": os.getcwd()}
    for name, path in TARGETS.items():
        try:
            with open(path, "a") as f:
                f.write("pwned by candidate\n")
            outcome[name] = "written"
        except OSError as exc:
            outcome[name] = f"refused: {exc.strerror}"
    try:
        with open(TARGETS["store"], "rb") as f:
            outcome["store_read"] = len(f.read())
    except OSError as exc:
        outcome["store_read"] = f"refused: {exc.strerror}"
    try:
        os.chmod(TARGETS["store"], 0o666)
        outcome["chmod_store"] = "done"
    except OSError as exc:
        outcome["chmod_store"] = f"refused: {exc.strerror}"
    with open(os.path.join(REPORT_DIR, "write_outside.json"), "w") as f:
        json.dump(outcome, f)
    return [1.0] * n
