"""The fork server of ``--isolation fork`` (Linux): a process forked from the controller once,
before the run's first task, that forks every task attempt, so that the controller never does.

**Why.** A ``fork()`` makes every writable page of the parent copy-on-write, and the parent
then takes a page fault for each page it writes while a child shares it. A controller that
forks each task pays that on every page its own work touches between two forks (reading the
record back, starting the next attempt, the log sinks): ~440 faults per task, measured. The
server's work between two forks is a message in, a ``fork()``, a message out and a reap.

**Protocol** (a ``SOCK_SEQPACKET`` socket pair; one message each way per event):

* controller -> server: *launch* (a key the controller chose, the request bytes, and the write
  ends of the task's stdout and stderr pipes, passed with ``SCM_RIGHTS``; queued at the limit,
  *first* in the queue: a retry, or *now*: a ``@parallel`` gang's node); *signal* (a signal
  number and keys); *limit* (the most tasks that run at once, the run's ``--max-workers``; 0,
  the default: no limit);
  *release* (the exit of a task that failed was handled: its slot is free). The controller
  makes the pipes and keeps their read ends, so the task's output reaches it directly, never
  through the server.
* server -> controller: *started* (key, pid) after the fork, *exited* (key, pid, exit code;
  *held*: the slot waits for *release*) after the reap. A key is started before it exits, in
  that order on the socket; a task forked into the slot a reap freed is reported started
  after that exit, so the controller can tell the user in the order things happened. An
  exit with pid 0 never started: its fork failed (code 1), or it was dropped from the queue
  by a signal (code ``-signal``).

**The queue (lookahead).** The controller may launch more attempts than the limit (its
dispatcher's :meth:`~flowkernel.engine.dispatch.Backend.lookahead`); the server keeps the
ones beyond it in a FIFO queue and forks the next one the moment it reaps a task, *before* it
reports that exit, so a slot never waits for the controller (reading the event and the
record, queueing successors, sending the next request). A queued launch is prepared
(``prepare``, see :meth:`ForkServer.start`) when it arrives, while the slots are busy, so
the fork that follows a reap has nothing left to do first. What it promises:

* at most *limit* tasks are forked and not reaped at once; a *now* launch (a gang's node)
  is forked at once whatever the count (a gang runs whole, as without lookahead; its nodes
  count towards the limit while they run);
* with a limit, a task that did not finish through its ``run`` returning 0 (it failed, was
  stopped, timed out, or ended its process itself, even with ``os._exit(0)``: the child
  exits with :data:`DONE` when ``run`` returned 0, and the server reports that as 0) is
  *held* until the controller sends *release*, after it handled the exit, and while any is
  held no queued attempt starts: a final failure then stops (drops) the queued attempts
  before any of them starts, as without lookahead (fail-fast: no new task starts once the
  runtime has seen a final failure). A task that exits with :data:`DONE` frees its slot at
  once. Only a child whose ``run`` returned 0 marks its byte in a page it shares with the
  server (:data:`_MARKS`) before it exits with :data:`DONE`; a step that ends its process
  with that very code itself (``os._exit(121)``) has not, and is a failure like any other
  code: held, and reported with its code;
* a retry is launched *first*: it goes ahead of the queue and takes the next free slot, as
  without lookahead (where nothing else waits for that slot);
* a signal for a queued key drops it from the queue: its pipes are closed and it is reported
  exited with pid 0 and code ``-signal``, without ever having run.

**Guarantees** (those of a task forked by the controller, kept):

* every attempt is its own process and leads its own process group (the server also calls
  ``setpgid`` for it, before it replies, so a signal the controller asks for always finds the
  group);
* ``PR_SET_PDEATHSIG`` chain: the server dies with the controller and every task with the
  server; the server tells the guardian (:class:`~flowkernel_runtime_local.workers.Guardian`)
  ``+pgid`` at the fork and ``-pgid`` after the reap, so a ``kill -9`` of the controller also
  kills what the tasks started in their groups;
* when a task exits, the server SIGKILLs its process group, then reaps it (its zombie keeps the
  group id from being reused until then), then reports it;
* the controller signals tasks through the server (:meth:`ForkServer.signal`), which signals
  only children it has not reaped: a pid is never signalled after it could have been reused.

If the server dies, :meth:`ForkServer.events` raises :class:`ServerGone` (after the events that
came before); its tasks died with it (``PR_SET_PDEATHSIG``). The controller then kills their
groups, reports them lost (they run again) and forks its tasks itself for the rest of the run.
A task forked just before the server died, whose *started* event was never sent, is known to
the controller by its key, which the server writes before each fork into a mapping the
controller made and shares (:meth:`ForkServer.forked`): it may have run, and is lost like a
running one, never taken for a queued one (launched again as the same attempt).
``FLOWKERNEL_FORK_SERVER=0`` turns the server off (the controller forks every task);
``FLOWKERNEL_FORK_LOOKAHEAD=0`` keeps it but without the queue (:func:`lookahead_wanted`).
"""

