"""A foreach whose tasks record how many ran at once (for --max-workers) and a width parameter
(for --max-num-splits)."""

from robust_flowlib import mark, run_alongside_others

from flowkernel import FlowSpec, Parameter, step


class OverlapFlow(FlowSpec):
    width = Parameter("width", default=6)

    @step
    def start(self):
        self.items = list(range(self.width))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        mark("work")
        self.together = run_alongside_others("work", self.width)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.together = [i.together for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    OverlapFlow()
