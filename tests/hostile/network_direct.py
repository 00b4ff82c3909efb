# SANDBOX-DIRECT
import socket

PORT = int("@PORT@")

with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.settimeout(0.5)
    s.connect(("127.0.0.1", PORT))
    s.sendall(b"evaluator process was here")


def solve(n):
    return [1.0] * n
