"""A split whose first branch splits again."""

from flowkernel import FlowSpec, step


class NestedBranchesFlow(FlowSpec):
    @step
    def start(self):
        self.x = 1
        self.next(self.left, self.right)

    @step
    def left(self):
        self.next(self.left_a, self.left_b)

    @step
    def left_a(self):
        self.y = self.x + 10
        self.next(self.left_join)

    @step
    def left_b(self):
        self.y = self.x + 20
        self.next(self.left_join)

    @step
    def left_join(self, inputs):
        self.y = sum(inp.y for inp in inputs)
        self.next(self.join)

    @step
    def right(self):
        self.y = self.x + 100
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = inputs.left_join.y + inputs.right.y
        self.next(self.end)

    @step
    def end(self):
        assert self.total == 133
        print("total", self.total)


if __name__ == "__main__":
    NestedBranchesFlow()
