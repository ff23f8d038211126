"""Group commit of task records: one helper process makes finished tasks' records durable in
batches, off the controller's loop and out of the task processes.

**The durability contract.** A forked task writes its record atomically (temporary file, then a
link into place) but does not fsync it: a task process that waited for the disk would hold its
``--max-workers`` slot for the disk's latency. The controller reads the record at once (it is
complete: atomic), and hands the record's path to a :class:`Committer`; the successors of a
task are queued only after the committer has fsync'd the record file and its task directory.
So no task ever starts on a record that a crash of the machine could take away, and the run is
reported done only when every record is durable. A crash of the machine (power loss, kernel
panic) may lose only the records of tasks whose successors had not started; ``flow resume``
runs those tasks again. A crash of a process loses nothing: the page cache survives it.

The committer process is forked once, before any task, and fsyncs whatever paths have arrived
since its last batch: under load, when fsyncs are slow, batches grow and their cost per record
falls (the commit is on no task's critical path but the successors'). Should it die, the
controller fsyncs in its own process from then on (:class:`Committer` never loses a path).

**One fsync per record on ext4.** POSIX makes a new name durable only with an fsync of its
directory, and that is what the committer does: the record, then its task directory, and,
for the new directories on the way to it (a task directory made by the task's launch, a
step's, a run's), the directory that holds each, once: a step directory is fsync'd once per
batch for all its new task directories, and the run's and the flow's directories once per
new step or run (:func:`fsync_records`). Except on ext4, where the record's own fsync
already does all that: with a journal, it commits the transaction that holds the link into
the task directory (and every earlier one, so the directories' ``mkdir`` too); without one
(``ext4_fsync_nojournal``), ``ext4_sync_parent`` writes the directory blocks of a newly
added entry's parent, and of each parent that is itself new, up the tree. The file system
is looked up once per step directory (:func:`dir_fsync_needed`: the mount's type in
``/proc/self/mountinfo``, by device); anything not known to be ext4 (another type, a device
not found, no ``/proc``) gets the directory fsyncs.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from flowkernel.storage.local import fsync_dir
from flowkernel_runtime_local import workers

#: One path ends with a NUL byte (a path never contains one).
_END = b"\0"
#: Seconds :meth:`Committer.close` waits for the helper to finish before doing it itself.
CLOSE_TIMEOUT = 60.0


#: File system types on which an fsync of a new file makes its name durable, and the names of
#: its new parent directories (see the module docstring).
NAMES_DURABLE_WITH_FILE = frozenset({"ext4"})


def mount_types(mountinfo: str) -> dict[int, str]:
    """Device number -> file system type of every mount in ``mountinfo`` (the text of
    ``/proc/self/mountinfo``); lines it cannot parse are skipped."""
    types: dict[int, str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        try:
            major, minor = fields[2].split(":")
            types[os.makedev(int(major), int(minor))] = fields[fields.index("-", 6) + 1]
        except (ValueError, IndexError):
            continue
    return types


_mount_types: dict[int, str] | None = None


def dir_fsync_needed(dev: int) -> bool:
    """Whether a record on device ``dev`` needs its directory fsync'd too (False only on a
    file system of :data:`NAMES_DURABLE_WITH_FILE`)."""
    global _mount_types
    if _mount_types is None:
        try:
            with open("/proc/self/mountinfo") as fh:
                _mount_types = mount_types(fh.read())
        except OSError:
            _mount_types = {}
    return _mount_types.get(dev) not in NAMES_DURABLE_WITH_FILE


#: step directory -> whether its records' directories need an fsync (see :func:`fsync_records`)
_dir_fsync: dict[str, bool] = {}
#: Directories whose own entry (in their parent) this process made durable: task, step, run
#: and flow directories (bounded: forgetting one costs one more fsync of its parent)
_entered: set[str] = set()
#: A record's directories that were made on the way to it: its task's, step's, run's, flow's
#: (``<root>/<flow>/<run>/<step>/<task>/<k>.record.json``)
_NEW_LEVELS = 4


def fsync_records(paths: Iterable[str]) -> None:
    """fsync each file of ``paths``, then each of their directories once, and the parent of
    each of those directories (and of their step, run and flow directories) whose entry this
    process has not made durable before; unless the file system makes a new file's name
    durable with the file (:func:`dir_fsync_needed`, looked up once per step directory)."""
    dirs: dict[str, None] = {}
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # removed since (a test's tmp dir): nothing left to make durable
        try:
            folder = os.path.dirname(path)
            step = os.path.dirname(folder)
            needed = _dir_fsync.get(step)
            if needed is None:
                if len(_dir_fsync) >= 4096:  # (a long-lived process running many runs)
                    _dir_fsync.clear()
                needed = _dir_fsync[step] = dir_fsync_needed(os.fstat(fd).st_dev)
            os.fsync(fd)
        finally:
            os.close(fd)
        if needed:
            dirs[folder] = None
    if not dirs:
        return
    entries: dict[str, None] = {}  # directories whose new entries are fsync'd
    for folder in list(dirs):
        for _ in range(_NEW_LEVELS):
            if folder in _entered:
                break
            _entered.add(folder)
            folder = os.path.dirname(folder)
            entries[folder] = None
    for folder in {**dirs, **entries}:
        fsync_dir(folder)
    if len(_entered) >= 16384:  # (a long-lived process running many runs)
        _entered.clear()


class Committer:
    """Makes record files durable in the background; calls back once they are.

    ``submit(paths, then)`` queues ``paths`` and returns at once; ``then()`` is called from
    :meth:`read_acks` (when :attr:`fd` is readable) once every path submitted so far up to
    these is durable. Callbacks run in the order they were submitted.
    """

    def __init__(self) -> None:
        self._pid: int | None = None
        self._poller: Any = None
        self._to: int | None = None
        #: the read end of the acknowledgements (watch it with the run's poller), or None
        self.fd: int | None = None
        self._submitted = 0  #: paths handed over so far
        self._acked = 0  #: paths the helper has made durable so far
        self._ack_buf = b""
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()
        #: paths not yet acknowledged, oldest first: fsync'd here should the helper die
        self._unacked: deque[str] = deque()

    @property
    def pending(self) -> int:
        """Callbacks waiting for their records to become durable."""
        return len(self._waiting)

    @property
    def pid(self) -> int | None:
        """The helper's pid (None: there is none, or it could not start). The helper sends it
        first thing; this waits for it if it has not been read yet (acknowledgements read with
        it call their callbacks here, as :meth:`read_acks` would)."""
        while self._pid is None and self.fd is not None:
            select.select([self.fd], [], [], 1.0)
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:  # it could not start: read_acks falls back on this EOF
                break
            self._take(chunk)
            self._call_back()
        return self._pid

    def start(self) -> Committer:
        """Fork the helper (where fork exists; elsewhere every commit is done in place).

        Like the guardian it is double-forked and in a session of its own: the controller's
        children are its tasks, and a Ctrl-C to the controller's group is not for it. It
        exits when its input pipe closes (the run ended, or the controller died). This returns
        right after the first fork: the intermediate child is reaped later
        (:func:`~flowkernel_runtime_local.workers.reap_intermediates`), and the helper's pid is
        read with its first acknowledgement (or when :attr:`pid` is asked for). A helper that
        could not start shows as EOF on the acknowledgements (or a broken pipe on submit):
        the commits are then done in place, as when the helper dies.
        """
        if not hasattr(os, "fork"):
            return self
        to_r, to_w = os.pipe()
        ack_r, ack_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the intermediate child, then the helper
            code = 0
            try:
                os.close(to_w)
                os.close(ack_r)
                for fd in workers.private_fds:
                    os.close(fd)
                if os.fork() == 0:
                    os.setsid()
                    os.write(ack_w, b"%d\n" % os.getpid())
                    _serve(to_r, ack_w)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(to_r)
        os.close(ack_w)
        workers.reap_later(pid)
        self._to, self.fd = to_w, ack_r
        os.set_blocking(ack_r, False)
        workers.private_fds.update((to_w, ack_r))  # no task holds the helper's input open
        return self

    def watch(self, poller: Any) -> None:
        """Have ``poller`` report this committer (as its key) when acknowledgements arrive;
        it is unregistered before the descriptor closes."""
        if self.fd is not None:
            poller.register(self.fd, self)
            self._poller = poller

    def submit(self, paths: list[str], then: Callable[[], None]) -> None:
        """Make ``paths`` durable, then call ``then`` (from :meth:`read_acks`, or at once when
        there is no helper)."""
        if self._to is None:
            fsync_records(paths)
            then()
            return
        data = b"".join(os.fsencode(p) + _END for p in paths)
        self._unacked.extend(paths)
        self._submitted += len(paths)
        self._waiting.append((self._submitted, then))
        try:
            _write_all(self._to, data)
        except OSError:  # the helper is gone
            self._fall_back()

    def read_acks(self) -> None:
        """Read the helper's acknowledgements and call the callbacks whose records are durable."""
        if self.fd is None:
            return
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                break
            if not chunk:  # the helper died (or never started): finish its work here
                self._fall_back()
                return
            self._take(chunk)
        self._call_back()

    def _take(self, chunk: bytes) -> None:
        """Take in what the helper sent: its pid (the first line), then the number of paths
        made durable so far (one line per batch)."""
        *lines, self._ack_buf = (self._ack_buf + chunk).split(b"\n")
        if lines and self._pid is None:
            self._pid = int(lines.pop(0))
        if lines:
            acked = int(lines[-1])
            for _ in range(acked - self._acked):
                self._unacked.popleft()
            self._acked = acked

    def _call_back(self) -> None:
        while self._waiting and self._waiting[0][0] <= self._acked:
            self._waiting.popleft()[1]()

    def _fall_back(self) -> None:
        """No helper any more: fsync what it had not acknowledged, here, and call back."""
        self._close_pipes()
        fsync_records(self._unacked)
        self._unacked.clear()
        self._acked = self._submitted
        self._call_back()

    def _close_pipes(self) -> None:
        if self._poller is not None and self.fd is not None:
            self._poller.unregister(self.fd)
            self._poller = None
        for fd in (self._to, self.fd):
            if fd is not None:
                workers.private_fds.discard(fd)
                os.close(fd)
        self._to = self.fd = None

    def close(self) -> None:
        """Stop the helper once it has made everything durable (callbacks still pending are
        called first). A helper that does not finish within :data:`CLOSE_TIMEOUT` seconds is
        killed and the rest is fsync'd here. Safe to call twice."""
        if self._to is not None:
            workers.private_fds.discard(self._to)
            os.close(self._to)  # EOF: the helper finishes its batch and exits
            self._to = None
            deadline = time.monotonic() + CLOSE_TIMEOUT
            while self.fd is not None and (left := deadline - time.monotonic()) > 0:
                select.select([self.fd], [], [], left)
                self.read_acks()  # up to the helper's EOF, which falls back for what is left
        if self.pid is not None and self.fd is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._waiting or self.fd is not None:
            self._fall_back()
        self._pid = None
        workers.reap_intermediates()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _serve(source: int, acks: int) -> None:  # pragma: no cover - runs in the helper
    """Read NUL-ended paths from ``source``; after each batch, fsync it and write the number of
    paths made durable so far (one decimal line) to ``acks``. Exits at EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides when to stop
    done = 0
    pending = b""
    while chunk := os.read(source, 1 << 16):
        *paths, pending = (pending + chunk).split(_END)
        if not paths:
            continue
        fsync_records(os.fsdecode(p) for p in paths)
        done += len(paths)
        os.write(acks, b"%d\n" % done)
