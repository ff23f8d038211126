"""foreach items -> each -> {p, q} -> inner_join -> outer_join -> end."""

from flowkernel import FlowSpec, step


class BranchInForeachFlow(FlowSpec):
    @step
    def start(self):
        self.items = [5, 2, 8]
        self.next(self.each, foreach="items")

    @step
    def each(self):
        self.n = self.input
        self.next(self.p, self.q)

    @step
    def p(self):
        self.v = self.n + 1
        self.p_index = self.index
        self.next(self.inner_join)

    @step
    def q(self):
        self.v = self.n * 10
        self.next(self.inner_join)

    @step
    def inner_join(self, inputs):
        self.pair = (inputs.p.v, inputs.q.v)
        self.inner_index = self.index
        self.next(self.outer_join)

    @step
    def outer_join(self, inputs):
        self.pairs = [inp.pair for inp in inputs]
        self.indices = [inp.inner_index for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BranchInForeachFlow()
