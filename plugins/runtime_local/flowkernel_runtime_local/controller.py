"""The local runtime's controller: a single-threaded loop that starts task attempts as
processes, watches them, feeds their output to the log sinks, and stops them when told.

What to run, what a finished attempt means, retries and fail-fast are the kernel's
:class:`~flowkernel.dispatch.Dispatcher` (the same for every runtime); this module keeps only
processes, pipes and polling. Each attempt runs in its own process: forked from this warm
controller (the flow module and kernel already imported) or, with ``--isolation spawn``, a
fresh interpreter running ``flow step``. No threads are started, so forking is safe.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from flowkernel.engine.dispatch import Attempt, Backend, Dispatcher, Interrupted
from flowkernel.engine.executor import run_task
from flowkernel.engine.logs import abnormal_end_line
from flowkernel.engine.progress import Progress, progress_for
from flowkernel.engine.runs import step_command
from flowkernel.specs import LogLine, RunResult
from flowkernel.storage import LocalBackend
from flowkernel_runtime_local import pool, workers
from flowkernel_runtime_local.commit import Committer
from flowkernel_runtime_local.pool import PoolProcess
from flowkernel_runtime_local.workers import Worker

if TYPE_CHECKING:
    from flowkernel.engine.records import TaskRecord
    from flowkernel.engine.runs import RunContext
    from flowkernel.kernel import Kernel

#: Extra seconds a task gets past its @timeout (the in-task alarm fires first) before the
#: controller kills its process tree.
TIMEOUT_GRACE = 5.0
#: Seconds a failing or interrupted run gives its running tasks between SIGTERM and SIGKILL
#: (a second Ctrl-C / SIGTERM cuts it short).
STOP_GRACE = 5.0
_READ_SIZE = 1 << 16
#: Reads of one pipe per poll round (1 MiB): a chatty task cannot starve the loop.
_READS_PER_ROUND = 16
#: A line longer than this (bytes) reaches the sinks in pieces of this size.
MAX_LINE = 1 << 20


class LocalRuntime:
    """The ``local`` runtime: ``run(ctx)`` executes a prepared run and returns a RunResult."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel

    def run(self, ctx: RunContext) -> RunResult:
        return _Controller(self.kernel, ctx).execute()


