"""@retry, @catch, a large (multipart) artifact, and a step that fails until FIX_IT is set."""

import os

from flowkernel import FlowSpec, catch, current, retry, step


class RetryCatchFlow(FlowSpec):
    @retry(times=2)
    @step
    def start(self):
        if current.retry_count < 1:
            raise RuntimeError("first attempt fails")
        self.tries = current.retry_count
        self.big = bytes(range(256)) * (80 * 1024)  # 20 MB: uploaded in parts
        self.next(self.risky)

    @catch(var="caught")
    @step
    def risky(self):
        raise ValueError("boom")
        self.next(self.fragile)

    @step
    def fragile(self):
        if not os.environ.get("FIX_IT"):
            raise RuntimeError("not fixed yet")
        print("fixed")
        self.next(self.end)

    @step
    def end(self):
        assert len(self.big) == 20 * 1024 * 1024
        self.done = True


if __name__ == "__main__":
    RetryCatchFlow()
