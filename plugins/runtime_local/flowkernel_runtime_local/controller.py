"""The local runtime's controller: a single-threaded loop that launches, watches and retries
task attempts, feeds their output to the log sinks, and stops everything on a final failure.

Each attempt runs in its own process: forked from this warm controller (the flow module and
kernel already imported) or, with ``--isolation spawn``, a fresh interpreter running
``flow step``. No threads are started, so forking is safe.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from flowkernel.engine.executor import TaskSpec, run_task
from flowkernel.engine.logs import abnormal_end_line
from flowkernel.engine.progress import Progress, progress_for
from flowkernel.engine.runs import clone_record, resume_plan, step_command
from flowkernel.engine.scheduling import Frontier, ReadyTask, TooManySplitsError
from flowkernel.flow.decorators import MAX_ATTEMPTS, step_decorators, timeout_seconds
from flowkernel.specs import LogLine, RunInfo, RunResult, TaskInfo
from flowkernel_runtime_local import workers
from flowkernel_runtime_local.workers import Gang, Worker

if TYPE_CHECKING:
    from flowkernel.engine.runs import RunContext
    from flowkernel.kernel import Kernel

#: Extra seconds a task gets past its @timeout (the in-task alarm fires first) before the
#: controller kills its process tree.
TIMEOUT_GRACE = 5.0
_READ_SIZE = 1 << 16
#: Reads of one pipe per poll round (1 MiB): a chatty task cannot starve the loop.
_READS_PER_ROUND = 16
#: A line longer than this (bytes) reaches the sinks in pieces of this size.
MAX_LINE = 1 << 20
#: A task that exits with this code is never retried (as in Metaflow).
NO_RETRY_EXIT_CODE = 202


class _Interrupted(Exception):
    pass


class LocalRuntime:
    """The ``local`` runtime: ``run(ctx)`` executes a prepared run and returns a RunResult."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel

    def run(self, ctx: RunContext) -> RunResult:
        return _Controller(self.kernel, ctx).execute()

    resume = run


