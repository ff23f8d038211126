"""The child end of a forked task process, shared by every runtime that forks one.

A runtime that runs a task attempt in a ``fork()`` of a warm process (the local runtime, its
fork server, the Dask worker's fork server, the Argo task process) does the same few things
between the ``fork()`` and the child's exit. They live here, so that the three agree:

* in the parent, once, before forking: :func:`load_libc` (so that :func:`enter` costs no
  ``dlopen`` per child) and, for a parent that forks many children, :func:`line_streams`, the
  children's ``sys.stdout``/``sys.stderr``, made once so that a child only rebinds descriptors;
* first thing in the child: :func:`enter` (process group or session, death with the parent,
  signals, stdin, stdout/stderr on the given pipes, descriptors it must not hold);
* then :func:`finish`, which runs the task's body and ends the process: it never returns.
  :func:`run` is the two in one, so that an error in :func:`enter` also ends the child (it
  must never return into the parent's code).

What a child owes its runtime: its output reaches the pipes line by line as it prints (the
streams are line-buffered, and flushed before the exit); its exit code is the body's; an
exception escaping the body is printed to its stderr (the task's log) and exits 1; it never
runs the parent's ``atexit`` handlers or flushes the parent's buffers (``os._exit``).

**Large values are freed after the exit, not before it.** Freeing memory costs the kernel
about 0.1 ms per MB (4 KB pages: a 200 MB artifact, ~20 ms), and a process's exit is not
visible to its parent until its memory is freed, so a task that saved or loaded a large
artifact used to keep its successor waiting that long. A child of :func:`finish` keeps those
values (:func:`flowkernel.storage.largeio.hold`) and, when they are :data:`EXIT_HELPER_MIN` or
more (Linux), exits this way: it closes its descriptors, starts a helper that shares its
memory (``clone(CLONE_VM)``: no copy; every signal blocked; it sleeps
:data:`HELPER_SLEEP_US` and exits) and exits at once. Its memory then belongs to the
helper, whose exit frees it while the runtime already reaps the task and starts the next one.
The helper is in the task's process group: a runtime that kills the group after the task's
exit (the local runtime's fork server does) ends it at once. Nothing the runtime learns
changes: the exit code, the record, the output (all written before), the process group.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from flowkernel.storage import largeio

try:  # the C module under `signal` (see enter); any other Python: the module itself
    import _signal
except ImportError:  # pragma: no cover
    _signal = signal  # type: ignore[assignment]

_PR_SET_PDEATHSIG = 1
_SIGINT, _SIGTERM, _SIG_DFL = int(signal.SIGINT), int(signal.SIGTERM), int(signal.SIG_DFL)
_libc: Any = None

#: A child holding at least this many bytes of large values leaves freeing them to a helper.
EXIT_HELPER_MIN = 32 << 20
#: How long the helper outlives the child at most (then it exits, freeing the memory), in
#: microseconds, when no one kills it first.
HELPER_SLEEP_US = 20_000
_CLONE_VM = 0x100
_HELPER_STACK = 64 << 10


def load_libc() -> None:
    """Load libc once in the parent (Linux): children then reach ``prctl`` at no cost.

    Elsewhere, or if it cannot be loaded, :func:`enter` skips ``PR_SET_PDEATHSIG``.
    """
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        import ctypes

        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = None


def die_with(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent ``parent`` dies (Linux, once
    :func:`load_libc` ran in an ancestor; elsewhere a no-op); if ``parent`` is gone already
    (this process was re-parented), exit at once with status 1."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above: nobody waits for us
        os._exit(1)


def line_stream(fd: int) -> io.TextIOWrapper:
    """A line-buffered UTF-8 text stream writing to ``fd`` (which it never closes); bytes that
    cannot be encoded are written as backslash escapes, never lost to an error."""
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True)


def line_streams() -> tuple[io.TextIOWrapper, io.TextIOWrapper]:
    """A child's ``(sys.stdout, sys.stderr)``, on descriptors 1 and 2: make them once in a parent
    that forks many children and pass them to :func:`enter`; nothing may write to them before
    the fork (a child would inherit the buffered text)."""
    return line_stream(1), line_stream(2)


def enter(
    stdout_fd: int,
    stderr_fd: int,
    *,
    parent: int | None = None,
    group: str | None = "process",
    close: Iterable[int] = (),
    streams: tuple[io.TextIOWrapper, io.TextIOWrapper] | None = None,
    stdin_null: bool = True,
) -> None:
    """Make this freshly forked process a task's: call it first thing in the child.

    In order: the child leads a new process group (``group="process"``) or session
    (``"session"``), or stays where it is (``None``); with ``parent`` (the pid it was forked
    from), the kernel SIGKILLs it when that process dies (Linux ``PR_SET_PDEATHSIG``), and it
    exits at once with status 1 if the parent died before that was set; the descriptors in
    ``close`` are closed (pipes the parent's other children or helpers read, which this process
    must not hold open); SIGINT raises ``KeyboardInterrupt`` and SIGTERM terminates, whatever
    the parent had; stdin reads ``/dev/null`` (``stdin_null``; a parent whose own stdin is
    already ``/dev/null`` passes False); stdout and stderr are ``stdout_fd`` and ``stderr_fd``
    (then closed) and ``sys.stdout``/``sys.stderr`` line-buffered streams on them (``streams``
    from :func:`line_streams`, or new ones).
    """
    if group == "process":
        os.setpgid(0, 0)
    elif group == "session":
        os.setsid()
    if parent is not None:
        die_with(parent)
    for fd in close:
        try:
            os.close(fd)
        except OSError:
            pass
    # (_signal: the signal module's Python wrapper converts to and from enums, code that a
    # forked child would run for the first time: ~40 copy-on-write faults, measured)
    _signal.signal(_SIGINT, _signal.default_int_handler)
    _signal.signal(_SIGTERM, _SIG_DFL)
    if stdin_null:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    for fd in {stdout_fd, stderr_fd} - {1, 2}:
        os.close(fd)
    sys.stdout, sys.stderr = streams or line_streams()


def exit_code(exc: SystemExit) -> int:
    """The process exit code a ``SystemExit`` stands for (``sys.exit("message")``: 1, and the
    message is printed to stderr, as the interpreter does)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def finish(body: Callable[[], int | None]) -> NoReturn:
    """Run ``body()`` and end this process with its exit code (``None``: 0); never returns.

    A ``SystemExit`` out of the body exits with its code; any other exception is printed to
    stderr with its traceback and exits 1. ``sys.stdout`` and ``sys.stderr`` are flushed first;
    the exit is ``os._exit``: none of the parent's ``atexit`` handlers or buffers run here.
    """
    code = 1
    largeio.hold_until_exit()
    try:
        result = body()
        code = 0 if result is None else result
    except SystemExit as exc:
        code = exit_code(exc)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        if largeio.held_bytes() >= EXIT_HELPER_MIN and _libc is not None:
            _leave_memory()
        os._exit(code)


