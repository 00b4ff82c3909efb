"""Weights for three features; the evaluator scores how well they separate its examples."""


# EVOLVE-BLOCK-START
def weights():
    return [0.1, 0.1, 0.1]


# EVOLVE-BLOCK-END


def run_experiment(seed=0):
    return [float(w) for w in weights()]
