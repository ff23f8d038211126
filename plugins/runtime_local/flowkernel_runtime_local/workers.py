"""Worker processes: start one task attempt (fork or spawn), read its pipes, stop its tree."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from flowkernel.engine import forkchild

if TYPE_CHECKING:
    import subprocess  # (imported where used: only --isolation spawn starts processes with it)

    import psutil  # (imported where used: only stopping a tree needs it, not every run)


def load_libc() -> None:
    """Load libc once in the controller (children reuse it after fork)."""
    forkchild.load_libc()


@attrs.define(eq=False)
class Worker:
    """One running task attempt and its two output pipes."""

    key: int  #: the controller's id for it (the fork server's too)
    pid: int | None  #: None until the fork server reports it
    step: str
    task_id: str
    attempt: int
    job: Any  #: the dispatcher's Attempt this process runs
    fds: dict[int, str]  #: open read ends -> "stdout" / "stderr"
    #: when it started (when it was launched, until then; kept if it never starts)
    started_at: float
    #: when the controller SIGKILLs it (@timeout + grace, counted from its start)
    deadline: float | None = None
    popen: subprocess.Popen | None = None
    #: the unfinished last line of each stream (less than MAX_LINE bytes)
    partial: dict[str, bytearray] = attrs.field(
        factory=lambda: {"stdout": bytearray(), "stderr": bytearray()}
    )
    returncode: int | None = None
    killed: bool = False  #: stopped by the controller because the run is failing
    #: the pool process running this attempt (``--isolation pool``): it owns the pipes
    pool: Any = None
    #: forked by the fork server, which reaps it and reports its exit (not the controller);
    #: ``pid`` None: not started yet (in the server's queue) or its start not read yet
    served: bool = False
    #: launched, waiting in the controller's backlog for a slot (no process yet)
    backlogged: bool = False
    #: forked by a fork server that died before it told its pid: it may have run
    forked: bool = False
    #: lines it wrote before its start was announced (``None``: announced): ``(stream,
    #: lines, newline, stamp)``, passed on once it is
    early: list[tuple[str, list[bytes], bool, float]] | None = attrs.field(factory=list)


def reap_attempt(pid: int) -> int | None:
    """If worker ``pid`` has exited: SIGKILL what is left of its process group, reap it and
    return its wait status; None while it runs (never blocks).

    When an attempt ends, so does everything it started in its own process group (a
    ``sleep 67 &`` it forgot, a server it never stopped). A process meant to outlive its task
    must leave the group (``setsid``). The group is killed before the worker is reaped: its
    zombie keeps the group id from being reused.
    """
    if hasattr(os, "waitid"):
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return None
        signal_groups([pid], signal.SIGKILL)
        return os.waitpid(pid, 0)[1]
    done, status = os.waitpid(pid, os.WNOHANG)  # macOS: no waitid
    if done == 0:
        return None
    signal_groups([pid], signal.SIGKILL)
    return status


class Guardian:
    """A small process, forked before any task, that SIGKILLs the process groups of the
    attempts still running if the controller dies without stopping them (``kill -9``).

    The controller tells it ``+pgid`` when an attempt starts and ``-pgid`` when it has been
    reaped; the guardian acts when its end of the pipe closes (the controller exited). It is
    double-forked, so it is not the controller's child: the controller's children are its tasks.
    """

    def __init__(self, fd: int | None):
        self.fd = fd

    @classmethod
    def start(cls) -> Guardian:
        global _guardian_fd
        if not hasattr(os, "fork"):
            return cls(None)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the intermediate child, then the guardian
            try:
                os.close(write_end)
                for fd in private_fds:  # e.g. the committer waits for EOF on its input
                    os.close(fd)
                if os.fork() == 0:
                    os.setsid()  # out of the controller's group: a Ctrl-C is not for it
                    _guard(read_end)
            finally:
                os._exit(0)
        os.close(read_end)
        reap_later(pid)
        _guardian_fd = write_end
        return cls(write_end)

    def _send(self, line: bytes) -> None:
        if self.fd is not None:
            try:
                os.write(self.fd, line)
            except OSError:  # the guardian is gone: nothing to tell
                self.fd = None

    def watch(self, pgid: int) -> None:
        self._send(b"+%d\n" % pgid)

    def release(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)

    def close(self) -> None:
        """The run is over: the guardian sees the pipe close and exits (nothing left to kill)."""
        global _guardian_fd
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            _guardian_fd = None
        reap_intermediates()


#: The intermediate children of the double forks (the guardian's, the committer's) not reaped
#: yet, with the pid of the process that forked each: each exits right after its one fork, and
#: is reaped once the controller has started its helpers (:func:`reap_intermediates`), not
#: waited for after each fork.
_intermediates: list[tuple[int, int]] = []


def reap_later(pid: int) -> None:
    """Have :func:`reap_intermediates` reap ``pid``, a child that exits on its own at once."""
    _intermediates.append((os.getpid(), pid))


def reap_intermediates() -> None:
    """Reap the intermediate children of :func:`reap_later` (waiting for any still exiting).

    Only this process's: a process forked from it (the fork server, a task, a run nested in a
    step) inherits the list, and there a listed pid may be one of its own children by now,
    whose exit a wait here would steal; it drops those entries."""
    me = os.getpid()
    while _intermediates:
        parent, pid = _intermediates.pop()
        if parent != me:
            continue
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # (reaped already)
            pass


_guardian_fd: int | None = None


def _guard(fd: int) -> None:  # pragma: no cover - runs in the guardian
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):  # hold none of the controller's pipes open
        os.dup2(null, target)
    groups: set[int] = set()
    pending = b""
    while chunk := os.read(fd, 4096):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
    signal_groups(sorted(groups), signal.SIGKILL)


#: Descriptors the controller holds that no task process may inherit (the committer's and
#: the pool processes' pipes): a child closes them first thing.
private_fds: set[int] = set()


def child_setup(
    controller_pid: int, out_w: int, err_w: int, close: Sequence[int] = ()
) -> None:  # pragma: no cover - runs in the child
    """In a freshly forked task (or pool) process: its own process group, death with the
    controller, default signals, stdin from /dev/null, stdout/stderr on ``out_w``/``err_w``;
    the guardian's pipe, :data:`private_fds` and ``close`` closed."""
    forkchild.enter(out_w, err_w, parent=controller_pid, close=_child_closes(close))


