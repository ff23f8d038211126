"""A step that starts a child and waits to be killed on its first attempt, and finishes at once
on the next (the test kills the process that forked it)."""

import os
import subprocess
import time

from robust_flowlib import mark, touch

from flowkernel import FlowSpec, current, step


class ServerDeathFlow(FlowSpec):
    @step
    def start(self):
        mark("start")
        if current.retry_count == 0:
            child = subprocess.Popen(["sleep", "67"])
            touch("child_pid", str(child.pid))
            touch("task_pid", str(os.getpid()))
            time.sleep(60)
        else:
            touch("retry_parent", str(os.getppid()))
        self.next(self.end)

    @step
    def end(self):
        mark("end")
        print("end ran")


if __name__ == "__main__":
    ServerDeathFlow()
