"""A step that leaves a process behind, holding its stdout open."""

import subprocess

from flowkernel import FlowSpec, step


class DaskStrayFlow(FlowSpec):
    @step
    def start(self):
        self.stray_pid = subprocess.Popen(["sleep", "600"]).pid
        print("left a sleeper behind")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DaskStrayFlow()
