"""A foreach fan-out: one task per item, then a join that sees the results in item order."""

from flowkernel import FlowSpec, Parameter, step


class FanoutFlow(FlowSpec):
    """Square some numbers in parallel and add them up."""

    count = Parameter("count", default=8, help="How many numbers to square.")

    @step
    def start(self):
        self.numbers = list(range(1, self.count + 1))
        self.next(self.square, foreach="numbers")

    @step
    def square(self):
        """Runs once per number, in its own process."""
        self.result = self.input * self.input
        print(f"{self.input}^2 = {self.result}")
        self.next(self.join)

    @step
    def join(self, inputs):
        """Inputs arrive in the order of `numbers`."""
        self.squares = [inp.result for inp in inputs]
        self.total = sum(self.squares)
        self.next(self.end)

    @step
    def end(self):
        print("sum of squares:", self.total)


if __name__ == "__main__":
    FanoutFlow()