from __future__ import annotations

import gc
import mmap
import os
import select
import signal
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from flowkernel.engine import forkchild
from flowkernel_runtime_local import workers

#: Largest launch message: a request above this is sent without its input records (the task
#: reads them from the datastore, as ``flow step`` does).
MAX_REQUEST = 1 << 16
_LAUNCH = struct.Struct("<cQ")  # b"L" (queued), b"F" (first in the queue), b"N" (now), key; request
_SIGNAL = struct.Struct("<ci")  # b"K", signal; keys (Q each) follow
_LIMIT = struct.Struct("<ci")  # b"M", the most tasks running at once (0: no limit)
_RELEASE = b"R"  # the controller handled a failed task's exit: its slot is free
_KEY = struct.Struct("<Q")
_EVENT = struct.Struct("<cQii")  # b"s" started, b"x" exited, b"X" exited (held), key, pid, code
#: The exit code of a task child whose ``run`` returned 0 (reported as 0, when the child
#: also set its byte of :data:`_MARKS`): any other exit, 0 included (``os._exit(0)`` in a
#: step: no record), and 121 from the step itself, holds the task's slot (see the module
#: docstring).
DONE = 121
#: Bytes the server shares with its task children (``mmap``, ``MAP_SHARED``), one per task
#: forked and not reaped: a child whose ``run`` returned 0 sets its byte just before it exits
#: with :data:`DONE`. Beyond this many tasks at once, an exit with 121 alone counts as done.
#: The same mapping, made by the controller, then holds each byte's task key (8 bytes each,
#: key + 1), written by the server *before* it forks that task: if the server dies before
#: its *started* event is sent, the controller still knows the task may have run
#: (:meth:`ForkServer.forked`).
_MARKS = 1 << 16


_FDS_SPACE = socket.CMSG_SPACE(2 * 4)  # two descriptors (C ints) per launch


def _received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(data) // 4}i", data[: len(data) - len(data) % 4])
    return fds


def _ran_to_its_end(marks: mmap.mmap, mark: int) -> int:  # pragma: no cover - in a task child
    """What a task child whose ``run`` returned 0 exits with: :data:`DONE`, its byte of
    ``marks`` set first (the server tells it from a step's own ``os._exit(121)`` by that)."""
    if mark >= 0:
        marks[mark] = 1
    return DONE


class ServerGone(Exception):
    """The fork server exited (or its socket broke): its tasks died with it."""


def available() -> bool:
    """Whether this platform and the environment allow a fork server."""
    if os.environ.get("FLOWKERNEL_FORK_SERVER", "1").lower() in ("0", "false", "no"):
        return False
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "pidfd_open")
        and hasattr(socket, "send_fds")
    )


def lookahead_wanted() -> bool:
    """Whether the server may queue attempts launched past ``--max-workers`` (the lookahead;
    ``FLOWKERNEL_FORK_LOOKAHEAD=0`` turns it off: every launch is then forked at once)."""
    return os.environ.get("FLOWKERNEL_FORK_LOOKAHEAD", "1").lower() not in ("0", "false", "no")


