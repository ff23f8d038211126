"""A static split inside each foreach task."""

from flowkernel import FlowSpec, step


class BranchInForeachFlow(FlowSpec):
    @step
    def start(self):
        self.numbers = [1, 2]
        self.next(self.each, foreach="numbers")

    @step
    def each(self):
        self.n = self.input
        self.next(self.plus, self.times)

    @step
    def plus(self):
        self.value = self.n + 1
        self.next(self.inner_join)

    @step
    def times(self):
        self.value = self.n * 3
        self.next(self.inner_join)

    @step
    def inner_join(self, inputs):
        self.value = inputs.plus.value + inputs.times.value
        self.next(self.outer_join)

    @step
    def outer_join(self, inputs):
        self.values = [inp.value for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        assert self.values == [5, 9]
        print(self.values)


if __name__ == "__main__":
    BranchInForeachFlow()
