"""A foreach beside a @parallel gang of three with ``--max-workers 2``: each gang node waits
for the other two (a gang runs whole, never partly behind queued foreach tasks)."""

import os
import time

from robust_flowlib import mark, markers

from flowkernel import FlowSpec, current, parallel, step


class GangQueueFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.spread, self.gang)

    @step
    def spread(self):
        self.items = list(range(8))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        mark("work")
        time.sleep(0.05)
        self.next(self.join_work)

    @step
    def join_work(self, inputs):
        self.next(self.join)

    @step
    def gang(self):
        self.next(self.train, num_parallel=3)

    @parallel
    @step
    def train(self):
        mark("train")
        here = os.path.join(markers(), "barrier")
        os.makedirs(here, exist_ok=True)
        open(os.path.join(here, str(current.parallel.node_index)), "w").close()
        deadline = time.monotonic() + 30
        while len(os.listdir(here)) < 3:  # every node of the gang is running
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(os.listdir(here))} of 3 gang nodes ever ran")
            time.sleep(0.01)
        self.next(self.join_train)

    @step
    def join_train(self, inputs):
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    GangQueueFlow()
