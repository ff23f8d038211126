"""Output for the log tests: exact bytes, a live step and a retried step."""

import sys

from robust_flowlib import mark, wait_for_marker

from flowkernel import FlowSpec, current, retry, step

#: What `start` writes to stdout, byte for byte (text lines, raw non-UTF-8 bytes, a 200 KB line
#: that arrives in several reads, blank and whitespace-only lines).
STDOUT_BYTES = (
    "héllo wörld ✓ 🚀 — ünïcödé\n".encode()
    + b"\ttabbed, trailing spaces   \n"
    + b"\n"
    + b"raw \xff\xfe not utf-8\n"
    + b"[1234/start/1] looks like a prefix but is user output\n"
    + b"x" * 200_000
    + b"\n"
    + "終わり\n".encode()
)
STDERR_BYTES = "warning: ⚠ on stderr\n".encode() + b"second stderr line\n"


class LogsFlow(FlowSpec):
    @step
    def start(self):
        mark("start")
        sys.stdout.flush()
        sys.stdout.buffer.write(STDOUT_BYTES)
        sys.stdout.buffer.flush()
        sys.stderr.buffer.write(STDERR_BYTES)
        sys.stderr.buffer.flush()
        self.next(self.live)

    @step
    def live(self):
        print("live line 1")  # no flush: task output is line-buffered however it runs
        wait_for_marker(f"release.{current.run_id}")
        print("live line 2", flush=True)
        self.next(self.flaky)

    @retry(times=1)
    @step
    def flaky(self):
        print("attempt", current.retry_count)
        if current.retry_count == 0:
            raise ConnectionError("not ready on attempt 0")
        self.next(self.end)

    @step
    def end(self):
        sys.stdout.write("first\nthe end, without a newline")
        sys.stdout.flush()


if __name__ == "__main__":
    LogsFlow()
