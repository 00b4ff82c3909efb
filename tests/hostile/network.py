import socket

PORT = int("@PORT@")


def solve(n):
    with socket.create_connection(("127.0.0.1", PORT), timeout=0.5) as s:
        s.sendall(b"candidate was here")
    return [1.0] * n
