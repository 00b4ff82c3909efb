def solve(n):
    return [1.0] * n
