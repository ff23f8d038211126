"""A foreach whose item 0 fails: with --max-workers 1 no later item may start."""

from robust_flowlib import mark

from flowkernel import FlowSpec, step


class FailFastFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(5))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        mark("work")
        if self.input == 0:
            raise RuntimeError("item 0 is broken")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FailFastFlow()
