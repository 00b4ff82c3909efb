import sys

sys.exit(4)


def solve(n):
    return [1.0] * n
