"""Steps that leave processes behind, resist being stopped, or print a lot."""

import os
import signal
import subprocess
import sys
import time

from robust_flowlib import mark, touch

from flowkernel import FlowSpec, Parameter, step


class SurvivorFlow(FlowSpec):
    #: daemon (forgets a `sleep 67`), setsid (a deliberate daemon), hang (a child, then waits),
    #: stubborn (ignores SIGTERM/SIGINT, has a child), chatty (many lines), long_line
    mode = Parameter("mode", default="daemon")
    size = Parameter("size", default=0, help="long_line: bytes in one line without newline")

    @step
    def start(self):
        mark("start")
        if self.mode in ("daemon", "setsid", "hang", "stubborn"):
            if self.mode == "stubborn":
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            child = subprocess.Popen(["sleep", "67"], start_new_session=self.mode == "setsid")
            touch("child_pid", str(child.pid))
            touch("task_pid", str(os.getpid()))
            if self.mode in ("hang", "stubborn"):
                time.sleep(60)
        elif self.mode == "chatty":
            for i in range(300):
                print(f"line {i}", flush=True)
                time.sleep(0.01)
        elif self.mode == "long_line":
            chunk = b"x" * (1 << 20)
            for _ in range(self.size // len(chunk)):
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.write(b"\nafter the long line\n")
            sys.stdout.flush()
        self.next(self.end)

    @step
    def end(self):
        mark("end")
        print("end ran")


if __name__ == "__main__":
    SurvivorFlow()
