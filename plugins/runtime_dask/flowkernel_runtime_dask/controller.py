"""The dask runtime's controller: runs a run's task attempts on a Dask cluster from the ``flow``
process.

What runs when, retries, ``@catch``, gangs, resume clones, records, the task hooks and fail-fast
are the kernel's :class:`~flowkernel.engine.dispatch.Dispatcher` (the same for every runtime);
this module is its backend. Dask only places and runs
:func:`flowkernel_runtime_dask.worker.run_job`, which runs ``flow step`` in a child process on a
worker and relays its lines. Completions and log lines arrive on Dask's event-loop thread and are
queued; this thread handles them, so hooks and sinks are called from one thread only.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from flowkernel.engine.dispatch import Attempt, Backend, Dispatcher, Interrupted, TaskGroup
from flowkernel.engine.logs import abnormal_end_line
from flowkernel.engine.progress import progress_for
from flowkernel.engine.runs import step_command
from flowkernel.specs import LogLine, RunResult
from flowkernel_runtime_dask.code import code_package
from flowkernel_runtime_dask.placement import Placement
from flowkernel_runtime_dask.worker import KILL_GRACE, Job, run_job

if TYPE_CHECKING:
    from flowkernel.engine.runs import RunContext
    from flowkernel.kernel import Kernel

#: Extra seconds a task gets past its @timeout (the in-task alarm fires first) before its
#: process group is killed on the worker.
TIMEOUT_GRACE = 5.0
#: Seconds to wait, once Dask says an attempt's job returned, for the job's result on the
#: run's topic (it follows the job's last line there); then it is fetched from the worker.
LINES_WAIT = 5.0
#: Environment variables of the controller every step gets too (the worker has its own).
FORWARDED_ENV_PREFIX = "FLOWKERNEL_"
#: Seconds to wait, once every step was told to stop, for their supervisors to report them gone.
STOP_WAIT = KILL_GRACE + 5.0


@attrs.define(eq=False)
class _OnCluster:
    """An attempt submitted to the cluster."""

    attempt: Attempt
    future: Any
    started_at: float
    stopped: bool = False  #: stopped by the controller because the run is failing
    #: when Dask said the job returned: its result, sent after its lines, is overdue after
    #: :data:`LINES_WAIT` (monotonic clock)
    overdue_at: float | None = None


class DaskRuntime:
    """The ``dask`` runtime: ``run(ctx)`` executes a prepared run on a Dask cluster."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel

    def run(self, ctx: RunContext) -> RunResult:
        from flowkernel_runtime_dask.cluster import dask_client

        extra = ctx.options.extra
        say = _Console(ctx.options.quiet)
        address = extra.get("dask_scheduler") or os.environ.get("FLOWKERNEL_DASK_SCHEDULER")
        scheduler_file = extra.get("dask_scheduler_file")
        with dask_client(address, scheduler_file, ctx.options.max_workers, say) as client:
            embedded = not address and not scheduler_file
            return _Controller(self.kernel, ctx, client, say, embedded).execute()


class _Console:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, text: str, where: str = "", force: bool = False, err: bool = False) -> None:
        """An engine message on the console (never in a task's own logs); ``err``: on stderr."""
        if self.quiet and not force:
            return
        stream = sys.stderr if err else sys.stdout
        stream.write(f"{time.strftime('%H:%M:%S')} {where}{text}\n")
        stream.flush()


