"""Subprocess orchestration: run a ``flow`` command in its own process group, stream its output.

The shared layer under Runner, the notebook plugin and every deployer. A :class:`CommandProcess`
starts the command with stdout/stderr on pipes; two reader threads collect lines (for
``lines()``, the async ``stream()``, optional per-line callbacks and log files). ``stop()``
interrupts the whole process tree: SIGINT, then SIGTERM, then SIGKILL. Every exit path
(normal, exception, KeyboardInterrupt) goes through ``close()``, which stops what still runs and
removes temporary files.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import IO, Any

import psutil

STREAMS = ("stdout", "stderr")
#: Seconds between SIGINT and SIGTERM (and SIGTERM and SIGKILL) in :meth:`CommandProcess.stop`.
STOP_GRACE = 10.0


class CommandProcess:
    """One command: start it, read its lines as they come, wait, stop, clean up.

    :param argv: the command line.
    :param env: the complete environment (None: inherit).
    :param on_line: called as ``on_line(stream, line)`` for every line, from a reader thread.
    :param log_dir: if given, every line is also appended to ``<log_dir>/<stream>.log``.
    :param temp_files: paths removed by :meth:`close`.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        on_line: Callable[[str, str], None] | None = None,
        log_dir: str | None = None,
        temp_files: Sequence[str] = (),
    ):
        self.argv = list(argv)
        self.env = env
        self.cwd = cwd
        self.on_line = on_line
        self.log_dir = log_dir
        self.temp_files = list(temp_files)
        self.buffers: dict[str, list[str]] = {s: [] for s in STREAMS}
        self._cond = threading.Condition()
        self._open_streams = 0
        self._readers: list[threading.Thread] = []
        self.popen: subprocess.Popen | None = None
        self.stopped = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> CommandProcess:
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # own process group: a Ctrl-C in the caller is ours to relay
        )
        self._open_streams = 2
        for stream in STREAMS:
            reader = threading.Thread(
                target=self._read, args=(stream, getattr(self.popen, stream)), daemon=True
            )
            reader.start()
            self._readers.append(reader)
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    # Metaflow's names (``ExecutingRun.command_obj``)
    @property
    def command(self) -> list[str]:
        return self.argv

    @property
    def process(self) -> subprocess.Popen | None:
        return self.popen

    @property
    def log_files(self) -> dict[str, str]:
        """``{stream: path}`` of the per-stream log files (empty without ``log_dir``)."""
        if not self.log_dir:
            return {}
        return {s: os.path.join(self.log_dir, f"{s}.log") for s in STREAMS}

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the command (and its output) to end; returns the exit code, None on timeout."""
        assert self.popen is not None
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Interrupt the whole tree: SIGINT, then SIGTERM after ``grace``, then SIGKILL.

        The default grace is longer than a controller's own (5 s between SIGTERM and SIGKILL
        of its tasks), so an interrupted run records its end before anything escalates.
        """
        if self.popen is None or self.popen.poll() is not None:
            return
        self.stopped = True
        try:
            tree = [psutil.Process(self.popen.pid)]
            tree += tree[0].children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                break
            if self.wait(grace) is not None:
                break
        for proc in tree:  # whatever survived, wherever it moved (new sessions included)
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.wait(grace)

    def close(self) -> None:
        """Stop anything still running and remove temporary files. Safe to call twice."""
        try:
            self.stop()
        finally:
            for path in self.temp_files:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def __enter__(self) -> CommandProcess:
        return self.start() if self.popen is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- output --------------------------------------------------------------------------------

    def _read(self, stream: str, pipe: IO[bytes]) -> None:
        log = None
        if self.log_dir:
            log = open(os.path.join(self.log_dir, f"{stream}.log"), "ab")  # noqa: SIM115
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if log is not None:
                    log.write(raw)
                    log.flush()
                with self._cond:
                    self.buffers[stream].append(line)
                    self._cond.notify_all()
                if self.on_line is not None:
                    self.on_line(stream, line)
        finally:
            pipe.close()
            if log is not None:
                log.close()
            with self._cond:
                self._open_streams -= 1
                self._cond.notify_all()

    def text(self, stream: str) -> str:
        """Everything read from ``stream`` so far."""
        with self._cond:
            lines = list(self.buffers[stream])
        return "".join(line + "\n" for line in lines)

    def lines(self, stream: str = "stdout", position: int = 0) -> Iterator[str]:
        """Yield lines of ``stream`` as they arrive, from ``position``, until it closes."""
        while True:
            with self._cond:
                while len(self.buffers[stream]) <= position and self._open_streams:
                    self._cond.wait(0.5)
                if len(self.buffers[stream]) <= position:
                    return
                line = self.buffers[stream][position]
            position += 1
            yield line

    async def stream(self, stream: str = "stdout", position: int = 0) -> AsyncIterator[str]:
        """Async version of :meth:`lines` (polls the buffer; never blocks the event loop)."""
        while True:
            with self._cond:
                available = len(self.buffers[stream])
                done = self._open_streams == 0
            if position < available:
                with self._cond:
                    chunk = self.buffers[stream][position:available]
                for line in chunk:
                    yield line
                position = available
            elif done:
                return
            else:
                await asyncio.sleep(0.02)

    def follow(
        self,
        on_line: Callable[[str, str], None],
        until: Callable[[], bool] | None = None,
        seen: dict[str, int] | None = None,
    ) -> None:
        """Call ``on_line(stream, line)`` for every line, in the *calling* thread, as lines arrive.

        Returns when both streams have closed, or as soon as ``until()`` is true. Relaying in the
        caller's thread matters in Jupyter: output written there lands in the caller's cell.

        :param seen: lines already relayed per stream; updated in place, so a later call
            (after an interruption) carries on where this one stopped.
        """
        seen = seen if seen is not None else {}
        for stream in STREAMS:
            seen.setdefault(stream, 0)
        while True:
            with self._cond:
                while not self._has_new(seen) and self._open_streams and not (until and until()):
                    self._cond.wait(0.1)
                fresh = [(s, self.buffers[s][seen[s] :]) for s in STREAMS]
                finished = self._open_streams == 0 or bool(until and until())
            for stream, lines in fresh:
                seen[stream] += len(lines)
                for line in lines:
                    on_line(stream, line)
            if finished and not any(lines for _, lines in fresh):
                return

    def _has_new(self, seen: dict[str, int]) -> bool:
        return any(len(self.buffers[s]) > seen[s] for s in STREAMS)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll ``predicate`` until true (True), the process ends or ``timeout`` (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.returncode is not None:
                return predicate()
            time.sleep(0.01)
        return predicate()


def flow_argv(*args: str) -> list[str]:
    """The command line of ``flow ARGS`` run by this interpreter."""
    return [sys.executable, "-m", "flowkernel.cli", *args]


def echo_line(stream: str, line: str) -> None:
    """An ``on_line`` that relays a child's line to this process's stdout or stderr."""
    out = sys.stdout if stream == "stdout" else sys.stderr
    out.write(line + "\n")
    out.flush()


class AttributeFile:
    """Where a ``flow`` child writes its result as JSON (``--runner-attribute-file``,
    ``--deployer-attribute-file``): ``attributes.json`` in a fresh temporary directory, which
    also holds anything else of the call (its log files). The child writes it atomically, so
    it is complete once it exists.

    :param prefix: the temporary directory's name prefix.
    """

    def __init__(self, prefix: str):
        self.directory = tempfile.mkdtemp(prefix=prefix)
        self.path = os.path.join(self.directory, "attributes.json")

    def written(self) -> bool:
        return os.path.exists(self.path)

    def wait(self, proc: CommandProcess, timeout: float | None) -> dict[str, Any] | None:
        """Wait until ``proc`` writes the file, ends or ``timeout`` passes (None: no limit);
        returns what it wrote, or None when it wrote nothing."""
        proc.wait_for(self.written, float("inf") if timeout is None else timeout)
        if not self.written():
            return None
        with open(self.path) as fh:
            return json.load(fh)

    def remove(self) -> None:
        """Remove the directory and everything in it."""
        shutil.rmtree(self.directory, ignore_errors=True)
