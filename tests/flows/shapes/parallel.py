"""A gang of four @parallel tasks, joined."""

from flowkernel import FlowSpec, parallel, step


class ParallelFlow(FlowSpec):
    """A gang of four @parallel tasks, joined."""

    @step
    def start(self):
        self.base = 100
        self.next(self.train, num_parallel=4)

    @parallel
    @step
    def train(self):
        """Each node of the gang works on its own index."""
        self.node_value = self.base + self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = sorted(inp.node_value for inp in inputs)
        self.next(self.end)

    @step
    def end(self):
        assert self.values == [100, 101, 102, 103]
        print(self.values)


if __name__ == "__main__":
    ParallelFlow()
