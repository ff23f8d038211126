"""What tells a finished, failed, running or crashed run apart: two write-once records beside a
run's ``_run.json``, both written by :func:`flowkernel.engine.runs.execute`, the one hand-over
of a run to its runtime.

* :class:`RunController` (``_controller.json``), written as the run is handed over: the host,
  pid and process start time of the process that controls the run. A run with no ending whose
  controller ran on this host and is gone will never end: ``flow runs`` shows it ``crashed``.
* :class:`RunEnding` (``_ended.json``), written when the runtime returns, or raises (then
  failed, with the error). A run whose tasks all succeeded but whose runtime raised before it
  could start one is thus failed, not running forever.

Runs scheduled elsewhere (a deployer starts the run in one pod and runs its steps in others)
have neither record; their status comes from their task records alone.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from flowkernel.datastore import FlowStore
    from flowkernel.specs import RunResult

#: Seconds two start times of a process may differ by and still be the same process: Linux
#: derives them from the boot time, which the kernel reports to the second (and may adjust).
SAME_START = 2.0


@attrs.frozen
class RunController:
    """The process that executes a run (``_controller.json``)."""

    host: str  #: ``socket.gethostname()`` of the controller's machine
    pid: int
    #: the process's start time (seconds since the epoch): a later process with the same pid
    #: is not the controller
    started_at: float

    @classmethod
    def this_process(cls) -> RunController:
        return cls(socket.gethostname(), os.getpid(), _start_time())

    def is_gone(self) -> bool:
        """The controller is known to be dead: it ran on this host and no live process has its
        pid and start time. A controller on another host is never known to be gone."""
        if self.host != socket.gethostname():
            return False
        import psutil

        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.started_at) > SAME_START:
                return True  # the pid was reused
            return proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
        except psutil.AccessDenied:
            return False

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunController:
        # a field missing: host "" is no host, so the controller is never taken for gone
        host, pid, started = raw.get("host"), raw.get("pid"), raw.get("started_at")
        return cls(str(host or ""), int(pid or 0), float(started or 0.0))

    def write(self, store: FlowStore, run_id: str) -> None:
        store.write_run_note(run_id, "controller", self.to_json())

    @classmethod
    def read(cls, store: FlowStore, run_id: str) -> RunController | None:
        raw = store.read_run_note(run_id, "controller")
        return None if raw is None else cls.from_json(raw)


def _start_time() -> float:
    """This process's start time, in seconds since the epoch, as ``psutil`` computes it (which
    :meth:`RunController.is_gone` compares it with). On Linux it is read from ``/proc`` here:
    importing psutil costs every ``flow run`` ~10 ms of CPU before its first task, and only a
    status check of a run (``flow runs``) needs the rest of it."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/stat", "rb") as fh:
                stat = fh.read()
            with open("/proc/stat", "rb") as fh:
                btime = next(line for line in fh if line.startswith(b"btime"))
            ticks = float(stat[stat.rfind(b")") + 2 :].split()[19])  # field 22, starttime
            return ticks / os.sysconf("SC_CLK_TCK") + float(btime.split()[1])
        except (OSError, ValueError, IndexError, StopIteration):
            pass
    import psutil

    return psutil.Process().create_time()


@attrs.frozen
class RunEnding:
    """How a run ended (``_ended.json``): what its runtime returned, or the error it raised."""

    success: bool
    #: why the run failed ("" on success), e.g. ``"interrupted"`` or the runtime's error
    message: str = ""
    failed_steps: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    finished_at: float = 0.0

    @classmethod
    def of(cls, result: RunResult) -> RunEnding:
        return cls(result.success, result.message, result.failed_steps, time.time())

    @classmethod
    def raised(cls, exc: BaseException) -> RunEnding:
        """The ending of a run whose runtime raised ``exc``."""
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return cls(False, message, (), time.time())

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "failed_steps": list(self.failed_steps)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunEnding:
        return cls(
            bool(raw.get("success")),
            str(raw.get("message") or ""),
            tuple(raw.get("failed_steps") or ()),
            float(raw.get("finished_at") or 0.0),
        )

    def write(self, store: FlowStore, run_id: str) -> None:
        store.write_run_note(run_id, "ended", self.to_json())

    @classmethod
    def read(cls, store: FlowStore, run_id: str) -> RunEnding | None:
        raw = store.read_run_note(run_id, "ended")
        return None if raw is None else cls.from_json(raw)
