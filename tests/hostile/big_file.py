def solve(n):
    with open("big.bin", "wb") as f:
        for _ in range(100):
            f.write(b"\0" * (1024 * 1024))
    return [1.0] * n
