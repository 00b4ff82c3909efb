# SANDBOX-DIRECT
import socket

PORT = int("@PORT@")

with socket.create_connection(("127.0.0.1", PORT), timeout=0.5) as s:
    s.sendall(b"evaluator process was here")


def solve(n):
    return [1.0] * n
