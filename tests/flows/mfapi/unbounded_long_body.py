"""Not allowed: an unbounded foreach whose body is two steps before the join."""

from flowkernel import FlowSpec, step
from flowkernel.unbounded_foreach import UnboundedForeachInput


class Two(UnboundedForeachInput):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        return index


class UnboundedLongBodyFlow(FlowSpec):
    @step
    def start(self):
        self.items = Two()
        self.next(self.first, foreach="items")

    @step
    def first(self):
        self.next(self.second)

    @step
    def second(self):
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UnboundedLongBodyFlow()
