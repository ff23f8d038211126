"""A foreach whose tasks record the descriptors they hold (``/proc/self/fd``): what user code
inherits from the runtime."""

import os

from flowkernel import FlowSpec, step


def held_fds():
    held = []
    for name in os.listdir("/proc/self/fd"):
        try:
            held.append((int(name), os.readlink(f"/proc/self/fd/{name}")))
        except OSError:
            continue  # the listing's own descriptor, closed already
    return sorted(held)


class FdsFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(8))
        self.next(self.body, foreach="items")

    @step
    def body(self):
        self.fds = held_fds()
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        self.fds = held_fds()


if __name__ == "__main__":
    FdsFlow()
