"""A switch inside each task of a foreach."""

from flowkernel import FlowSpec, step


class SwitchInForeachFlow(FlowSpec):
    @step
    def start(self):
        self.numbers = [1, 2, 3, 4]
        self.next(self.classify, foreach="numbers")

    @step
    def classify(self):
        self.n = self.input
        self.parity = "even" if self.n % 2 == 0 else "odd"
        self.next({"even": self.even, "odd": self.odd}, condition="parity")

    @step
    def even(self):
        self.label = f"{self.n} is even"
        self.next(self.join)

    @step
    def odd(self):
        self.label = f"{self.n} is odd"
        self.next(self.join)

    @step
    def join(self, inputs):
        self.labels = sorted(inp.label for inp in inputs)
        self.next(self.end)

    @step
    def end(self):
        assert len(self.labels) == 4
        print(self.labels)


if __name__ == "__main__":
    SwitchInForeachFlow()
