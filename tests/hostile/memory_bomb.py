def solve(n):
    hoard = []
    while True:
        hoard.append(bytearray(128 * 1024 * 1024))
