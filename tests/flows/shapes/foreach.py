"""One task per number, then a join that sums the squares."""

from flowkernel import FlowSpec, step


class ForeachFlow(FlowSpec):
    @step
    def start(self):
        self.numbers = [3, 1, 2]
        self.next(self.square, foreach="numbers")

    @step
    def square(self):
        """Square one number."""
        self.value = self.input * self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.squares = [inp.value for inp in inputs]
        self.total = sum(self.squares)
        self.next(self.end)

    @step
    def end(self):
        assert self.squares == [9, 1, 4]
        print("total", self.total)


if __name__ == "__main__":
    ForeachFlow()
