# SANDBOX-DIRECT: the orphan is started by the evaluator process itself.
# Double fork + setsid: a grandchild that outlives its parent, ignores SIGTERM/SIGHUP and
# reports its pid (as /proc numbers it) and start time so the test can check it is dead.
import json
import os
import signal
import time

REPORT = "@REPORT_DIR@/orphan.json"


def _spawn_orphan():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            pid = int(os.readlink("/proc/self"))
            with open(f"/proc/{pid}/stat", "rb") as f:
                start = int(f.read().rsplit(b")", 1)[1].split()[19])
            with open(REPORT + ".tmp", "w") as f:
                json.dump({"pid": pid, "start": start}, f)
            os.rename(REPORT + ".tmp", REPORT)
            time.sleep(60)
        os._exit(0)
    stop = time.monotonic() + 2.0
    while not os.path.exists(REPORT) and time.monotonic() < stop:
        time.sleep(0.01)


_spawn_orphan()


def solve(n):
    return [1.0] * n
