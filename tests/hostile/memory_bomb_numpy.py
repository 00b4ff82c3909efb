import numpy as np


def solve(n):
    return np.ones((200_000, 200_000)).sum(axis=0)[:n]
