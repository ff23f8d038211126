"""Several tasks printing on both streams; `start` waits until the test saw its first line."""

import os
import sys

from robust_flowlib import wait_for_marker

from flowkernel import FlowSpec, current, step


class SinkFlow(FlowSpec):
    @step
    def start(self):
        print("start: waiting for the sink", flush=True)
        if os.environ.get("ROBUST_WAIT") == "1":
            wait_for_marker(f"release.{current.run_id}")
        print("start: released")
        self.items = ["a", "b", "c"]
        self.next(self.work, foreach="items")

    @step
    def work(self):
        for i in range(3):
            print(f"work {self.input} line {i} ✓")
        print(f"work {self.input} on stderr", file=sys.stderr)
        self.next(self.join)

    @step
    def join(self, inputs):
        print("joined", len(inputs))
        self.next(self.end)

    @step
    def end(self):
        print("the end")


if __name__ == "__main__":
    SinkFlow()
