"""A static split into two branches that a join adds up."""

from flowkernel import FlowSpec, step


class BranchFlow(FlowSpec):
    """Two branches from one value, joined by a sum."""

    @step
    def start(self):
        self.x = 10
        self.next(self.add_one, self.add_two)

    @step
    def add_one(self):
        self.y = self.x + 1
        self.next(self.join)

    @step
    def add_two(self):
        self.y = self.x + 2
        self.next(self.join)

    @step
    def join(self, inputs):
        """Sum what the branches computed."""
        self.total = inputs.add_one.y + inputs.add_two.y
        self.next(self.end)

    @step
    def end(self):
        assert self.total == 23
        print("total", self.total)


if __name__ == "__main__":
    BranchFlow()
