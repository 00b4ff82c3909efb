# SANDBOX-DIRECT
import sys

for _ in range(5000):
    print("y" * 1000)
sys.stdout.flush()
raise RuntimeError("after 5 MB of output")
