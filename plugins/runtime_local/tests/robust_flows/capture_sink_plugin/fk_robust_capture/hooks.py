"""A log sink that appends every line it gets to ``ROBUST_CAPTURE_FILE`` as JSON, at once.

``ROBUST_CAPTURE_FAIL_AFTER=N``: emit raises after N lines; ``ROBUST_CAPTURE_FAIL_CLOSE=1``:
close raises.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from flowkernel import hookimpl


class CaptureSink:
    def __init__(self, path: str, fail_after: int | None, fail_close: bool):
        self.fh = open(path, "a", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        self.fail_after = fail_after
        self.fail_close = fail_close
        self.count = 0

    def emit(self, line: Any) -> None:
        if self.fail_after is not None and self.count >= self.fail_after:
            raise RuntimeError("the capture sink broke")
        self.count += 1
        entry = {
            "run": line.run.run_id,
            "step": line.step,
            "task": line.task_id,
            "attempt": line.attempt,
            "stream": line.stream,
            "text": line.text,
            "received": time.time(),
        }
        self.fh.write(json.dumps(entry) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()
        if self.fail_close:
            raise RuntimeError("the capture sink cannot close")


@hookimpl
def flowkernel_log_sinks(run: Any) -> list[Any]:
    path = os.environ.get("ROBUST_CAPTURE_FILE")
    if not path:
        return []
    fail_after = os.environ.get("ROBUST_CAPTURE_FAIL_AFTER")
    fail_close = os.environ.get("ROBUST_CAPTURE_FAIL_CLOSE") == "1"
    return [CaptureSink(path, int(fail_after) if fail_after else None, fail_close)]
