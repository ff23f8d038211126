"""@retry and @catch: a flaky step that succeeds on its second attempt, and a failing step
whose exception is caught so the run still completes."""

from flowkernel import FlowSpec, catch, current, retry, step


class RetryCatchFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.flaky)

    @retry(times=2)
    @step
    def flaky(self):
        """Fails on the first attempt; retries are immediate when running locally."""
        print("attempt", current.retry_count)
        if current.retry_count == 0:
            raise ConnectionError("the service was not ready")
        self.attempts_needed = current.retry_count + 1
        self.next(self.fragile)

    @catch(var="failure")
    @step
    def fragile(self):
        """Always fails; @catch stores the exception in `failure` instead of failing the run."""
        self.partial = "set before the failure"
        rows = [1, 2, "oops"]
        self.total = sum(rows)  # raises TypeError
        self.next(self.end)

    @step
    def end(self):
        print("flaky needed", self.attempts_needed, "attempts")
        print("fragile failed with:", self.failure.type, "-", self.failure.exception)


if __name__ == "__main__":
    RetryCatchFlow()
