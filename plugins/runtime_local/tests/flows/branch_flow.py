"""start -> {a, b} -> join -> end: a join reads its inputs by step name and inherits nothing."""

from flowkernel import FlowSpec, Parameter, step


class BranchFlow(FlowSpec):
    CONST = 7
    alpha = Parameter("alpha", default=3)

    @step
    def start(self):
        self.base = 10
        self.next(self.a, self.b)

    @step
    def a(self):
        self.val = self.base + 1
        self.only_a = "A"
        self.next(self.join)

    @step
    def b(self):
        self.val = self.base + 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.from_a = inputs.a.val
        self.from_b = inputs.b.val
        self.input_vals = sorted(inp.val for inp in inputs)
        self.indexed = sorted([inputs[0].val, inputs[1].val])
        self.n_inputs = len(inputs)
        self.errors = {}
        for name in ("only_a", "base", "val"):
            try:
                getattr(self, name)
            except AttributeError as exc:
                self.errors[name] = str(exc)
        self.join_sees = (self.CONST, self.alpha, self.name)
        self.next(self.end)

    @step
    def end(self):
        self.total = self.from_a + self.from_b


if __name__ == "__main__":
    BranchFlow()
