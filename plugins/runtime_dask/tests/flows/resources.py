"""A step that needs a GPU: on the test cluster only worker w0 declares one."""

import os

from flowkernel import FlowSpec, resources, step


class DaskResourcesFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.train)

    @resources(gpu=1, memory=1024)
    @step
    def train(self):
        self.worker_pid = os.getppid()
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DaskResourcesFlow()