class _Controller:
    def __init__(self, kernel: Kernel, ctx: RunContext):
        self.kernel = kernel
        self.ctx = ctx
        opts = ctx.options
        self.quiet = opts.quiet
        isolation = opts.extra.get("isolation") or ("fork" if hasattr(os, "fork") else "spawn")
        self.isolation = isolation
        self.info = RunInfo(
            flow_name=ctx.store.flow_name,
            run_id=ctx.run_id,
            datastore_root=ctx.store.root,
            runtime="local",
            origin_run_id=ctx.origin_run_id,
            tags=opts.tags,
        )
        self.frontier = Frontier(ctx.graph, opts.max_num_splits)
        self.queue: deque[ReadyTask] = deque()
        self.workers: dict[int, Worker] = {}
        self.by_fd: dict[int, Worker] = {}
        self.next_task_id = 1
        self.failure: str | None = None
        self.failed_steps: list[str] = []
        self.progress = Progress()  #: replaced by a live display on a terminal in execute()
        self.pid = os.getpid()
        #: SIGINT/SIGTERM received so far; the handler only counts, the loop acts on it
        self.signals = 0
        #: the console (stdout) is gone (`| head`, a Runner caller that exited): stop writing
        self.console_lost = False

    # -- messages ------------------------------------------------------------------------------

    def say(
        self, text: str, task: Worker | None = None, force: bool = False, err: bool = False
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
        self.guardian = workers.Guardian.start()
        self.poller = self.kernel.make_poller()
        # before the sinks: on a terminal, the console sink then writes above the live display
        self.progress = progress_for(self.quiet, f"{self.info.flow_name}/{self.ctx.run_id}")
        self.sinks = list(self.kernel.log_sinks(self.info))
        old_handlers = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT)
            if signal.getsignal(sig) is not signal.SIG_IGN
        }
        try:
            return self._execute()
        finally:
            self.guardian.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)

    def _execute(self) -> RunResult:
        self.kernel.run_started(self.info)
        if self.ctx.origin_run_id:
            cloned, rerun = resume_plan(self.ctx)
            self.say(f"Resuming run {self.ctx.origin_run_id} as run {self.ctx.run_id}.", force=True)
            self.say(f"Cloned from the origin run: {', '.join(cloned) or 'nothing'}", force=True)
            self.say(f"Run again: {', '.join(rerun) or 'nothing'}", force=True)
        self.say(f"Workflow starting (run-id {self.ctx.run_id}):", force=True)
        try:
            self._enqueue(self.frontier.start(self.ctx.params_record))
            self._loop()
        except (KeyboardInterrupt, _Interrupted):
            self.failure = self.failure or "interrupted"
            self.say("Workflow interrupted: stopping every task.", force=True)
            self._stop_all()
        finally:
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as exc:
                    self.say(f"log sink {type(sink).__name__} failed to close: {exc}", force=True)
            self.poller.close()
            self.progress.stop()
        success = self.failure is None
        if success:
            self.say("Done!", force=True)
        else:
            sys.stdout.flush()  # the summary on stderr comes after everything above it
            self.say(f"Workflow failed: {self.failure}", force=True, err=True)
        result = RunResult(self.info, success, self.failure or "", tuple(self.failed_steps))
        self.kernel.run_finished(self.info, result)
        return result

    def _loop(self) -> None:
        max_workers = max(1, self.ctx.options.max_workers)
        while (self.queue and self.failure is None) or self.workers:
            while self.queue and self.failure is None and len(self.workers) < max_workers:
                self._check_signals()
                self._start(self.queue.popleft())
            self._check_signals()
            if not self.workers:
                continue
            for worker in self.poller.poll(self._poll_timeout()):
                self._read(worker)
            self._reap()
            self._enforce_timeouts()
            self.progress.tick()

    def _check_signals(self) -> None:
        if self.signals and self.failure != "interrupted":
            raise _Interrupted()

    def _poll_timeout(self) -> float:
        deadlines = [w.deadline for w in self.workers.values() if w.deadline is not None]
        # a worker whose pipes are closed sends no more events: check its exit often
        timeout = 0.01 if any(not w.fds for w in self.workers.values()) else 0.2
        if deadlines:
            timeout = min(timeout, max(0.0, min(deadlines) - time.time()))
        return timeout

    # -- launching -----------------------------------------------------------------------------

    def _start(self, ready: ReadyTask) -> None:
        if ready.num_parallel:
            self._start_gang(ready)
            return
        clone = self.ctx.clones.get(ready.key)
        task_id = str(self.next_task_id)
        self.next_task_id += 1
        if clone is not None:
            record = clone_record(self.ctx, clone, task_id, ready.inputs)
            self._task_finished(TaskInfo(self.info, ready.step, task_id, 0, True, 0, cloned=True))
            self._succeeded(record)
            return
        self._launch(ready, task_id, 0)

    def _start_gang(self, first: ReadyTask) -> None:
        """Start every node of a ``@parallel`` step at once (a gang ignores --max-workers)."""
        members = [first] + [self.queue.popleft() for _ in range(first.num_parallel - 1)]
        control = str(self.next_task_id)
        self.next_task_id += 1
        task_ids = [control] + [f"{control}_node_{i}" for i in range(1, len(members))]
        clones = [self.ctx.clones.get(m.key) for m in members]
        if all(clones):  # resume: a gang is cloned whole or runs again whole
            for member, clone, task_id in zip(members, clones, task_ids, strict=True):
                record = clone_record(self.ctx, clone, task_id, member.inputs)
                self._task_finished(
                    TaskInfo(self.info, member.step, task_id, 0, True, 0, cloned=True)
                )
                self._succeeded(record)
            return
        self._launch_gang(Gang(first.step, members, task_ids))

    def _launch_gang(self, gang: Gang) -> None:
        gang.records.clear()
        gang.failure = None
        for member, task_id in zip(gang.members, gang.task_ids, strict=True):
            worker = self._launch(member, task_id, gang.attempt)
            worker.gang = gang
            gang.running.add(worker.pid)

    def _gang_member_done(self, worker: Worker, record: dict[str, Any] | None, status: str):
        """A node exited: stop the others if it failed; act once the whole gang is done."""
        gang = worker.gang
        gang.running.discard(worker.pid)
        if record is not None and status == "ok":
            gang.records[worker.ready.split_index] = record
        elif gang.failure is None:
            gang.failure = f"node {worker.ready.split_index} {status}"
            others = [w for w in self.workers.values() if w.gang is gang]
            for other in others:
                self.say("Stopping this node: another node of the gang failed.", other, True)
                other.deadline = time.time() + TIMEOUT_GRACE  # SIGKILL if SIGTERM is not enough
            workers.signal_trees([w.pid for w in others])
        if gang.running:
            return
        if gang.failure is None:
            for node in sorted(gang.records):
                self._succeeded(gang.records[node])
            return
        decos = step_decorators(getattr(self.ctx.flow_cls, gang.step))
        if self.failure is None and gang.attempt + 1 < _max_attempts(decos):
            message = f"Gang of step {gang.step} failed ({gang.failure}); retrying every node."
            self.say(message, force=True)
            gang.attempt += 1
            self._launch_gang(gang)
        elif self.failure is None:
            message = f"Step {gang.step} (gang {gang.task_ids[0]}) failed: {gang.failure}."
            self._fail(message, gang.step)

    def _launch(self, ready: ReadyTask, task_id: str, attempt: int) -> Worker:
        ctx = self.ctx
        decos = step_decorators(getattr(ctx.flow_cls, ready.step))
        spec = TaskSpec(
            flow_name=ctx.store.flow_name,
            run_id=ctx.run_id,
            step=ready.step,
            task_id=task_id,
            attempt=attempt,
            input_paths=ready.input_paths,
            datastore_root=ctx.store.root,
            split_index=ready.split_index,
            max_user_code_retries=_user_retries(decos),
            origin_run_id=ctx.origin_run_id,
            user=ctx.user,
            tags=ctx.options.tags,
            num_parallel=ready.num_parallel,
            max_num_splits=ctx.options.max_num_splits,
        )
        ctx.store.mark_started(ctx.run_id, ready.step, task_id, attempt)
        self.progress.started(ready.step)
        popen = None
        if self.isolation == "fork":
            pid, out_fd, err_fd = workers.fork_worker(
                lambda: run_task(ctx.flow_cls, ctx.graph, ctx.store, spec, ready.inputs),
                self.pid,
            )
        else:
            # unbuffered, as a forked task's line-buffered streams: its lines arrive live
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            popen = workers.spawn_worker(step_command(ctx, spec), env)
            pid, out_fd, err_fd = popen.pid, popen.stdout.fileno(), popen.stderr.fileno()
        seconds = timeout_seconds(decos["timeout"].attributes) if "timeout" in decos else 0
        worker = Worker(
            pid=pid,
            step=ready.step,
            task_id=task_id,
            attempt=attempt,
            ready=ready,
            fds={out_fd: "stdout", err_fd: "stderr"},
            started_at=time.time(),
            deadline=time.time() + seconds + TIMEOUT_GRACE if seconds else None,
            popen=popen,
        )
        for fd in worker.fds:
            os.set_blocking(fd, False)
            self.poller.register(fd, worker)
            self.by_fd[fd] = worker
        self.workers[pid] = worker
        self.guardian.watch(pid)
        self.say("Task is starting" + (f" (retry {attempt})." if attempt else "."), worker)
        return worker

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
        if worker.popen is None:
            os.close(fd)
        else:
            getattr(worker.popen, stream).close()

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
            self._finished(worker)

    def _finished(self, worker: Worker) -> None:
        store, ctx = self.ctx.store, self.ctx
        ending = abnormal_end_line(worker.returncode, worker.killed)
        if ending is not None:  # the task's own stderr log says how it ended
            self._emit(worker, "stderr", [ending.encode()], True)
        record = store.read_task_record(ctx.run_id, worker.step, worker.task_id, worker.attempt)
        ok = worker.returncode == 0 and record is not None and record.get("task_ok")
        if worker.gang is not None:
            status = "ok" if ok else workers.describe_status(worker.returncode)
            if not ok and record is None:
                record = self._record_crash(worker, status)
            self._task_finished(
                TaskInfo(
                    self.info,
                    worker.step,
                    worker.task_id,
                    worker.attempt,
                    bool(ok),
                    worker.returncode,
                )
            )
            self.say("Task finished successfully." if ok else f"Task failed ({status}).", worker)
            self._gang_member_done(worker, record if ok else None, status)
            return
        if ok:
            self._task_finished(
                TaskInfo(self.info, worker.step, worker.task_id, worker.attempt, True, 0)
            )
            caught = not record.get("success")
            self.say("Task finished; @catch handled its exception." if caught else
                     "Task finished successfully.", worker)  # fmt: skip
            self._succeeded(record)
            return
        status = workers.describe_status(worker.returncode)
        if record is None:
            record = self._record_crash(worker, status)
        decos = step_decorators(getattr(ctx.flow_cls, worker.step))
        attempts = _max_attempts(decos)
        retry = (
            not worker.killed
            and worker.returncode != NO_RETRY_EXIT_CODE
            and self.failure is None
            and worker.attempt + 1 < attempts
        )
        self._task_finished(
            TaskInfo(
                self.info,
                worker.step,
                worker.task_id,
                worker.attempt,
                False,
                worker.returncode,
                will_retry=retry,
            )
        )
        if retry:
            self.say(f"Task failed ({status}); retrying.", worker, force=True)
            self._launch(worker.ready, worker.task_id, worker.attempt + 1)
            return
        if worker.killed:
            self.say(f"Task was stopped ({status}).", worker, force=True)
            return
        self.say(f"Task failed ({status}).", worker, force=True)
        self._fail(f"Step {worker.step} (task-id {worker.task_id}) failed.", worker.step)

    def _enqueue(self, ready: list[ReadyTask]) -> None:
        for task in ready:
            self.progress.queued(task.step)
        self.queue.extend(ready)

    def _task_finished(self, task: TaskInfo) -> None:
        self.progress.finished(task.step, task.success, task.will_retry, task.cloned)
        self.kernel.task_finished(task)

    def _succeeded(self, record: dict[str, Any]) -> None:
        try:
            ready = self.frontier.task_finished(record)
        except TooManySplitsError as exc:
            self._fail(str(exc), record["step"])
            return
        node = self.ctx.graph[record["step"]]
        if node.type == "foreach" and not self.quiet:
            what = "a gang of" if node.num_parallel is not None else "foreach yields"
            self.say(f"Step {node.name}: {what} {len(ready)} child tasks.")
        self._enqueue(ready)

    def _record_crash(self, worker: Worker, status: str) -> dict[str, Any]:
        """The task died without writing its record: write a failed one for it."""
        record = {
            "flow": self.ctx.store.flow_name,
            "run_id": self.ctx.run_id,
            "step": worker.step,
            "task_id": worker.task_id,
            "attempt": worker.attempt,
            "success": False,
            "task_ok": False,
            "artifacts": {},
            "info": {},
            "input_paths": list(worker.ready.input_paths),
            "split_index": worker.ready.split_index,
            "foreach_stack": [],
            "iteration_stack": [],
            "transition": None,
            "exception": {"type": "TaskProcessDied", "message": f"the task process {status}"},
            "returncode": worker.returncode,
            "started_at": worker.started_at,
            "finished_at": time.time(),
            "pid": worker.pid,
        }
        self.ctx.store.write_task_record(record)
        return record

    # -- failure -------------------------------------------------------------------------------

    def _fail(self, message: str, step: str) -> None:
        if self.failure is None:
            self.failure = message
            self.failed_steps.append(step)
            self.queue.clear()
            self._stop_all()

    def _stop_all(self, grace: float = 5.0) -> None:
        """Terminate every running task's process tree (SIGTERM, SIGKILL after ``grace``)."""
        running = list(self.workers.values())
        if not running:
            return
        for worker in running:
            worker.killed = True
            self.say("Stopping this task: the workflow is failing.", worker, force=True)
        pids = [w.pid for w in running]
        procs = workers.signal_trees(pids)
        deadline = time.time() + grace
        signals = self.signals  # one more signal while we wait: no more grace
        while self.workers and time.time() < deadline and self.signals == signals:
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


def _user_retries(decos: dict[str, Any]) -> int:
    return int(decos["retry"]["times"]) if "retry" in decos else 0


def _max_attempts(decos: dict[str, Any]) -> int:
    error_retries = 3 if "catch" in decos else 0
    return min(MAX_ATTEMPTS, 1 + _user_retries(decos) + error_retries)
