"""Ways a task process can die without a Python exception, and an artifact that won't pickle."""

import ctypes
import os
import signal
import sys
import threading

from robust_flowlib import mark

from flowkernel import FlowSpec, Parameter, current, retry, step


def die(how: str) -> None:
    print("output before the crash", flush=True)
    print("stderr before the crash", file=sys.stderr, flush=True)
    if how == "segv_ctypes":
        ctypes.string_at(0)
    elif how == "segv_kill":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif how == "exit3":
        os._exit(3)
    elif how == "exit202":
        os._exit(202)
    raise AssertionError(f"unknown way to die: {how}")


class CrashFlow(FlowSpec):
    how = Parameter("how", default="exit3")
    #: crash only on attempts below this (with @retry(times=1), 1 = the retry succeeds)
    crash_attempts = Parameter("crash_attempts", default=99)

    @step
    def start(self):
        self.next(self.crash)

    @retry(times=1)
    @step
    def crash(self):
        mark("crash")
        if self.how == "lock":
            self.lock = threading.Lock()
        elif self.how == "lambda":
            self.fn = lambda x: x + 1
        elif current.retry_count < self.crash_attempts:
            die(self.how)
        print("attempt", current.retry_count, "survived")
        self.survivor = current.retry_count
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CrashFlow()
