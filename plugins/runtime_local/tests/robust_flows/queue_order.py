"""A foreach of quick tasks that print a line each, for what the console and the records say
when the fork server queues them: item ``flaky`` fails its first attempt (@retry runs it
again), item ``vanish`` ends its process with ``os._exit(code)`` (no record; ``--code``,
default 0) or, with ``--how sys.exit``, raises ``SystemExit(code)``."""

import os
import sys

from robust_flowlib import mark

from flowkernel import FlowSpec, Parameter, current, retry, step


class QueueOrderFlow(FlowSpec):
    width = Parameter("width", default=4)
    flaky = Parameter("flaky", default=-1)
    vanish = Parameter("vanish", default=-1)
    code = Parameter("code", default=0)
    how = Parameter("how", default="os._exit")

    @step
    def start(self):
        self.items = list(range(self.width))
        self.next(self.work, foreach="items")

    @retry(times=1)
    @step
    def work(self):
        mark("work")
        print(f"item {self.input} attempt {current.retry_count}")
        if self.input == self.flaky and current.retry_count == 0:
            raise RuntimeError(f"item {self.input} fails once")
        if self.input == self.vanish and self.how == "sys.exit":
            sys.exit(self.code)
        if self.input == self.vanish:
            os._exit(self.code)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    QueueOrderFlow()