class _Controller(Backend):
    """Processes for one run; the :class:`Dispatcher` decides what they run (its Backend)."""

    def __init__(self, kernel: Kernel, ctx: RunContext):
        self.kernel = kernel
        self.ctx = ctx
        opts = ctx.options
        self.quiet = opts.quiet
        isolation = opts.extra.get("isolation") or ("fork" if hasattr(os, "fork") else "spawn")
        self.isolation = isolation
        self.dispatcher = Dispatcher(kernel, ctx, self, runtime="local")
        self.info = self.dispatcher.info
        self.workers: dict[int, Worker] = {}
        self.by_fd: dict[int, Worker] = {}
        self.pid = os.getpid()
        #: SIGINT/SIGTERM received so far; the handler only counts, the loop acts on it
        self.signals = 0
        #: of those, the ones that started the run's interruption: any later one is "hurry up"
        self.signals_acted_on = 0
        #: the console (stdout) is gone (`| head`, a Runner caller that exited): stop writing
        self.console_lost = False
        #: the group commit of forked attempts' records (None: attempts fsync their own)
        self.committer: Committer | None = None
        #: ``--isolation pool``: the long-lived task processes, idle or running one attempt
        self.pool: list[PoolProcess] = []

    @property
    def progress(self) -> Progress:
        """The dispatcher's counts (a live display on a terminal, set in :meth:`execute`)."""
        return self.dispatcher.progress

    # -- messages ------------------------------------------------------------------------------

    def say(
        self,
        text: str,
        task: Attempt | Worker | None = None,
        force: bool = False,
        err: bool = False,
    ) -> None:
        """An engine message on the console (never in a task's own logs); ``err``: on stderr."""
        if (self.quiet or self.progress.live) and not force:
            return  # the live display shows task starts and ends as counts
        if self.console_lost:
            return
        where = f"[{self.ctx.run_id}/{task.step}/{task.task_id}] " if task else ""
        stream = sys.stderr if err else sys.stdout
        try:
            stream.write(f"{time.strftime('%H:%M:%S')} {where}{text}\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            if not err:
                self._lose_console()

    def _lose_console(self) -> None:
        """Nobody reads the console any more: the run goes on, recorded and logged to files."""
        self.console_lost = True
        workers.detach_stdout()
        for sink in list(getattr(self, "sinks", ())):
            if getattr(sink, "console", False):
                self.sinks.remove(sink)

    def _on_signal(self, _signum: int, _frame: Any) -> None:
        # Only count: raising here could land anywhere (inside fork's at-fork handlers, where
        # it is swallowed, or between a fork and the worker's registration). The loop stops
        # the run; a further signal while it stops makes it SIGKILL at once.
        self.signals += 1

    # -- main loop -----------------------------------------------------------------------------

    def execute(self) -> RunResult:
        workers.load_libc()
        if self.isolation != "spawn" and isinstance(self.ctx.store.backend, LocalBackend):
            # forked before the guardian and any task, so that none holds its pipe open
            self.committer = Committer().start()
        self.guardian = workers.Guardian.start()
        self.poller = self.kernel.make_poller()
        if self.committer is not None:
            self.committer.watch(self.poller)
        # before the sinks: on a terminal, the console sink then writes above the live display
        self.dispatcher.progress = progress_for(
            self.quiet, f"{self.info.flow_name}/{self.ctx.run_id}"
        )
        self.sinks = list(self.kernel.log_sinks(self.info))
        old_handlers = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT)
            if signal.getsignal(sig) is not signal.SIG_IGN
        }
        try:
            return self.dispatcher.run()
        finally:
            self.guardian.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)

    def wait(self) -> None:
        """Read the tasks' output for a moment; report the attempts that ended and the
        groups whose records became durable."""
        self._check_signals()
        if not self.workers and not self.dispatcher.committing:
            return
        for key in self.poller.poll(self._poll_timeout()):
            if key is self.committer:
                key.read_acks()
            elif isinstance(key, PoolProcess):
                self._pool_result(key)
            else:
                self._read(key)
        self._reap()
        self._enforce_timeouts()

    def commit(self, records: Sequence[TaskRecord], then: Callable[[], None]) -> None:
        """Group commit: forked attempts write their records without fsync; the committer
        makes them durable in batches and ``then`` (queue the successors) runs once it has
        (see :mod:`flowkernel_runtime_local.commit` for the contract)."""
        if self.committer is None:
            then()
            return
        store = self.ctx.store
        paths = [store.record_path(r.run_id, r.step, r.task_id, r.attempt) for r in records]
        self.committer.submit(paths, then)

    def close(self) -> None:
        """The run is over: stop the pool, finish the group commit, close the log sinks and
        the poller."""
        for proc in list(self.pool):
            self._retire(proc)
        if self.committer is not None:
            self.committer.close()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self.say(f"log sink {type(sink).__name__} failed to close: {exc}", force=True)
        self.poller.close()

    def _check_signals(self) -> None:
        if self.signals and self.dispatcher.failure != "interrupted":
            self.signals_acted_on = self.signals
            raise Interrupted()

    def _poll_timeout(self) -> float:
        deadlines = [w.deadline for w in self.workers.values() if w.deadline is not None]
        # a worker whose pipes are closed sends no more events: check its exit often
        timeout = 0.01 if any(not w.fds for w in self.workers.values()) else 0.2
        if deadlines:
            timeout = min(timeout, max(0.0, min(deadlines) - time.time()))
        return timeout

    # -- the dispatcher's backend --------------------------------------------------------------

    def launch(self, attempt: Attempt) -> None:
        """Start one attempt's process (fork, or spawn ``flow step``)."""
        ctx, spec = self.ctx, attempt.spec
        popen = proc = None
        durable = self.committer is None
        if self.isolation == "fork":
            inputs = attempt.ready.inputs
            pid, out_fd, err_fd = workers.fork_worker(
                lambda: run_task(ctx.flow_cls, ctx.graph, ctx.store, spec, inputs, durable),
                self.pid,
            )
        elif self.isolation == "pool":
            proc = self._idle_pool_process()
            proc.submit((spec, attempt.ready.inputs))
            pid, out_fd, err_fd = proc.pid, proc.out_fd, proc.err_fd
        else:
            # unbuffered, as a forked task's line-buffered streams: its lines arrive live
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            popen = workers.spawn_worker(step_command(ctx, spec), env)
            pid, out_fd, err_fd = popen.pid, popen.stdout.fileno(), popen.stderr.fileno()
        seconds = attempt.group.policy.timeout
        worker = Worker(
            pid=pid,
            step=spec.step,
            task_id=spec.task_id,
            attempt=spec.attempt,
            job=attempt,
            fds={out_fd: "stdout", err_fd: "stderr"},
            started_at=time.time(),
            deadline=time.time() + seconds + TIMEOUT_GRACE if seconds else None,
            popen=popen,
            pool=proc,
        )
        for fd in worker.fds:
            os.set_blocking(fd, False)
            self.poller.register(fd, worker)
            self.by_fd[fd] = worker
        self.workers[pid] = worker
        self.guardian.watch(pid)
        self.say(
            "Task is starting" + (f" (retry {spec.attempt})." if spec.attempt else "."), worker
        )

    def stop(self, attempts: Sequence[Attempt] | None) -> None:
        """Stop some attempts (a gang whose node failed), or every task (the run failed)."""
        if attempts is None:
            self._stop_all()
            return
        ids = {(a.task_id, a.attempt) for a in attempts}
        stopping = [w for w in self.workers.values() if (w.task_id, w.attempt) in ids]
        for worker in stopping:
            worker.deadline = time.time() + TIMEOUT_GRACE  # SIGKILL if SIGTERM is not enough
        workers.signal_trees([w.pid for w in stopping])

    # -- output --------------------------------------------------------------------------------

    def _read(self, worker: Worker) -> None:
        for fd in list(worker.fds):
            self._drain(worker, fd)

    def _drain(self, worker: Worker, fd: int, bounded: bool = True) -> None:
        """Read what ``fd`` has; ``bounded``: at most a few reads, so that one task writing
        without pause cannot starve the others or the timeouts (the poller calls again)."""
        stream = worker.fds[fd]
        for _ in range(_READS_PER_ROUND) if bounded else itertools.count():
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                self._close_fd(worker, fd)
                return
            self._feed(worker, stream, data)

    def _feed(self, worker: Worker, stream: str, data: bytes) -> None:
        """Assemble lines in linear time: only new data is searched for a newline, and a line
        longer than MAX_LINE is passed on in pieces of that size (``newline=False``)."""
        pending = worker.partial[stream]
        end = data.rfind(b"\n")
        if end >= 0:
            head = bytes(pending) + data[:end] if pending else data[:end]
            pending.clear()
            pending += memoryview(data)[end + 1 :]
            self._emit(worker, stream, head.split(b"\n"), True)
        else:
            pending += data
        while len(pending) >= MAX_LINE:
            self._emit(worker, stream, [bytes(pending[:MAX_LINE])], False)
            del pending[:MAX_LINE]

    def _emit(self, worker: Worker, stream: str, lines: list[bytes], newline: bool) -> None:
        """Hand ``lines`` to every sink (``newline``: each ended with a newline)."""
        stamp = time.time()
        for raw in lines:
            line = LogLine(
                self.info,
                worker.step,
                worker.task_id,
                worker.attempt,
                stream,
                raw.decode("utf-8", "surrogateescape"),
                stamp,
                worker.pid,
                newline=newline,
            )
            for sink in list(self.sinks):
                try:
                    sink.emit(line)
                except BrokenPipeError:
                    self._lose_console()
                except Exception as exc:
                    self.sinks.remove(sink)
                    name = type(sink).__name__
                    self.say(f"log sink {name} failed and was disabled: {exc}", force=True)

    def _close_fd(self, worker: Worker, fd: int) -> None:
        stream = worker.fds.pop(fd)
        pending = worker.partial[stream]
        if pending:  # the last line had no newline
            self._emit(worker, stream, [bytes(pending)], False)
            pending.clear()
        self.poller.unregister(fd)
        del self.by_fd[fd]
        if worker.pool is not None:
            return  # the pool process's pipes outlive the attempt
        if worker.popen is None:
            os.close(fd)
        else:
            getattr(worker.popen, stream).close()

    # -- the pool (--isolation pool) -----------------------------------------------------------

    def _idle_pool_process(self) -> PoolProcess:
        for proc in self.pool:
            if not proc.busy:
                return proc
        ctx, durable = self.ctx, self.committer is None

        def run(request: Any) -> int:  # pragma: no cover - runs in the pool process
            spec, inputs = request
            return run_task(ctx.flow_cls, ctx.graph, ctx.store, spec, inputs, durable)

        proc = pool.start(run, self.pid)
        self.poller.register(proc.results, proc)
        self.guardian.watch(proc.pid)
        self.pool.append(proc)
        return proc

    def _pool_result(self, proc: PoolProcess) -> None:
        """A pool process reported its attempt's exit code (or closed its result pipe)."""
        try:
            code = proc.read_result()
        except EOFError:  # it died: _reap reports a running attempt; an idle one just goes
            self.poller.unregister(proc.results)
            proc.results_watched = False
            if not proc.busy:
                self._retire(proc)
            return
        if code is None:
            return
        worker = self.workers.pop(proc.pid)
        for fd in list(worker.fds):  # all it printed is in the pipes before its result
            self._drain(worker, fd, bounded=False)
            if fd in worker.fds:
                self._close_fd(worker, fd)
        worker.returncode = code
        self._finished(worker)

    def _retire(self, proc: PoolProcess) -> None:
        """Stop a pool process (idle, or dead): EOF on its requests, then its group is killed
        and it is reaped."""
        self.pool.remove(proc)
        if proc.results_watched:
            self.poller.unregister(proc.results)
        os.close(proc.requests)  # an idle process exits on EOF
        workers.private_fds.discard(proc.requests)
        proc.requests = -1
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            workers.signal_groups([proc.pid], signal.SIGKILL)  # what its tasks left running
            os.waitpid(proc.pid, 0)
        except ChildProcessError:  # reaped already (it died running an attempt)
            pass
        self.guardian.release(proc.pid)
        proc.close_pipes()

    # -- exits ---------------------------------------------------------------------------------

    def _reap(self) -> None:
        for pid, worker in list(self.workers.items()):
            if pid not in self.workers:  # reaped by a nested call (a failure stopping all)
                continue
            # never block: a task may close its pipes and run on (and a grandchild may hold
            # them open after the task exited)
            status = workers.reap_attempt(pid)
            if status is None:
                continue
            self.guardian.release(pid)
            for fd in list(worker.fds):
                self._drain(worker, fd, bounded=False)
                if fd in worker.fds:
                    self._close_fd(worker, fd)
            worker.returncode = os.waitstatus_to_exitcode(status)
            if worker.popen is not None:
                worker.popen.returncode = worker.returncode
            del self.workers[pid]
            if worker.pool is not None:  # the next attempt gets a fresh pool process
                self._retire(worker.pool)
            self._finished(worker)

    def _finished(self, worker: Worker) -> None:
        ending = abnormal_end_line(worker.returncode, worker.killed)
        if ending is not None:  # the task's own stderr log says how it ended
            self._emit(worker, "stderr", [ending.encode()], True)
        self.dispatcher.finished(
            worker.job,
            worker.returncode,
            stopped=worker.killed,
            started_at=worker.started_at,
            pid=worker.pid,
        )

    # -- stopping ------------------------------------------------------------------------------

    def _stop_all(self) -> None:
        """Terminate every running task's process tree (SIGTERM, SIGKILL after
        :data:`STOP_GRACE`, or at once on one more signal)."""
        running = list(self.workers.values())
        if not running:
            return
        for worker in running:
            worker.killed = True
            self.say("Stopping this task: the workflow is failing.", worker, force=True)
        pids = [w.pid for w in running]
        procs = workers.signal_trees(pids)
        deadline = time.time() + STOP_GRACE
        # a signal beyond the one that interrupted the run, even one that came before this
        # point, ends the grace: no more waiting
        while self.workers and time.time() < deadline and self.signals <= self.signals_acted_on:
            for worker in self.poller.poll(0.05):
                self._read(worker)
            self._reap()
        workers.kill_all(procs, pids)
        while self.workers:
            for worker in self.poller.poll(0.05):
                self._read(worker)
            self._reap()

    def _enforce_timeouts(self) -> None:
        now = time.time()
        for worker in list(self.workers.values()):
            if worker.deadline is not None and now > worker.deadline:
                worker.deadline = None
                self.say("Task exceeded its @timeout: killing its process tree.", worker, True)
                workers.signal_trees([worker.pid], signal.SIGKILL)
