# Looks for what a candidate must not see: a mode-0600 canary in the engine user's home,
# /etc/shadow, the run's store (by its path, and by any path found in another process's
# command line), and secrets in environment variables of any name (its own, and other
# processes' through /proc). Reports what it found.
import os

CANARY = "@CANARY@"
STORE = "@STORE_FILE@"
SECRET = "@SECRET@"  # the value the test put into DATABASE_URL, HF_AUTH and GH_PAT


def _read(path):
    try:
        with open(path, "rb") as f:
            return f"read {len(f.read())} bytes"
    except OSError as exc:
        return f"refused: {exc.strerror}"


def _other_processes():
    """Command lines naming a store, and environments holding the secret, of every process."""
    stores, secrets, seen = [], [], 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        seen += 1
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                words = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        for i, word in enumerate(words):
            if word.endswith("archive.sqlite") or (i and words[i - 1] == "--run-dir"):
                stores.append(word if word.endswith("archive.sqlite") else os.path.join(word, "archive.sqlite"))
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if SECRET.encode() in f.read():
                    secrets.append(name)
        except OSError:
            pass
    return seen, stores, secrets


def spy():
    seen, stores, secret_pids = _other_processes()
    return {
        "canary": _read(CANARY),
        "shadow": _read("/etc/shadow"),
        "store": _read(STORE),
        "stores_found": {path: _read(path) for path in stores},
        "processes_seen": seen,
        "secret_in_environ": [k for k, v in os.environ.items() if SECRET in v],
        "secret_in_other_environ": secret_pids,
        "env_names": sorted(os.environ),
        "home": os.listdir(os.path.dirname(CANARY)) if os.path.isdir(os.path.dirname(CANARY)) else "absent",
    }


def solve(n):
    return {"values": [1.0] * n, "report": spy()}