class _Controller(Backend):
    """Futures on the cluster for one run; the :class:`Dispatcher` decides what they run.

    Attempts are submitted ahead of free slots (:meth:`lookahead`), so a worker thread that
    finishes a step starts the next one without a round trip through this process. What keeps
    at most ``--max-workers`` steps running: the embedded cluster's size (never more worker
    threads than that), or on a cluster given by address the run's Dask ``Semaphore`` of
    ``--max-workers`` leases, which every attempt but a gang's nodes holds while its step runs.
    """

    def __init__(
        self, kernel: Kernel, ctx: RunContext, client: Any, console: _Console, embedded: bool
    ):
        self.kernel, self.ctx, self.client, self.console = kernel, ctx, client, console
        self.embedded = embedded
        self.dispatcher = Dispatcher(kernel, ctx, self, runtime="dask")
        self.info = self.dispatcher.info
        self.running: dict[str, _OnCluster] = {}  #: by Dask key
        nonce = uuid.uuid4().hex[:8]
        self.prefix = f"flowkernel-{ctx.store.flow_name}-{ctx.run_id}-{nonce}"
        self.topic = f"{self.prefix}-logs"
        self.stop_name = f"{self.prefix}-stop"
        self.max_workers = max(1, ctx.options.max_workers)
        #: the run's semaphore (None on the embedded cluster: its size is the bound)
        self.slots = None if embedded else (f"{self.prefix}-slots", self.max_workers)
        self.semaphore: Any = None
        #: what arrives from Dask's event-loop thread: ``("future", future)`` when a job's
        #: future ends, ``("topic", message)`` for a job's lines and, after them, its result
        self.inbox: queue.Queue = queue.Queue()
        self.received: Counter[tuple[str, int, str]] = Counter()
        #: when to give up on stopped steps whose supervisors do not answer (monotonic clock)
        self.give_up_at: float | None = None
        self.env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}

    def say(
        self, text: str, attempt: Attempt | None = None, force: bool = False, err: bool = False
    ) -> None:
        """An engine message on the console (the dispatcher's backend calls it too)."""
        if self.dispatcher.progress.live and not force:
            return  # the live display shows task starts and ends as counts
        where = f"[{self.ctx.run_id}/{attempt.step}/{attempt.task_id}] " if attempt else ""
        self.console(text, where, force, err)

    # -- main loop -----------------------------------------------------------------------------

    def execute(self) -> RunResult:
        from distributed import Event

        self.placement = Placement.of(self.client, self.ctx)
        self.package = code_package(self.ctx)
        self.configs = _configs(self.ctx)
        # before the sinks: on a terminal, the console sink then writes above the live display
        self.dispatcher.progress = progress_for(
            self.ctx.options.quiet, f"{self.info.flow_name}/{self.ctx.run_id}"
        )
        self.sinks = list(self.kernel.log_sinks(self.info))
        self.stop_event = Event(self.stop_name, client=self.client)
        if self.slots:
            from distributed import Semaphore

            name, leases = self.slots
            self.semaphore = Semaphore(leases, name, self.client.scheduler, self.client.loop)
            self.semaphore.register()
        self.client.subscribe_topic(self.topic, lambda event: self.inbox.put(("topic", event[1])))
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        if self.package:
            self.say(f"Tasks run from code package {self.package}.", force=True)
        try:
            return self.dispatcher.run(where=" on Dask")
        finally:
            signal.signal(signal.SIGTERM, old_term)

    def wait(self) -> None:
        """Relay the lines that arrived for a moment; report the attempts that finished."""
        if not self.running:
            return
        self._wait(0.2)
        if self.give_up_at is not None and time.monotonic() > self.give_up_at:
            self._give_up()

    def _wait(self, timeout: float) -> None:
        """Relay the lines that arrived; handle the attempts that finished."""
        try:
            item = self.inbox.get(timeout=timeout)
        except queue.Empty:
            item = None
        while item is not None:
            kind, payload = item
            if kind == "future":
                self._future_ended(payload)
            elif "done" in payload:
                entry = self.running.pop(payload["done"], None)
                if entry is not None:
                    self._completed(entry, payload["result"])
            else:
                self._emit(payload)
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                item = None
        now = time.monotonic()
        for key, entry in list(self.running.items()):
            if entry.overdue_at is not None and now > entry.overdue_at:
                del self.running[key]  # the result message was lost: ask Dask for it
                self._completed(entry, self._result(entry))

    def _future_ended(self, future: Any) -> None:
        """A job's future ended: its result follows its lines on the topic, unless Dask could
        not run it (an error, a cancel)."""
        entry = self.running.get(future.key)
        if entry is None:
            return
        if future.status == "finished":
            entry.overdue_at = time.monotonic() + LINES_WAIT
            return
        del self.running[future.key]
        self._completed(entry, self._result(entry))

    def _result(self, entry: _OnCluster) -> dict[str, Any]:
        try:
            return entry.future.result()
        except BaseException as exc:  # KilledWorker, CancelledError, a worker-side error
            message = f"Dask could not run this task: {type(exc).__name__}: {exc}"
            self.say(message, entry.attempt, True)
            return {}

    def close(self) -> None:
        """The run is over: leave the cluster's topic and event, relay the last lines, close
        the log sinks."""
        try:
            self.client.unsubscribe_topic(self.topic)
            self.stop_event.clear()
            if self.semaphore is not None:
                self.semaphore.close()
        except Exception:  # the cluster is already gone: nothing left to release there
            pass
        self._relay_lines()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self.say(f"log sink {type(sink).__name__} failed to close: {exc}", force=True)

    # -- the dispatcher's backend --------------------------------------------------------------

    def lookahead(self) -> int:
        """One attempt queued on the cluster behind each of the ``--max-workers`` slots."""
        return self.max_workers

    def launch(self, attempt: Attempt) -> None:
        """Submit one attempt: a Dask task that runs ``flow step`` on a worker."""
        ctx, spec, group = self.ctx, attempt.spec, attempt.group
        seconds = group.policy.timeout
        stops = (self.stop_name, self._gang_event(attempt)) if group.gang else (self.stop_name,)
        job = Job(
            argv=tuple(step_command(ctx, spec, self.package)),
            env=self.env,
            cwd=os.getcwd(),
            topic=self.topic,
            task=(spec.step, spec.task_id, spec.attempt),
            stop_events=stops,
            kill_after=seconds + TIMEOUT_GRACE if seconds else None,
            store=(ctx.store.root, ctx.store.flow_name, ctx.run_id),
            flow_file=None if self.package else ctx.flow_file,
            package=self.package,
            slots=None if group.gang else self.slots,
            configs=self.configs,
            decospecs=tuple(ctx.options.decospecs),
            spec=spec,
        )
        key = f"{self.prefix}-{spec.step}-{spec.task_id}-{spec.attempt}"
        future = self.client.submit(
            run_job,
            job,
            key=key,
            pure=False,
            retries=0,
            resources=self.placement.resources(spec.step) or None,
            workers=self.placement.gang_workers(len(group.members)) if group.gang else None,
            allow_other_workers=False,
        )
        self.running[key] = _OnCluster(attempt, future, time.time())
        future.add_done_callback(lambda f: self.inbox.put(("future", f)))
        self.say("Task is starting" + (f" (retry {spec.attempt})." if spec.attempt else "."),
                 attempt)  # fmt: skip

    def stop(self, attempts: Sequence[Attempt] | None) -> None:
        """Stop the other nodes of a gang, or every running task (the run failed): their
        supervisors on the workers kill the steps' process groups. Supervisors that do not
        answer within :data:`STOP_WAIT` are given up on."""
        from distributed import Event

        if attempts is None:
            for entry in self.running.values():
                entry.stopped = True
                self.say("Stopping this task: the workflow is failing.", entry.attempt, True)
            self.stop_event.set()
            if self.give_up_at is None:
                self.give_up_at = time.monotonic() + STOP_WAIT
            return
        for name in {self._gang_event(a) for a in attempts}:
            Event(name, client=self.client).set()

    def refusal(self, group: TaskGroup) -> str | None:
        """A gang must fit on one host of the cluster."""
        if not group.gang:
            return None
        return self.placement.gang_refusal(group.step, len(group.members))

    def _gang_event(self, attempt: Attempt) -> str:
        return f"{self.prefix}-gang-{attempt.group.task_ids[0]}-{attempt.attempt}"

    # -- output --------------------------------------------------------------------------------

    def _relay_lines(self) -> None:
        """Relay the lines that arrived (the run is over: nothing else is expected)."""
        while True:
            try:
                kind, msg = self.inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "topic" and "done" not in msg:
                self._emit(msg)

    def _emit(self, msg: dict[str, Any]) -> None:
        step, task_id, attempt, stream = msg["step"], msg["task_id"], msg["attempt"], msg["stream"]
        self.received[(task_id, attempt, stream)] += len(msg["lines"])
        last = len(msg["lines"]) - 1
        for i, raw in enumerate(msg["lines"]):
            line = LogLine(
                self.info,
                step,
                task_id,
                attempt,
                stream,
                bytes(raw).decode("utf-8", "surrogateescape"),
                msg["t"],
                msg.get("pid"),
                newline=msg["newline"] or i < last,
            )
            for sink in list(self.sinks):
                try:
                    sink.emit(line)
                except Exception as exc:
                    self.sinks.remove(sink)
                    name = type(sink).__name__
                    self.say(f"log sink {name} failed and was disabled: {exc}", force=True)

    def _check_lines(self, attempt: Attempt, expected: dict[str, int]) -> None:
        """Say so if lines the attempt wrote never arrived (they precede its result on the
        topic, so only when the result came another way)."""
        key = (attempt.task_id, attempt.attempt)
        if any(self.received[(*key, s)] < n for s, n in expected.items()):
            self.say("Some output lines of this task did not arrive in time.", attempt, True)

    # -- exits ---------------------------------------------------------------------------------

    def _completed(self, entry: _OnCluster, result: dict[str, Any]) -> None:
        attempt = entry.attempt
        self._check_lines(attempt, result.get("lines") or {})
        returncode = result.get("returncode")
        if result.get("reused"):  # the attempt had finished on a worker that died afterwards
            record = self.ctx.store.read_task_record(
                self.ctx.run_id, attempt.step, attempt.task_id, attempt.attempt
            )
            returncode = 0 if record is not None and record.get("task_ok") else 1
        lost = bool(result.get("lost"))
        if lost:  # the worker died: the step died with it; Dask's rerun ran nothing
            returncode = -signal.SIGKILL
            self.say("The Dask worker running this task died: it runs again as a new attempt.",
                     attempt, True)  # fmt: skip
            self._emit({"step": attempt.step, "task_id": attempt.task_id,
                        "attempt": attempt.attempt, "stream": "stderr",
                        "lines": [b"The Dask worker running this task died."],
                        "t": time.time(), "newline": True, "pid": None})  # fmt: skip
        if result.get("ran") is False:
            self._emit({"step": attempt.step, "task_id": attempt.task_id,
                        "attempt": attempt.attempt, "stream": "stderr",
                        "lines": [b"The task was stopped by the runtime before it started."],
                        "t": time.time(), "newline": True, "pid": None})  # fmt: skip
        if result.get("stopped") == "timeout":
            self.say("Task exceeded its @timeout: its process group was killed.", attempt, True)
        stopped = entry.stopped or result.get("stopped") is not None
        ending = abnormal_end_line(returncode, stopped)
        if ending is not None:  # the task's own stderr log says how it ended
            self._emit({"step": attempt.step, "task_id": attempt.task_id,
                        "attempt": attempt.attempt, "stream": "stderr",
                        "lines": [ending.encode()], "t": time.time(), "newline": True,
                        "pid": result.get("pid")})  # fmt: skip
        self.dispatcher.finished(
            attempt,
            returncode,
            stopped=entry.stopped,
            started_at=entry.started_at,
            pid=result.get("pid"),
            lost=lost,
            started=result.get("ran") is not False,  # False: stopped while queued, never ran
        )

    def _give_up(self) -> None:
        """Stopped steps whose supervisors cannot answer: cancel them, report them stopped."""
        entries = list(self.running.values())
        self.running.clear()
        self.client.cancel([entry.future for entry in entries])
        for entry in entries:
            self.dispatcher.finished(entry.attempt, None, stopped=True, started_at=entry.started_at)


def _configs(ctx: RunContext) -> tuple[tuple[str, str], ...]:
    """The run's configs as ``flow step`` gets them: (name, JSON) as in
    :func:`~flowkernel.engine.runs.step_command`."""
    import json

    from flowkernel.flow.config import flow_configs, thaw

    return tuple((c.name, json.dumps(thaw(c.value))) for c in flow_configs(ctx.flow_cls).values())


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise Interrupted()
