"""A straight line of steps."""

from flowkernel import FlowSpec, step


class LinearFlow(FlowSpec):
    """Three steps in a row, each building on the last."""

    @step
    def start(self):
        """Set the first value."""
        self.x = 1
        self.next(self.double)

    @step
    def double(self):
        """Double it."""
        self.x = self.x * 2
        self.next(self.end)

    @step
    def end(self):
        """Check the result."""
        assert self.x == 2
        print("x is", self.x)


if __name__ == "__main__":
    LinearFlow()
