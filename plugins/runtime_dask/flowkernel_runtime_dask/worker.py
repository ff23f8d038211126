"""What runs on a Dask worker: one task attempt as ``flow step`` in a child process.

The child is forked by the worker's warm fork server (:mod:`flowkernel_runtime_dask.forkserver`),
or where there is none, a fresh interpreter; either way it leads its own process group.

The Dask task itself only supervises: Dask cannot stop a running task, so the step runs in its
own process group, which this module kills on a timeout or when the controller sets the run's
stop :class:`distributed.Event`. The child gets ``PR_SET_PDEATHSIG`` (Linux) so it dies with the
worker process; because that signal follows the *thread* that spawned the child, every child is
spawned from one long-lived thread per worker process. Each line of the child's stdout/stderr is
relayed with ``log_event`` to the run's topic, which the controller subscribes to.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import attrs

from flowkernel.engine import forkchild

#: How often the supervisor checks the stop events and the deadline (seconds).
POLL_INTERVAL = 0.2
#: Seconds between SIGTERM and SIGKILL when the supervisor stops a step.
KILL_GRACE = 5.0
#: Seconds the step's pipes may stay open after it exited (a process it left behind holds them).
PIPE_GRACE = 5.0
_READ_SIZE = 1 << 16


@attrs.frozen
class Job:
    """One attempt to run on a worker (built by the controller, pickled to the worker).

    ``argv[0]`` is replaced by the worker's own interpreter: a remote worker's Python lives
    where its environment does, not where the controller's does.
    """

    argv: tuple[str, ...]
    env: dict[str, str] = attrs.field(eq=False)
    cwd: str | None
    topic: str  #: the run's log topic
    task: tuple[str, str, int]  #: (step, task_id, attempt), tagged on every relayed line
    stop_events: tuple[str, ...]  #: names of Dask Events; any one set stops the step
    kill_after: float | None  #: seconds after which the step's process group is killed
    #: (datastore root, flow, run id): each execution claims the attempt in the datastore
    #: first; Dask runs a job again when its worker died, and that execution finds the claim
    #: and does not run the step (see :func:`run_job`)
    store: tuple[str, str, str] | None = None
    flow_file: str | None = None  #: the flow whose imports the worker's fork server loads
    package: str | None = None  #: ... or the code package it runs from
    #: (name, leases) of the run's Dask ``Semaphore``: a lease is held while the step runs, so
    #: at most ``leases`` steps of the run run at once on a cluster with more threads than
    #: ``--max-workers`` (None: the cluster's own threads bound them, or a gang's node)
    slots: tuple[str, int] | None = None
    #: the configs (name, JSON) and ``--with`` decorators in ``argv``: the fork server imports
    #: the flow with them once, for every attempt of the run
    configs: tuple[tuple[str, str], ...] = ()
    decospecs: tuple[str, ...] = ()
    #: the attempt ``argv`` runs (a :class:`~flowkernel.engine.executor.TaskSpec`): a fork
    #: server's child runs it without parsing ``argv``
    spec: Any = None


def run_job(job: Job) -> dict[str, Any]:
    """Run ``job`` to the end; the Dask task's result, also sent to the run's topic after the
    job's last line (``{"done": key, "result": ...}``): the controller takes it from there,
    in order with the lines, without fetching the task's result from the worker.

    Returns ``{"returncode", "pid", "stopped", "lines", "worker"}``: ``stopped`` is None,
    ``"timeout"`` or ``"stopped"``; ``lines`` counts the lines relayed per stream, so the
    controller knows when it has them all.

    The controller submits attempts ahead of free slots; one that reaches a worker after the
    run was told to stop runs nothing (``returncode`` None, ``"stopped"``, ``"ran": False``),
    and with ``job.slots`` the step starts only once it holds a lease of the run's semaphore.

    An execution that finds the attempt claimed already (Dask runs it again because the worker
    of the first execution died) runs nothing and returns ``returncode`` None with
    ``"reused": True`` if the first execution recorded the attempt (it finished), else
    ``"lost": True``: the controller then starts a new attempt, so the first one's record
    and log stay as the dead worker left them.
    """
    from distributed import get_worker

    worker = get_worker()
    result = _run_job(job, worker)
    worker.log_event(job.topic, {"done": worker.get_current_task(), "result": result})
    return result


def _run_job(job: Job, worker: Any) -> dict[str, Any]:
    stop = _StopWatch(job, worker)
    lease = _lease(job, stop) if job.slots else None
    try:
        if (job.slots and lease is None) or stop.requested():
            return _not_run(worker, stopped="stopped", ran=False)
        return _run_claimed(job, worker, stop)
    finally:
        if lease is not None:
            _release(lease)


def _not_run(worker: Any, **result: Any) -> dict[str, Any]:
    return {"returncode": None, "pid": None, "stopped": None,
            "lines": {"stdout": 0, "stderr": 0}, "worker": worker.address, **result}  # fmt: skip


def _run_claimed(job: Job, worker: Any, stop: _StopWatch) -> dict[str, Any]:
    earlier = _earlier_execution(job) if job.store else None
    if earlier is not None:
        return _not_run(worker, **{earlier: True})
    argv = [sys.executable, *job.argv[1:]]
    env = {**os.environ, **job.env, "PYTHONUNBUFFERED": "1"}
    cwd = job.cwd if job.cwd and os.path.isdir(job.cwd) else None
    proc = _start(job, argv, env, cwd)
    relays = [
        _Relay(worker, job, proc, "stdout"),
        _Relay(worker, job, proc, "stderr"),
    ]
    stopped = _supervise(proc, job, stop)
    for relay in relays:
        # a process that left the step's group (setsid) may hold the pipes for ever: the
        # lines relayed so far are all the controller waits for
        relay.thread.join(PIPE_GRACE)
    return {
        "returncode": proc.returncode,
        "pid": proc.pid,
        "stopped": stopped,
        "lines": {r.stream: r.count for r in relays},
        "worker": worker.address,
    }


def _start(job: Job, argv: list[str], env: dict[str, str], cwd: str | None) -> Any:
    """The attempt's process: forked by this worker's warm fork server, or where there is none
    (or it refuses), a fresh interpreter."""
    from flowkernel_runtime_dask import forkserver

    spawner = _spawner()
    if forkserver.enabled(env):
        run = job.store[2] if job.store and not job.package else None
        preload = forkserver.Preload(
            job.flow_file, job.package, run, job.configs, job.decospecs, cwd
        )
        step = None
        if job.spec is not None:
            step = forkserver.StepCall(
                job.flow_file or "-", job.spec, job.decospecs, job.package, job.configs
            )
        try:
            return forkserver.server_for(env, preload, spawner.spawn).start(argv, env, cwd, step)
        except forkserver.Refused:
            pass
    return spawner.spawn(argv, env, cwd, pipes=True)


def _earlier_execution(job: Job) -> str | None:
    """Claim the attempt; if an earlier execution did: ``"reused"`` when it recorded the
    attempt, else ``"lost"``."""
    from flowkernel.datastore import FlowStore

    root, flow, run_id = job.store
    step, task_id, attempt = job.task
    store = FlowStore(root, flow)
    if store.claim_attempt(run_id, step, task_id, attempt):
        return None
    recorded = store.read_task_record(run_id, step, task_id, attempt) is not None
    return "reused" if recorded else "lost"


class _StopWatch:
    """Whether the controller wants this job stopped: one of its stop events is set, or it let
    go of the task (its client went away)."""

    def __init__(self, job: Job, worker: Any):
        from distributed import Event

        self.events = [Event(name) for name in job.stop_events]
        self.worker, self.key = worker, worker.get_current_task()

    def requested(self) -> bool:
        return any(_is_set(e) for e in self.events) or _let_go(self.worker, self.key)


def _supervise(proc: subprocess.Popen, job: Job, stop: _StopWatch) -> str | None:
    """Wait for the child; kill its group on a timeout or a stop request. Returns why it
    stopped the child, if it did.

    When the child exits, whatever it left in its process group is killed with it (before the
    child is reaped: its zombie keeps the group id from being reused).
    """
    deadline = time.monotonic() + job.kill_after if job.kill_after else None
    while True:
        if _exited(proc, POLL_INTERVAL):
            kill_group(proc, grace=0)
            return None
        if deadline is not None and time.monotonic() > deadline:
            kill_group(proc, grace=0)
            return "timeout"
        if stop.requested():
            kill_group(proc, KILL_GRACE)
            return "stopped"


_SEMAPHORES: dict[str, Any] = {}  #: this worker's handle of each run's semaphore, by name
_SEMAPHORES_LOCK = threading.Lock()


def _lease(job: Job, stop: _StopWatch) -> Any:
    """A lease of the run's semaphore (the semaphore, holding it), or None: the run was told
    to stop while this job waited for one."""
    from distributed import Semaphore

    name, leases = job.slots
    with _SEMAPHORES_LOCK:
        semaphore = _SEMAPHORES.get(name)
        if semaphore is None:
            for old in [n for n, s in _SEMAPHORES.items() if not getattr(s, "_leases", True)]:
                idle = _SEMAPHORES.pop(old)  # an earlier run's
                refresh = getattr(idle, "refresh_callback", None)  # none: lease-timeout "inf"
                if refresh is not None:
                    refresh.stop()
            semaphore = _SEMAPHORES[name] = Semaphore(max_leases=leases, name=name)
    while not semaphore.acquire(timeout=POLL_INTERVAL):
        if stop.requested():
            return None
    return semaphore


def _release(semaphore: Any) -> None:
    try:
        semaphore.release()
    except Exception:  # the scheduler is going away; the lease times out there anyway
        pass


def _exited(proc: subprocess.Popen, timeout: float) -> bool:
    """Whether the child has exited, waiting up to ``timeout`` s; it is left unreaped."""
    if not isinstance(proc, subprocess.Popen):  # a fork server's child: it reports its exit
        return proc.exited(timeout)
    if not hasattr(os, "waitid"):  # macOS: reaped here, the group kill is best effort
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    end, pause = time.monotonic() + timeout, 0.0005
    while True:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(min(pause, max(0.0, end - time.monotonic())))
        pause = min(pause * 2, 0.05)


def _let_go(worker: Any, key: Any) -> bool:
    """The scheduler cancelled this task: its controller's client is gone (killed, say)."""
    try:
        task = worker.state.tasks.get(key)
        return task is not None and task.state == "cancelled"
    except Exception:  # internal state: never fail the step because it changed shape
        return False


