# SANDBOX-DIRECT
with open("big.bin", "wb") as f:
    for _ in range(100):
        f.write(b"\0" * (1024 * 1024))


def solve(n):
    return [1.0] * n
