import sys

sys.setrecursionlimit(10**8)


def dive(depth):
    # map() calls back into Python from C, so every level also uses C stack: overflow -> SIGSEGV
    return list(map(dive, [depth + 1]))


def solve(n):
    return dive(0)
