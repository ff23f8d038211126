"""@retry, @catch and @timeout on the cluster. A step fails its first attempt (retried), one
raises (caught), one outlives its @timeout (caught too)."""

import time

from flowkernel import FlowSpec, catch, current, retry, step, timeout


class DaskDecoratedFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.flaky)

    @retry(times=2)
    @step
    def flaky(self):
        print(f"flaky attempt {current.retry_count}")
        if current.retry_count < 1:
            raise RuntimeError("failing the first attempt on purpose")
        self.flaky_attempt = current.retry_count
        self.next(self.broken)

    @catch(var="broken_error")
    @step
    def broken(self):
        raise ValueError("always broken")
        self.next(self.slow)

    @catch(var="timeout_error")
    @timeout(seconds=1)
    @step
    def slow(self):
        time.sleep(30)
        self.next(self.end)

    @step
    def end(self):
        self.caught = (self.broken_error.type, self.timeout_error.type)


if __name__ == "__main__":
    DaskDecoratedFlow()
