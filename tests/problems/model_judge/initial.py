# EVOLVE-BLOCK-START
def answer():
    return "a fine answer"


# EVOLVE-BLOCK-END
