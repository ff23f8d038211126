"""A recursive switch that a foreach fans out to: each item goes round ``limit`` times."""

from flowkernel import FlowSpec, step


class LoopAfterForeachFlow(FlowSpec):
    @step
    def start(self):
        self.limits = [2, 1, 3]
        self.next(self.count, foreach="limits")

    @step
    def count(self):
        self.rounds = getattr(self, "rounds", 0) + 1
        self.seen = (self.input, self.index)
        self.state = "again" if self.rounds < self.input else "done"
        self.next({"again": self.count, "done": self.collect}, condition="state")

    @step
    def collect(self):
        self.next(self.join)

    @step
    def join(self, inputs):
        self.rounds = [inp.rounds for inp in inputs]
        self.next(self.end)

    @step
    def end(self):
        assert self.rounds == [2, 1, 3]
