# A fork bomb that stays bounded even if no limit stopped it: the first process makes at most
# 40 fork attempts, its children 6 each, grandchildren none (at worst 1 + 40 + 240 processes),
# all within 2 s; every forked process then sleeps, holding its process slot.
import os
import time


def solve(n):
    me = os.getpid()
    made = refused = generation = 0
    budget = 40
    stop = time.monotonic() + 2.0
    while budget > 0 and time.monotonic() < stop:
        budget -= 1
        try:
            pid = os.fork()
        except OSError:
            refused += 1
            time.sleep(0.005)
            continue
        if pid == 0:
            generation += 1
            budget = 6 if generation == 1 else 0
            made = refused = 0
            continue
        made += 1
    if os.getpid() != me:
        time.sleep(30)
        os._exit(0)
    raise RuntimeError(f"fork bomb: {made} forks made, {refused} refused")