def _leave_memory() -> None:
    """Hand this process's memory to a helper that frees it after this process exited (see
    the module docstring). Called last thing before ``os._exit``; a failure is ignored (the
    process then frees its memory itself, as any process does)."""
    try:
        import ctypes

        # the helper must hold no descriptor: a copy of the task's pipes would delay the
        # end of its output, a copy of anything else would keep it open. (The open ones only:
        # os.closerange falls back to one close() per number where close_range(2) is refused.)
        for fd in os.listdir("/proc/self/fd"):
            try:
                os.close(int(fd))
            except OSError:
                pass  # the listing's own descriptor, closed already
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())  # (inherited)
        stack = ctypes.create_string_buffer(_HELPER_STACK)
        top = (ctypes.addressof(stack) + _HELPER_STACK - 64) & ~15
        clone = _libc.clone
        clone.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        sleep = ctypes.cast(_libc.usleep, ctypes.c_void_p)
        clone(sleep, top, _CLONE_VM | int(signal.SIGCHLD), HELPER_SLEEP_US)
    except BaseException:
        pass


def run(body: Callable[[], int | None], stdout_fd: int, stderr_fd: int, **options: Any) -> NoReturn:
    """In a freshly forked child: :func:`enter` (with ``options``), then :func:`finish` with
    ``body``; never returns, whatever fails (an error in :func:`enter` is printed and exits 1)."""

    def task() -> int | None:
        enter(stdout_fd, stderr_fd, **options)
        return body()

    finish(task)
