# SANDBOX-DIRECT: runs inside the evaluator process itself.
while True:
    pass
