"""A foreach whose tasks wait for the test's ``release`` marker, then record how many ran at
once (with ``--max-workers N``: N run, the fork server queues what the dispatcher launched
past them); item ``fail`` raises at once instead (until ``ROBUST_FIXED=1``)."""

from robust_flowlib import fixed, mark, run_alongside_others, wait_for_marker

from flowkernel import FlowSpec, Parameter, step


class QueueFlow(FlowSpec):
    width = Parameter("width", default=6)
    fail = Parameter("fail", default=-1)

    @step
    def start(self):
        self.items = list(range(self.width))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        mark("work")
        if self.input == self.fail and not fixed():
            raise RuntimeError(f"item {self.input} is broken")
        wait_for_marker("release", timeout=60)
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
    QueueFlow()
