"""A wide foreach of short tasks (the controller is killed in the middle of it)."""

import time

from robust_flowlib import mark

from flowkernel import FlowSpec, Parameter, step


class BigForeachFlow(FlowSpec):
    n = Parameter("n", default=200)
    nap = Parameter("nap", default=0.05)

    @step
    def start(self):
        self.items = list(range(self.n))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        mark("work")
        time.sleep(self.nap)
        self.square = self.input * self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        mark("join")
        self.total = sum(i.square for i in inputs)
        self.count = len(inputs)
        self.next(self.end)

    @step
    def end(self):
        mark("end")


if __name__ == "__main__":
    BigForeachFlow()