def _child_closes(close: Sequence[int]) -> list[int]:
    fds = [*private_fds, *close]
    if _guardian_fd is not None:  # the guardian must see EOF when the controller dies
        fds.append(_guardian_fd)
    return fds


def fork_worker(
    body: Callable[[], int], controller_pid: int, close: Sequence[int] = ()
) -> tuple[int, int, int]:
    """Fork a child that runs ``body()`` (returns an exit code) with stdout/stderr on pipes;
    the child closes ``close`` (the read ends of the other tasks' pipes the controller holds)
    as well as :data:`private_fds` and the guardian's pipe.

    Returns ``(pid, stdout read fd, stderr read fd)``.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a console that went away: the controller notices when it next writes
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    # Objects that exist now are never collected by the child's GC: its collections would
    # touch every object header and copy most of the controller's pages (copy-on-write).
    gc.freeze()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        forkchild.run(body, out_w, err_w, parent=controller_pid,
                      close=_child_closes((out_r, err_r, *close)))  # fmt: skip
    os.close(out_w)
    os.close(err_w)
    return pid, out_r, err_r


def _spawn_preexec() -> None:  # pragma: no cover - runs in the child
    os.setpgid(0, 0)
    forkchild.die_with(os.getppid())


def spawn_worker(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start ``argv`` (a ``flow step`` command) with stdout/stderr on pipes."""
    import subprocess

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
    import psutil

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
    if procs:  # (from signal_trees; the fork server calls this after every reap, mostly with [])
        import psutil

        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
    signal_groups(groups, signal.SIGKILL)


def detach_stdout() -> None:
    """Point fd 1 at /dev/null: the console reader is gone, and nothing written later (nor
    the interpreter's final flush) may fail with a broken pipe."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(null)


def now() -> float:
    return time.time()
