"""Worker processes: start one task attempt (fork or spawn), read its pipes, stop its tree."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import attrs
import psutil

_PR_SET_PDEATHSIG = 1
_libc: Any = None


def _die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when the controller dies."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def load_libc() -> None:
    """Load libc once in the controller (children reuse it after fork)."""
    global _libc
    if sys.platform.startswith("linux") and _libc is None:
        name = ctypes.util.find_library("c") or "libc.so.6"
        try:
            _libc = ctypes.CDLL(name, use_errno=True)
        except OSError:
            _libc = None


@attrs.define(eq=False)
class Worker:
    """One running task attempt and its two output pipes."""

    pid: int
    step: str
    task_id: str
    attempt: int
    job: Any  #: the dispatcher's Attempt this process runs
    fds: dict[int, str]  #: open read ends -> "stdout" / "stderr"
    started_at: float
    deadline: float | None = None
    popen: subprocess.Popen | None = None
    partial: dict[str, bytes] = attrs.field(factory=lambda: {"stdout": b"", "stderr": b""})
    returncode: int | None = None
    killed: bool = False  #: stopped by the controller because the run is failing


def fork_worker(body: Any, controller_pid: int) -> tuple[int, int, int]:
    """Fork a child that runs ``body()`` (returns an exit code) with stdout/stderr on pipes.

    Returns ``(pid, stdout read fd, stderr read fd)``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    # Objects that exist now are never collected by the child's GC: its collections would
    # touch every object header and copy most of the controller's pages (copy-on-write).
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.setpgid(0, 0)
            _die_with_parent()
            if os.getppid() != controller_pid:
                os._exit(1)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (null, out_r, out_w, err_r, err_w):
                os.close(fd)
            sys.stdout = _line_stream(1)
            sys.stderr = _line_stream(2)
            code = body()
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
    return pid, out_r, err_r


def _line_stream(fd: int) -> io.TextIOWrapper:
    """A fresh line-buffered text stream on ``fd`` (whatever the controller's sys.stdout was)."""
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True)


def _spawn_preexec() -> None:  # pragma: no cover - runs in the child
    os.setpgid(0, 0)
    _die_with_parent()


def spawn_worker(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start ``argv`` (a ``flow step`` command) with stdout/stderr on pipes."""
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_spawn_preexec,
        close_fds=True,
    )


def signal_trees(pids: list[int], sig: int = signal.SIGTERM) -> list[psutil.Process]:
    """Send ``sig`` to every process of the trees rooted at ``pids``; returns them all.

    Each worker leads its own process group, so the group is signalled too: that reaches
    grandchildren that were orphaned (re-parented away from the tree), e.g. ``cmd &`` in a
    shell the task ran. The controller reaps its own children itself (never through psutil,
    which would reap them behind its back); grandchildren are only signalled.
    """
    procs: list[psutil.Process] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    signal_groups(pids, sig)
    return procs


def signal_groups(pids: Sequence[int], sig: int) -> None:
    """Signal the process group each worker in ``pids`` leads (gone or not yet made: skipped)."""
    for pid in pids:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_all(procs: list[psutil.Process], groups: Sequence[int] = ()) -> None:
    """SIGKILL whatever of ``procs`` and of the workers' process ``groups`` is still alive."""
    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    signal_groups(groups, signal.SIGKILL)


def now() -> float:
    return time.time()
