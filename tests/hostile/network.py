import socket

PORT = int("@PORT@")


def solve(n):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        s.connect(("127.0.0.1", PORT))
        s.sendall(b"candidate was here")
    return [1.0] * n
