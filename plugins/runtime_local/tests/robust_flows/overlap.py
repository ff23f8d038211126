"""A foreach whose tasks record when they ran (for --max-workers) and a width parameter
(for --max-num-splits)."""

import time

from robust_flowlib import mark

from flowkernel import FlowSpec, Parameter, step


class OverlapFlow(FlowSpec):
    width = Parameter("width", default=6)
    nap = Parameter("nap", default=0.4)

    @step
    def start(self):
        self.items = list(range(self.width))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        mark("work")
        self.t0 = time.time()
        time.sleep(self.nap)
        self.t1 = time.time()
        self.next(self.join)

    @step
    def join(self, inputs):
        self.spans = [(i.t0, i.t1) for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    OverlapFlow()
