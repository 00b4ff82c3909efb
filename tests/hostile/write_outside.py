# Tries to write where a candidate must not: the run store, the evaluator, the folder above
# its own, /tmp, /dev/shm, /var/tmp, the root folder; and chmods the store. Every file it
# makes is named after @MARKER@, so the test can look for them on the machine afterwards.
import os

MARKER = "@MARKER@"
TARGETS = {
    "store": "@STORE_FILE@",
    "evaluator": "@EVALUATOR_FILE@",
    "parent_dir": os.path.join(os.path.dirname(os.getcwd()), MARKER + "-parent"),
    "tmp": f"/tmp/{MARKER}-tmp",
    "dev_shm": f"/dev/shm/{MARKER}-shm",
    "var_tmp": f"/var/tmp/{MARKER}-var-tmp",
    "root": f"/{MARKER}-root",
}


def write_everywhere():
    outcome = {"cwd": os.getcwd()}
    for name, path in TARGETS.items():
        try:
            with open(path, "a") as f:
                f.write("pwned by candidate\n")
            outcome[name] = "written"
        except OSError as exc:
            outcome[name] = f"refused: {exc.strerror}"
    try:
        os.chmod(TARGETS["store"], 0o666)
        outcome["chmod_store"] = "done"
    except OSError as exc:
        outcome["chmod_store"] = f"refused: {exc.strerror}"
    return outcome


def solve(n):
    return {"values": [1.0] * n, "report": write_everywhere()}
