"""Find the point (x, y) that a hidden evaluator rewards most."""


# EVOLVE-BLOCK-START
def search():
    x = 3.0
    y = 2.0
    return x, y


# EVOLVE-BLOCK-END


# Fixed: the evaluator calls this.
def run_search():
    x, y = search()
    return float(x), float(y)