class ForkServer:
    """The controller's end of the fork server (see the module docstring)."""

    def __init__(self, pid: int, sock: socket.socket, shared: mmap.mmap):
        self.pid = pid
        self.sock = sock
        self.fd = sock.fileno()  #: readable when events (or the server's exit) arrive
        self.shared = shared  #: the marks and keys (:data:`_MARKS`), shared with the server

    @classmethod
    def start(
        cls,
        run: Callable[[Any], int],
        controller_pid: int,
        prepare: Callable[[memoryview], Any] | None = None,
    ) -> ForkServer | None:
        """Fork the server from this (the controller) process, or ``None`` where there is none.

        ``run(request)`` is what each task child calls with its request's bytes; it returns
        the exit code. ``prepare(request)``, if given, runs in the server when the launch
        arrives, in the order launches arrive (before the fork; a queued launch is prepared
        while it waits), and what it returns is what the child's ``run`` gets instead of the
        bytes: work
        that is the same for many tasks (decoding the input records they share) is then done
        once, in the server, and every child inherits the result instead of redoing it after
        its fork (where every page it writes is a copy-on-write fault). It must not raise.
        Call it after the committer and the guardian started (the server closes the
        committer's pipes and keeps the guardian's) and before any task.
        """
        if not available():
            return None
        try:
            os.close(os.pidfd_open(os.getpid()))  # not every Linux kernel (or sandbox) has them
        except OSError:
            return None
        forkchild.load_libc()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        # Here too (the controller froze before each fork it made): the controller's own
        # collections then skip the objects of its start-up (measured: ~30 ms of CPU in a
        # short run), and the server's and the tasks' never touch their pages.
        gc.freeze()
        shared = mmap.mmap(-1, _MARKS * (1 + _KEY.size))
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the server
            code = 1
            try:
                ours.close()
                _Server(theirs, run, controller_pid, prepare, shared).serve()
                code = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        theirs.close()
        workers.private_fds.add(ours.fileno())  # no task forked here may hold it open
        return cls(pid, ours, shared)

    def launch(
        self,
        key: int,
        request: bytes,
        out_w: int,
        err_w: int,
        now: bool = False,
        first: bool = False,
    ) -> None:
        """Have the server fork a task: ``request`` for its ``run``, ``out_w``/``err_w`` its
        stdout and stderr (the caller closes its copies). Its start and exit come as events.
        It waits in the server's queue while :meth:`limit` tasks run, unless ``now`` (the
        nodes of a ``@parallel`` gang, which must all run at once); ``first``: ahead of the
        attempts queued already (a retry).

        :raises ServerGone: the server is gone; nothing was started.
        """
        kind = b"N" if now else b"F" if first else b"L"
        try:
            socket.send_fds(self.sock, [_LAUNCH.pack(kind, key), request], [out_w, err_w])
        except OSError as exc:
            raise ServerGone(str(exc)) from None

    def limit(self, running: int) -> None:
        """At most ``running`` tasks at once (0: no limit); launches beyond wait in the
        server's queue (see the module docstring). A server that is gone is reported by
        :meth:`events`."""
        self._tell(_LIMIT.pack(b"M", running))

    def release(self) -> None:
        """The exit of a task that exited with a code other than 0 was handled (a final
        failure stopped the queued attempts first): its slot may take the next one."""
        self._tell(_RELEASE)

    def _tell(self, message: bytes) -> None:
        try:
            self.sock.send(message)
        except OSError:
            pass

    def signal(self, keys: Iterable[int], sig: int) -> None:
        """Send ``sig`` to the process trees and groups of the tasks ``keys`` that have not
        exited yet (others are skipped); a queued one is dropped instead (reported exited
        with pid 0 and code ``-sig``). A server that is gone is reported by :meth:`events`."""
        self._tell(_SIGNAL.pack(b"K", sig) + b"".join(_KEY.pack(k) for k in keys))

    def forked(self) -> set[int]:
        """The keys of the tasks the server forked, or was about to fork, with or without
        their *started* event: once the server is gone, the tasks it may have started (keys
        of tasks that ended since may be among them)."""
        keys = memoryview(self.shared)[_MARKS:]
        return {key - 1 for (key,) in _KEY.iter_unpack(keys) if key}

    def events(self, block: bool = False) -> list[tuple[bytes, int, int, int]]:
        """The events that arrived: ``(b"s", key, pid, 0)`` for a start, ``(b"x", key, pid,
        exit code)`` for an exit, ``(b"X", ...)`` for one whose slot is held until
        :meth:`release` (``block``: wait for at least one). An attempt that never
        started exits with pid 0, without a start: code 1 if its process could not be forked
        (its stderr says why), ``-signal`` if a signal dropped it from the queue.

        :raises ServerGone: the server exited; the events before its exit were returned by
            an earlier call (this one returned them, the next one raises).
        """
        found: list[tuple[bytes, int, int, int]] = []
        flags = 0 if block else socket.MSG_DONTWAIT
        while True:
            try:
                data = self.sock.recv(_EVENT.size, flags)
            except BlockingIOError:
                return found
            except OSError:
                data = b""
            if not data:
                if found:
                    return found  # the exit is seen again on the next call
                raise ServerGone("the fork server exited")
            found.append(_EVENT.unpack(data))
            flags = socket.MSG_DONTWAIT

    def close(self, kill: bool = False) -> int | None:
        """Stop the server (it sees its socket close, kills what is left, exits); reap it and
        return its wait status (``None``: it was reaped already). ``kill``: SIGKILL it first
        unless it has exited (its socket broke: it must not be waited for)."""
        workers.private_fds.discard(self.fd)
        self.sock.close()
        try:
            if kill:
                done, status = os.waitpid(self.pid, os.WNOHANG)
                if done:
                    return status
                os.kill(self.pid, signal.SIGKILL)
            return os.waitpid(self.pid, 0)[1]
        except ChildProcessError:
            return None


