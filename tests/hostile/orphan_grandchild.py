# Double fork + setsid: a grandchild that outlives its parent, ignores SIGTERM/SIGHUP and
# reports its pid (as its own /proc numbers it) and start time, so the test can check it is dead.
import json
import os
import signal
import time


def _spawn_orphan():
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            pid = int(os.readlink("/proc/self"))
            with open(f"/proc/{pid}/stat", "rb") as f:
                start = int(f.read().rsplit(b")", 1)[1].split()[19])
            os.write(write_end, json.dumps({"pid": pid, "start": start}).encode())
            os.close(write_end)
            time.sleep(60)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        return json.loads(f.read() or "null")


def solve(n):
    return {"values": [1.0] * n, "report": _spawn_orphan()}
