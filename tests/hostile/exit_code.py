import os


def solve(n):
    os._exit(3)