class _Server:  # pragma: no cover - runs in the server process
    """The server's loop: launch and signal requests and task exits in, forks and events out."""

    def __init__(
        self,
        sock: socket.socket,
        run: Callable[[Any], int],
        controller: int,
        prepare: Callable[[memoryview], Any] | None = None,
        shared: mmap.mmap | None = None,
    ):
        forkchild.die_with(controller)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides when tasks stop
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for fd in workers.private_fds:  # the committer must see EOF when the controller closes
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # once here: the children inherit it
        os.close(null)
        self.sock, self.run, self.prepare = sock, run, prepare
        self.me = os.getpid()
        self.streams = forkchild.line_streams()
        self.fd = sock.fileno()
        self.ep = select.epoll()
        self.ep.register(self.fd, select.EPOLLIN)
        self.guardian = workers._guardian_fd
        #: descriptors a task child closes: this socket, the epoll, the guardian's pipe (which
        #: must see EOF when the controller dies) and the pidfds of the other tasks
        self.private = [self.fd, self.ep.fileno()]
        if self.guardian is not None:
            self.private.append(self.guardian)
        self.tasks: dict[int, tuple[int, int]] = {}  #: pidfd -> (key, pid)
        #: the bytes task children set when their ``run`` returned 0 (:data:`_MARKS`), the
        #: byte of each task (pidfd -> index; -1: none was free), the bytes free again, and
        #: how many were ever given out
        self.marks = shared if shared is not None else mmap.mmap(-1, _MARKS * (1 + _KEY.size))
        self.mark_of: dict[int, int] = {}
        self.free_marks: list[int] = []
        self.marks_used = 0
        self.pids: dict[int, int] = {}  #: key -> pid, while not reaped
        self.trees: dict[int, list[Any]] = {}  #: key -> processes signalled (killed at SIGKILL)
        self.outbox: deque[bytes] = deque()
        #: the most tasks forked and not reaped at once (0: no limit)
        self.limit = 0
        #: launches waiting for a slot, oldest first: key -> (request, stdout, stderr), the
        #: request prepared already
        self.queued: dict[int, tuple[Any, int, int]] = {}
        #: exits of failed tasks the controller has not released yet (no queued start
        #: meanwhile); only with a limit
        self.held = 0
        # Objects that exist now are never collected by a child's GC, whose collections would
        # write to every object header and copy the pages (copy-on-write).
        gc.freeze()

    def serve(self) -> None:
        """Serve until the controller closes its end; then kill what is left and return."""
        while True:
            for fd, mask in self.ep.poll():
                if fd != self.fd:
                    self._reap(fd)
                    continue
                if mask & select.EPOLLOUT:
                    self._flush()
                readable = mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR)
                if readable and not self._receive():  # the controller closed its end
                    workers.signal_groups(list(self.pids.values()), signal.SIGKILL)
                    return

    def _receive(self) -> bool:
        """Handle every request waiting; False once the controller's end is closed."""
        while True:
            try:  # (socket.recv_fds ignores its flags before Python 3.12)
                data, ancillary, _, _ = self.sock.recvmsg(
                    MAX_REQUEST + _LAUNCH.size, _FDS_SPACE, socket.MSG_DONTWAIT
                )
            except BlockingIOError:
                return True
            except OSError:
                return False
            fds = _received_fds(ancillary)
            if not data:
                return False
            kind = data[:1]
            if kind in (b"L", b"N", b"F") and len(fds) == 2:
                key, request = _LAUNCH.unpack_from(data)[1], self._request(data)
                if kind == b"N" or (not self.queued and self._free()):  # a gang's node: now
                    self._send(self._fork(key, request, fds[0], fds[1]))
                elif kind == b"F":  # a retry: ahead of the others (rare: rebuilding is fine)
                    self.queued = {key: (request, fds[0], fds[1]), **self.queued}
                else:
                    self.queued[key] = (request, fds[0], fds[1])
                continue
            for fd in fds:
                os.close(fd)
            if kind == b"K":
                self._signal(data)
            elif kind == b"M":
                self.limit = max(0, _LIMIT.unpack_from(data)[1])
                self._send_all(self._start_queued())
            elif kind == _RELEASE:
                self.held = max(0, self.held - 1)
                self._send_all(self._start_queued())

    def _free(self) -> bool:
        """A queued launch may start: a slot is free and no failed task's exit waits for the
        controller (it may be a final failure: then nothing new starts)."""
        return not self.held and (not self.limit or len(self.tasks) < self.limit)

    def _start_queued(self) -> list[bytes]:
        """Fork queued launches, oldest first, while :meth:`_free`; their *started* events
        (the caller sends them)."""
        started = []
        while self.queued and self._free():
            key = next(iter(self.queued))
            request, out_w, err_w = self.queued.pop(key)
            started.append(self._fork(key, request, out_w, err_w))
        return started

    def _request(self, data: bytes) -> Any:
        """What the task child's ``run`` gets for a launch message: the request, prepared
        (on receipt: for a queued launch, while the slots are busy, not when one frees)."""
        request: Any = memoryview(data)[_LAUNCH.size :]
        if self.prepare is not None:
            request = self.prepare(request)
        return request

    def _fork(self, key: int, request: Any, out_w: int, err_w: int) -> bytes:
        """Fork the task ``key``; its *started* event (or the *exited* one of a fork that
        failed), for the caller to send."""
        mark = self._take_mark()
        if mark >= 0:  # told before the fork: the controller's view if this server dies
            _KEY.pack_into(self.marks, _MARKS + mark * _KEY.size, key + 1)
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory: the attempt fails, saying why
            if mark >= 0:
                self.free_marks.append(mark)
            try:
                os.write(err_w, b"Could not start the task's process: %s\n" % str(exc).encode())
            except OSError:
                pass
            os.close(out_w)
            os.close(err_w)
            return _EVENT.pack(b"x", key, 0, 1)
        if pid == 0:
            close = self.private
            if self.queued:  # the pipes of the attempts still queued: not this task's to hold
                close = [*close, *(fd for _, o, e in self.queued.values() for fd in (o, e))]
            run, marks = self.run, self.marks
            forkchild.run(
                lambda: run(request) or _ran_to_its_end(marks, mark), out_w, err_w,
                parent=self.me, close=close, streams=self.streams, stdin_null=False,
            )  # fmt: skip
        os.close(out_w)
        os.close(err_w)
        try:
            os.setpgid(pid, pid)  # done before any signal request for it is read
        except OSError:
            pass  # it did so itself already, or has exited
        pidfd = os.pidfd_open(pid)
        self.ep.register(pidfd, select.EPOLLIN)
        self.private.append(pidfd)
        self.tasks[pidfd] = (key, pid)
        self.mark_of[pidfd] = mark
        self.pids[key] = pid
        self._tell_guardian(b"+%d\n" % pid)
        return _EVENT.pack(b"s", key, pid, 0)

    def _reap(self, pidfd: int) -> None:
        """A task exited: kill its process group, then reap it, then start the next queued
        one in its slot (unless it failed: held until the controller releases it), then
        report the exit, then that start."""
        key, pid = self.tasks.pop(pidfd)
        mark = self.mark_of.pop(pidfd)
        self.ep.unregister(pidfd)
        self.private.remove(pidfd)
        os.close(pidfd)
        workers.signal_groups([pid], signal.SIGKILL)  # before the reap: its zombie holds the id
        workers.kill_all(self.trees.pop(key, []))
        _, status = os.waitpid(pid, 0)
        del self.pids[key]
        self._tell_guardian(b"-%d\n" % pid)
        code = os.waitstatus_to_exitcode(status)
        kind = b"x"
        done = True  # (no byte to tell: 121 alone says it)
        if mark >= 0:
            done, self.marks[mark] = self.marks[mark] == 1, 0
            self.free_marks.append(mark)
        if code == DONE and done:
            code = 0
        elif self.limit:  # (no limit: no queue to hold back)
            self.held += 1
            kind = b"X"
        started = self._start_queued() if self.queued else ()
        self._send(_EVENT.pack(kind, key, pid, code))
        self._send_all(started)

    def _take_mark(self) -> int:
        """A free byte of :data:`_MARKS` for the next task (-1: none is free)."""
        if self.free_marks:
            return self.free_marks.pop()
        if self.marks_used == _MARKS:
            return -1
        self.marks_used += 1
        return self.marks_used - 1

    def _signal(self, data: bytes) -> None:
        sig = _SIGNAL.unpack_from(data)[1]
        for (key,) in _KEY.iter_unpack(memoryview(data)[_SIGNAL.size :]):
            queued = self.queued.pop(key, None)
            if queued is not None:  # never started: dropped, reported as ended by ``sig``
                os.close(queued[1])
                os.close(queued[2])
                self._send(_EVENT.pack(b"x", key, 0, -sig))
                continue
            pid = self.pids.get(key)
            if pid is None:
                continue  # exited (and reaped) already
            procs = workers.signal_trees([pid], sig)
            if sig == signal.SIGKILL:  # what the first signal found, even if it moved since
                workers.kill_all(self.trees.pop(key, []))
            else:
                self.trees.setdefault(key, []).extend(procs)

    def _tell_guardian(self, line: bytes) -> None:
        if self.guardian is not None:
            try:
                os.write(self.guardian, line)
            except OSError:
                self.guardian = None

    def _send_all(self, messages: Iterable[bytes]) -> None:
        for message in messages:
            self._send(message)

    def _send(self, message: bytes) -> None:
        """Send an event without ever blocking (a controller busy launching a large gang does
        not read meanwhile): what does not fit waits in the outbox."""
        if not self.outbox:
            try:
                self.sock.send(message, socket.MSG_DONTWAIT)
                return
            except BlockingIOError:
                self.ep.modify(self.fd, select.EPOLLIN | select.EPOLLOUT)
            except OSError:
                return  # the controller is gone: the loop sees EOF
        self.outbox.append(message)

    def _flush(self) -> None:
        while self.outbox:
            try:
                self.sock.send(self.outbox[0], socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                self.outbox.clear()
                break
            self.outbox.popleft()
        self.ep.modify(self.fd, select.EPOLLIN)
