"""Run with ``--isolation pool``: what persists in a reused task process and what does not."""

import os
import sys

from flowkernel import FlowSpec, Parameter, current, retry, step

#: grows in a pool process that runs several tasks (module globals persist there)
SEEN = []


class PoolFlow(FlowSpec):
    crash = Parameter("crash", default=-1, type=int, help="the body task that kills its process")

    @step
    def start(self):
        self.items = list(range(6))
        self.next(self.body, foreach="items")

    @retry(times=1)
    @step
    def body(self):
        self.i = self.input
        SEEN.append(self.i)
        self.seen = list(SEEN)
        self.pid = os.getpid()
        self.leaked = os.environ.get("POOL_FLOW_LEAK")  # set by the task before, if any
        os.environ["POOL_FLOW_LEAK"] = str(self.input)
        print(f"task {self.input} says hello")
        print(f"task {self.input} complains", file=sys.stderr)
        if self.input == self.crash and current.retry_count == 0:
            print("about to die", flush=True)
            os._exit(3)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.i for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        print(f"total {self.total}")


if __name__ == "__main__":
    PoolFlow()
