"""``--isolation pool``: a few long-lived processes, forked once from the warm controller, each
running many task attempts one after the other.

**The trade-off** (opt-in; the default, ``fork``, gives every attempt a fresh process as
Metaflow does): a pool process is reused, so what a task leaves in the process is there for the
next task it runs: module globals and class attributes it changed, caches, modules it imported,
threads it started, files it left open. ``os.environ``, the working directory, the
``current`` object and signal handlers are restored after each task; nothing else is. Processes
a task started in the background are not stopped when the task ends (they are when the run
ends, or when the pool process is stopped). In exchange a task costs no ``fork()``, no page
faults of a fresh process and no process exit: the per-task overhead is the executor's own.
A task that kills its process (``os._exit``, a crash, a ``@timeout``, a failing run stopping
everything) ends its attempt as in the default mode; the next attempt gets a fresh process.

Protocol: the controller writes one request per attempt to the process's request pipe (a
length-prefixed pickle of the :class:`~flowkernel.engine.executor.TaskSpec` and its inputs).
The process runs it with its stdout/stderr on two pipes that live as long as the process,
flushes them, then writes the exit code as one line to its result pipe. Everything the task
printed is in the output pipes before its result is, so the controller, having read a result,
drains the output pipes and knows every line belongs to the attempt that just ended.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable
from typing import Any

from flowkernel_runtime_local import workers

_LEN = struct.Struct("<Q")


class PoolProcess:
    """One process of the pool, as the controller sees it."""

    def __init__(self, pid: int, requests: int, results: int, out_fd: int, err_fd: int):
        self.pid = pid
        self.requests = requests  #: write end: one request per attempt
        self.results = results  #: read end (non-blocking): one exit code line per attempt
        self.out_fd = out_fd
        self.err_fd = err_fd
        self.busy = False
        #: the results pipe is registered with the controller's poller
        self.results_watched = True
        self._pending = b""

    def submit(self, request: Any) -> None:
        """Hand the process its next attempt (it must be idle)."""
        data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_LEN.pack(len(data)) + data)
        while view:
            view = view[os.write(self.requests, view) :]
        self.busy = True

    def read_result(self) -> int | None:
        """The exit code of the attempt that ended, or ``None`` if none has yet.

        :raises EOFError: the process is gone.
        """
        try:
            chunk = os.read(self.results, 64)
        except BlockingIOError:
            return None
        if not chunk:
            raise EOFError(self.pid)
        self._pending += chunk
        if b"\n" not in self._pending:
            return None
        line, self._pending = self._pending.split(b"\n", 1)
        self.busy = False
        return int(line)

    def close_pipes(self) -> None:
        for fd in (self.requests, self.results, self.out_fd, self.err_fd):
            workers.private_fds.discard(fd)
            try:
                os.close(fd)
            except OSError:
                pass


def start(run: Callable[[Any], int], controller_pid: int) -> PoolProcess:
    """Fork one pool process that calls ``run(request)`` for each request it receives (with
    the controller's :data:`~flowkernel_runtime_local.workers.private_fds` closed; this
    process's controller-side pipes join them)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    req_r, req_w = os.pipe()
    res_r, res_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    gc.freeze()  # as for a forked attempt: the process's collections leave these pages shared
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the pool process
        code = 1
        try:
            workers.child_setup(controller_pid, out_w, err_w, close=(req_w, res_r, out_r, err_r))
            _serve(run, req_r, res_w)
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    for fd in (req_r, res_w, out_w, err_w):
        os.close(fd)
    os.set_blocking(res_r, False)
    workers.private_fds.update((req_w, res_r, out_r, err_r))
    return PoolProcess(pid, req_w, res_r, out_r, err_r)


def _read_exactly(fd: int, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _serve(run: Callable[[Any], int], requests: int, results: int) -> None:  # pragma: no cover
    """Run requests until the controller closes the request pipe."""
    while (head := _read_exactly(requests, _LEN.size)) is not None:
        body = _read_exactly(requests, _LEN.unpack(head)[0])
        if body is None:
            return
        environ, cwd = dict(os.environ), os.getcwd()
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGALRM, signal.SIGINT)}
        code = 1
        try:
            code = run(pickle.loads(body))
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        os.write(results, b"%d\n" % code)
