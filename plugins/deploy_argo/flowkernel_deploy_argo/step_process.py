"""The process that runs a deployed task's step, and its output.

The task process (``flow argo-workflows task``) has loaded the flow, the kernel and the graph
already, so the step runs in a **forked** child of it: no second interpreter to start and no
second import of everything (half of a task's fixed cost otherwise). Where there is no
``fork()``, the child is a fresh ``flow step`` process instead. Either way the child's
stdout/stderr are pipes whose lines go to the log sinks: the task's stored logs, and this
process's own output, which is what Argo shows for the pod.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from flowkernel.engine import forkchild

CAN_FORK = hasattr(os, "fork")


class Child:
    """A started step: its pid, the read ends of its stdout/stderr, and how to wait for it."""

    def __init__(self, pid: int, stdout: Any, stderr: Any, wait: Callable[[], int]):
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.wait = wait


def fork(body: Callable[[], int]) -> Child:
    """Run ``body()`` (returns an exit code) in a forked child with its output on pipes (the
    child's set-up and exit: :mod:`flowkernel.engine.forkchild`; it stays in this process's
    group, which is the pod's)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        forkchild.run(body, out_w, err_w, group=None, close=(out_r, err_r))
    os.close(out_w)
    os.close(err_w)

    def wait() -> int:
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    return Child(pid, os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"), wait)


def spawn(argv: list[str]) -> Child:
    """Run ``argv`` (a ``flow step`` command) with its output on pipes."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    return Child(proc.pid, proc.stdout, proc.stderr, proc.wait)


def run_step(
    child: Child, sinks: list[Any], run: Any, step: str, task_id: str, attempt: int
) -> int:
    """Feed every line ``child`` prints to ``sinks`` until it exits; its exit code."""
    from flowkernel.specs import LogLine

    lock = threading.Lock()

    def pump(stream: str, pipe: Any) -> None:
        for raw in iter(pipe.readline, b""):
            text = raw.decode("utf-8", "replace")
            line = LogLine(
                run=run,
                step=step,
                task_id=task_id,
                attempt=attempt,
                stream=stream,
                text=text.rstrip("\n"),
                timestamp=time.time(),
                pid=child.pid,
                newline=text.endswith("\n"),
            )
            with lock:
                for sink in sinks:
                    sink.emit(line)
        pipe.close()

    readers = [
        threading.Thread(target=pump, args=(name, pipe), daemon=True)
        for name, pipe in (("stdout", child.stdout), ("stderr", child.stderr))
    ]
    for reader in readers:
        reader.start()
    code = child.wait()
    for reader in readers:
        reader.join()
    for sink in sinks:
        sink.close()
    return code
