"""Two branches that hold both slots of ``--max-workers 2`` until the test's ``release``
marker, and a third, quick, with a 1-second @timeout that waits queued behind them."""

from robust_flowlib import mark, wait_for_marker

from flowkernel import FlowSpec, step, timeout


class TimeoutQueueFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.hold_a, self.hold_b, self.quick)

    @step
    def hold_a(self):
        mark("hold_a")
        wait_for_marker("release", timeout=60)
        self.next(self.join)

    @step
    def hold_b(self):
        mark("hold_b")
        wait_for_marker("release", timeout=60)
        self.next(self.join)

    @timeout(seconds=1)
    @step
    def quick(self):
        mark("quick")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    TimeoutQueueFlow()