def _is_set(event: Any) -> bool:
    try:
        return bool(event.is_set())
    except Exception:  # the scheduler is going away: the controller stops the run itself
        return False


def kill_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds; reap the child.

    A fork server's child that has exited is left alone: the server killed its group already.
    """
    if proc.returncode is not None:
        return
    if grace > 0:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc.pid, signal.SIGKILL)  # also any grandchild still in the group
    proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Relay:
    """Reads one pipe of the child and relays its lines as ``log_event`` messages."""

    def __init__(self, worker: Any, job: Job, proc: subprocess.Popen, stream: str):
        self.worker, self.job, self.stream = worker, job, stream
        self.pipe, self.pid = getattr(proc, stream), proc.pid
        self.count = 0
        self.thread = threading.Thread(target=self._run, name=f"flowkernel-{stream}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        fd = self.pipe.fileno()
        rest = b""
        try:
            while True:
                data = os.read(fd, _READ_SIZE)
                if not data:
                    break
                *lines, rest = (rest + data).split(b"\n")
                if lines:
                    self._send(lines, newline=True)
        finally:
            if rest:
                self._send([rest], newline=False)
            self.pipe.close()

    def _send(self, lines: list[bytes], newline: bool) -> None:
        self.count += len(lines)
        step, task_id, attempt = self.job.task
        message = {
            "step": step,
            "task_id": task_id,
            "attempt": attempt,
            "stream": self.stream,
            "lines": lines,
            "t": time.time(),
            "newline": newline,
            "pid": self.pid,
        }
        self.worker.log_event(self.job.topic, message)


class _Spawner:
    """Starts children from one thread that lives as long as the worker process, so that
    ``PR_SET_PDEATHSIG`` fires when the worker dies and not when a task thread ends."""

    def __init__(self) -> None:
        self.requests: queue.Queue = queue.Queue()
        forkchild.load_libc()
        self.linux = sys.platform.startswith("linux")
        self.pid = os.getpid()
        threading.Thread(target=self._serve, name="flowkernel-spawner", daemon=True).start()

    def spawn(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        pipes: bool = False,
        pass_fds: tuple[int, ...] = (),
    ) -> subprocess.Popen:
        """Start ``argv`` in its own session; ``pipes``: stdout/stderr on pipes, else stdout
        on /dev/null and stderr the worker's (a fork server's)."""
        reply: queue.Queue = queue.Queue(maxsize=1)
        self.requests.put((argv, env, cwd, pipes, pass_fds, reply))
        result = reply.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def _serve(self) -> None:
        while True:
            argv, env, cwd, pipes, pass_fds, reply = self.requests.get()
            try:
                reply.put(
                    subprocess.Popen(
                        argv,
                        env=env,
                        cwd=cwd,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE if pipes else subprocess.DEVNULL,
                        stderr=subprocess.PIPE if pipes else None,
                        pass_fds=pass_fds,
                        start_new_session=True,  # its own process group, killed as one
                        preexec_fn=self._die_with_parent if self.linux else None,
                    )
                )
            except BaseException as exc:
                reply.put(exc)

    def _die_with_parent(self) -> None:  # pragma: no cover - runs in the child
        forkchild.die_with(self.pid)


_SPAWNER: _Spawner | None = None
_SPAWNER_LOCK = threading.Lock()


def _spawner() -> _Spawner:
    global _SPAWNER
    with _SPAWNER_LOCK:
        if _SPAWNER is None:
            _SPAWNER = _Spawner()
        return _SPAWNER
