"""Fails twice in start; meant to be run with --with retry:times=2."""

import os

from flowkernel import FlowSpec, current, retry, step


class FlakyFlow(FlowSpec):
    @step
    def start(self):
        if current.retry_count < 2:
            raise RuntimeError("flaky")
        self.attempts = current.retry_count
        self.env_a = os.environ.get("A")
        self.next(self.end)

    @retry(times=0)
    @step
    def end(self):
        self.end_attempt = current.retry_count


if __name__ == "__main__":
    FlakyFlow()
