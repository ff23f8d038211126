"""Log sinks: where every line of every task goes, live.

A sink has ``emit(line: LogLine)`` and ``close()``. The kernel ships two, registered by its
built-in plugin: :class:`ConsoleSink` (each line on the controller's stdout, prefixed with
``[run/step/task]``) and the per-attempt logs in the datastore that ``flow logs`` and
``task.stdout`` read: :class:`TaskLogFiles` appends to files under a local root,
:class:`TaskLogUploads` puts each attempt's log to a remote root every few seconds and whole when
the attempt ends.
"""

from __future__ import annotations

import os
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flowkernel.specs import LogLine, RunInfo


class LogSink(Protocol):
    def emit(self, line: LogLine) -> None:
        """Receive one line (called in the controller, in the order lines were read)."""

    def close(self) -> None:
        """The run is over: release resources."""


def encode(text: str) -> bytes:
    """Back to the exact bytes the task wrote (lines are decoded with surrogateescape)."""
    return text.encode("utf-8", "surrogateescape")


class ConsoleSink:
    """Echo task output on the controller's stdout: ``HH:MM:SS.mmm [run/step/task] line``.

    ``emit`` raises BrokenPipeError when nobody reads the console any more; a runtime then
    drops the sinks marked ``console`` and carries on.
    """

    console = True

    def __init__(self, stream: IO[bytes] | None = None):
        self.stream = stream or getattr(sys.stdout, "buffer", None) or _TextAdapter(sys.stdout)

    def emit(self, line: LogLine) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(line.timestamp))
        millis = int((line.timestamp % 1) * 1000)
        prefix = f"{stamp}.{millis:03d} [{line.run.run_id}/{line.step}/{line.task_id}] "
        self.stream.write(prefix.encode() + encode(line.text) + b"\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class _TextAdapter:
    """Bytes-to-text shim for a replaced ``sys.stdout`` without ``.buffer`` (pytest capture)."""

    def __init__(self, text: IO[str]):
        self.text = text

    def write(self, data: bytes) -> None:
        self.text.write(data.decode("utf-8", "replace"))

    def flush(self) -> None:
        self.text.flush()


_STAMP = struct.Struct("<d")

#: The last line of a stored log cut at ``--max-log-size`` (Metaflow's words).
TRUNCATED = "[TRUNCATED - MAXIMUM LOG FILE SIZE REACHED]"


class _SizeCap:
    """``--max-log-size``: how much of each stream of each attempt a stored log keeps."""

    def __init__(self, max_mb: int):
        self.limit = max_mb * 1024 * 1024
        self._used: dict[tuple[str, str, int, str], int] = {}  # -1: cut already

    def admit(self, key: tuple[str, str, int, str], data: bytes) -> bytes | None:
        """What to store of ``data``: all of it, the truncation line once, then nothing."""
        used = self._used.get(key, 0)
        if used < 0:
            return None
        if used + len(data) <= self.limit:
            self._used[key] = used + len(data)
            return data
        self._used[key] = -1
        return TRUNCATED.encode() + b"\n"

    def forget(self, key: tuple[str, str, int, str]) -> None:
        self._used.pop(key, None)


class TaskLogFiles:
    """Append each line to ``<task dir>/<attempt>.<stream>.log`` as it arrives (local roots),
    and the time it arrived to ``<attempt>.<stream>.times`` (one little-endian float64 per
    line: what ``Task.loglines`` reads).

    Keeps at most ``max_open`` files open (least recently used closed first).
    """

    def __init__(self, run: RunInfo, max_open: int = 64):
        self.base = os.path.join(run.datastore_root, run.flow_name, run.run_id)
        self.max_open = max_open
        self.cap = _SizeCap(run.max_log_size)
        self._files: OrderedDict[tuple[str, str, int, str], int] = OrderedDict()

    def _fd(self, key: tuple[str, str, int, str]) -> int:
        fd = self._files.get(key)
        if fd is not None:
            self._files.move_to_end(key)
            return fd
        step, task_id, attempt, stream = key
        suffix = "times" if stream.endswith(".times") else "log"
        path = os.path.join(self.base, step, task_id, f"{attempt}.{stream.split('.')[0]}.{suffix}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, flags, 0o644)
        self._files[key] = fd
        if len(self._files) > self.max_open:
            os.close(self._files.popitem(last=False)[1])
        return fd

    def emit(self, line: LogLine) -> None:
        key = (line.step, line.task_id, line.attempt, line.stream)
        data = self.cap.admit(key, encode(line.text) + (b"\n" if line.newline else b""))
        if data is None:
            return
        fd = self._fd(key)
        os.write(fd, data)
        times = self._fd((line.step, line.task_id, line.attempt, line.stream + ".times"))
        os.write(times, _STAMP.pack(line.timestamp))

    def close(self) -> None:
        while self._files:
            os.close(self._files.popitem()[1])


class TaskLogUploads:
    """Keep each attempt's log in memory and put it whole to the store (a remote root): at most
    every ``interval`` seconds while lines arrive, and once more when the attempt finishes
    (:func:`attempt_finished`) or the run ends. ``flow logs`` elsewhere sees a running task's
    output with at most ``interval`` seconds of delay while it prints."""

    def __init__(self, run: RunInfo, interval: float = 2.0):
        from flowkernel.datastore import FlowStore

        self.run = run
        self.store = FlowStore(run.datastore_root, run.flow_name)
        self.interval = interval
        self._logs: dict[tuple[str, str, int, str], bytearray] = {}
        self._dirty: set[tuple[str, str, int, str]] = set()
        self._flushed_at = time.monotonic()
        self.cap = _SizeCap(run.max_log_size)
        _UPLOADS[(run.flow_name, run.run_id)] = self

    def emit(self, line: LogLine) -> None:
        key = (line.step, line.task_id, line.attempt, line.stream)
        data = self.cap.admit(key, encode(line.text) + (b"\n" if line.newline else b""))
        if data is None:
            return
        buf = self._logs.get(key)
        if buf is None:
            buf = self._logs[key] = bytearray()
        buf += data
        self._dirty.add(key)
        if time.monotonic() - self._flushed_at >= self.interval:
            self.flush()

    def flush(self, keys: Iterable[tuple[str, str, int, str]] | None = None) -> None:
        for key in list(self._dirty if keys is None else keys):
            if key in self._dirty:
                self._dirty.discard(key)
                step, task_id, attempt, stream = key
                log_key = self.store.log_key(self.run.run_id, step, task_id, attempt, stream)
                self.store.backend.put(log_key, bytes(self._logs[key]), durable=False)
        if keys is None:
            self._flushed_at = time.monotonic()

    def attempt_finished(self, step: str, task_id: str, attempt: int) -> None:
        """Put the attempt's logs whole and forget them (memory stays flat over a run)."""
        keys = [(step, task_id, attempt, s) for s in ("stdout", "stderr")]
        self.flush(keys)
        for key in keys:
            self._logs.pop(key, None)
            self.cap.forget(key)

    def close(self) -> None:
        _UPLOADS.pop((self.run.flow_name, self.run.run_id), None)
        self.flush()


#: The live upload sinks by (flow, run id): the task-finished hook flushes an attempt's logs.
_UPLOADS: dict[tuple[str, str], TaskLogUploads] = {}


def attempt_finished(run: RunInfo, step: str, task_id: str, attempt: int) -> None:
    """An attempt of ``run`` ended: its logs reach a remote store completely now."""
    sink = _UPLOADS.get((run.flow_name, run.run_id))
    if sink is not None:
        sink.attempt_finished(step, task_id, attempt)


def abnormal_end_line(returncode: int | None, stopped_by_runtime: bool = False) -> str | None:
    """The line a runtime appends to a task's own stderr log when its process died of a signal
    (None for a normal exit: a Python failure has its traceback there already).

    :param stopped_by_runtime: the runtime itself signalled the task (fail-fast, a timeout).
    """
    import signal

    if returncode is None or returncode >= 0:
        return None
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if -returncode == signal.SIGSEGV:
        return f"The task process died of a segmentation fault ({name})."
    if stopped_by_runtime:
        return f"The task process was stopped by the runtime ({name})."
    return f"The task process was killed by {name}."
