"""One branch closes its stdout/stderr and hangs; the other fails. The failure must not wait
for the hanging task to exit."""

import os
import time

from robust_flowlib import mark, touch, wait_for_marker

from flowkernel import FlowSpec, current, step


class ClosedOutputFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.closer, self.boom)

    @step
    def closer(self):
        mark("closer")
        os.close(1)
        os.close(2)
        touch(f"ready.closer.{current.run_id}")
        time.sleep(30)
        self.next(self.join)

    @step
    def boom(self):
        wait_for_marker(f"ready.closer.{current.run_id}")
        time.sleep(0.3)  # not synchronisation: lets the controller see the closer's EOF first
        if current.run_id:
            raise RuntimeError("boom")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ClosedOutputFlow()
