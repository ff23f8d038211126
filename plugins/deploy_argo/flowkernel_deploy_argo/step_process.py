"""The process that runs a deployed task's step, and its output.

The task process (``flow argo-workflows task``) has loaded the flow, the kernel and the graph
already, so the step runs in a **forked** child of it: no second interpreter to start and no
second import of everything (half of a task's fixed cost otherwise). Where there is no
``fork()``, the child is a fresh ``flow step`` process instead. Either way the child's
stdout/stderr are pipes whose lines go to the log sinks: the task's stored logs, and this
process's own output, which is what Argo shows for the pod.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

CAN_FORK = hasattr(os, "fork")


class Child:
    """A started step: its pid, the read ends of its stdout/stderr, and how to wait for it."""

    def __init__(self, pid: int, stdout: Any, stderr: Any, wait: Callable[[], int]):
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.wait = wait


def fork(body: Callable[[], int]) -> Child:
    """Run ``body()`` (returns an exit code) in a forked child with its output on pipes."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (null, out_r, out_w, err_r, err_w):
                os.close(fd)
            sys.stdout = _line_stream(1)
            sys.stderr = _line_stream(2)
            code = body()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
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


def _line_stream(fd: int) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True)


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
