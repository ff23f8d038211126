"""start -> foreach over range(n) -> trivial body -> join -> end (per-task overhead)."""

from flowkernel import FlowSpec, Parameter, step


class ForeachFlow(FlowSpec):
    n = Parameter("n", default=1000, type=int, help="Number of foreach tasks.")

    @step
    def start(self):
        self.items = list(range(self.n))
        self.next(self.body, foreach="items")

    @step
    def body(self):
        self.y = self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.y for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        assert self.total == self.n * (self.n - 1) // 2


if __name__ == "__main__":
    ForeachFlow()
