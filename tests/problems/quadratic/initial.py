"""Three tunable constants."""


# EVOLVE-BLOCK-START
def params():
    a = 0.1
    b = 0.2
    c = 0.3
    return (a, b, c)


# EVOLVE-BLOCK-END
