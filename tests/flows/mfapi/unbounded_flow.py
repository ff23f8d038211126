"""A foreach over an UnboundedForeachInput: the width is found when the split ends."""

from flowkernel import FlowSpec, Parameter, step
from flowkernel.unbounded_foreach import UnboundedForeachInput


class Shards(UnboundedForeachInput):
    """Only indexing: the width is where indexing stops."""

    def __init__(self, count):
        self.count = count

    def __getitem__(self, index):
        if index >= self.count:
            raise IndexError(index)
        return f"shard-{index}"


class UnboundedFlow(FlowSpec):
    count = Parameter("count", default=3)

    @step
    def start(self):
        self.shards = Shards(self.count)
        self.next(self.work, foreach="shards")

    @step
    def work(self):
        self.done = (self.index, self.input)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.results = [i.done for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UnboundedFlow()
