"""A module beside the flow: it travels in the code package."""


def cube(x: int) -> int:
    return x * x * x
