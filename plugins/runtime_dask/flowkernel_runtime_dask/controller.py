"""The dask runtime's controller: schedules a run's tasks on a Dask cluster from the ``flow``
process.

The controller owns every decision (what is ready, retries, ``@catch``, fail-fast, records,
hooks, log sinks) exactly as the local runtime does; Dask only places and runs
:func:`flowkernel_runtime_dask.worker.run_job`, which runs ``flow step`` in a child process on
a worker and relays its lines. Completions and log lines arrive on Dask's event-loop thread and
are queued; this thread handles them, so hooks and sinks are called from one thread only.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import time
import uuid
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

import attrs

from flowkernel.engine.executor import TaskSpec
from flowkernel.engine.logs import abnormal_end_line
from flowkernel.engine.runs import clone_record, resume_plan, step_command
from flowkernel.engine.scheduling import Frontier, ReadyTask, TooManySplitsError
from flowkernel.flow.decorators import MAX_ATTEMPTS, step_decorators, timeout_seconds
from flowkernel.specs import LogLine, RunInfo, RunResult, TaskInfo
from flowkernel_runtime_dask.placement import Placement
from flowkernel_runtime_dask.worker import KILL_GRACE, Job, run_job

if TYPE_CHECKING:
    from flowkernel.engine.runs import RunContext
    from flowkernel.kernel import Kernel

#: Extra seconds a task gets past its @timeout (the in-task alarm fires first) before its
#: process group is killed on the worker.
TIMEOUT_GRACE = 5.0
#: Seconds to wait, once an attempt finished, for its last relayed lines to arrive.
LINES_WAIT = 5.0
#: A task that exits with this code is never retried (as in Metaflow).
NO_RETRY_EXIT_CODE = 202
#: Environment variables of the controller every step gets too (the worker has its own).
FORWARDED_ENV_PREFIX = "FLOWKERNEL_"


class _Interrupted(Exception):
    pass


@attrs.define(eq=False)
class Member:
    """One task of a launch group, and its current attempt on the cluster."""

    ready: ReadyTask
    task_id: str
    future: Any = None
    result: dict[str, Any] | None = None
    error: str | None = None  #: why Dask could not run it (e.g. KilledWorker)
    record: dict[str, Any] | None = None
    ok: bool = False
    started_at: float = 0.0


@attrs.define(eq=False)
class Group:
    """Tasks launched, retried and judged together: one task, or every node of a ``@parallel``
    gang. ``stop_event`` stops the group's other members when one of them fails."""

    step: str
    members: list[Member]
    attempt: int = 0
    running: int = 0
    failure: str | None = None
    stopped: bool = False  #: stopped by the controller (fail-fast, interrupt): never retried
    stop_event: str | None = None


class DaskRuntime:
    """The ``dask`` runtime: ``run(ctx)`` executes a prepared run on a Dask cluster."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel

    def run(self, ctx: RunContext) -> RunResult:
        from flowkernel_runtime_dask.cluster import dask_client

        extra = ctx.options.extra
        say = _Console(ctx.options.quiet)
        with dask_client(
            extra.get("dask_scheduler") or os.environ.get("FLOWKERNEL_DASK_SCHEDULER"),
            extra.get("dask_scheduler_file"),
            ctx.options.max_workers,
            say,
        ) as client:
            return _Controller(self.kernel, ctx, client, say).execute()

    resume = run


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


class _Controller:
    def __init__(self, kernel: Kernel, ctx: RunContext, client: Any, say: _Console):
        self.kernel, self.ctx, self.client, self.console = kernel, ctx, client, say
        self.info = RunInfo(
            flow_name=ctx.store.flow_name,
            run_id=ctx.run_id,
            datastore_root=ctx.store.root,
            runtime="dask",
            origin_run_id=ctx.origin_run_id,
            tags=ctx.options.tags,
        )
        self.frontier = Frontier(ctx.graph, ctx.options.max_num_splits)
        self.queue: deque[ReadyTask] = deque()
        self.running: dict[str, tuple[Group, Member]] = {}  #: by Dask key
        self.next_task_id = 1
        self.failure: str | None = None
        self.failed_steps: list[str] = []
        nonce = uuid.uuid4().hex[:8]
        self.prefix = f"flowkernel-{ctx.store.flow_name}-{ctx.run_id}-{nonce}"
        self.topic = f"{self.prefix}-logs"
        self.stop_name = f"{self.prefix}-stop"
        self.done: queue.Queue = queue.Queue()
        self.lines: queue.Queue = queue.Queue()
        self.received: Counter[tuple[str, int, str]] = Counter()
        self.env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}

    def say(
        self, text: str, member: Member | None = None, force: bool = False, err: bool = False
    ) -> None:
        where = f"[{self.ctx.run_id}/{member.ready.step}/{member.task_id}] " if member else ""
        self.console(text, where, force, err)

    # -- main loop -----------------------------------------------------------------------------

    def execute(self) -> RunResult:
        from distributed import Event

        self.placement = Placement.of(self.client, self.ctx)
        self.sinks = list(self.kernel.log_sinks(self.info))
        self.stop_event = Event(self.stop_name, client=self.client)
        self.client.subscribe_topic(self.topic, lambda event: self.lines.put(event[1]))
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        self.kernel.run_started(self.info)
        if self.ctx.origin_run_id:
            cloned, rerun = resume_plan(self.ctx)
            self.say(f"Resuming run {self.ctx.origin_run_id} as run {self.ctx.run_id}.", force=True)
            self.say(f"Cloned from the origin run: {', '.join(cloned) or 'nothing'}", force=True)
            self.say(f"Run again: {', '.join(rerun) or 'nothing'}", force=True)
        self.say(f"Workflow starting (run-id {self.ctx.run_id}) on Dask:", force=True)
        try:
            self.queue.extend(self.frontier.start(self.ctx.params_record))
            self._loop()
        except (KeyboardInterrupt, _Interrupted):
            self.failure = self.failure or "interrupted"
            self.say("Workflow interrupted: stopping every task.", force=True)
            self._stop_all()
        finally:
            signal.signal(signal.SIGTERM, old_term)
            self._cleanup()
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
        while (self.queue and self.failure is None) or self.running:
            while self.queue and self.failure is None and len(self.running) < max_workers:
                self._start(self.queue.popleft())
            if self.running:
                self._wait(0.2)

    def _wait(self, timeout: float) -> None:
        """Relay the lines that arrived; handle the attempts that finished."""
        try:
            future = self.done.get(timeout=timeout)
        except queue.Empty:
            future = None
        self._relay_lines()
        while future is not None:
            self._completed(future)
            try:
                future = self.done.get_nowait()
            except queue.Empty:
                future = None

    def _cleanup(self) -> None:
        try:
            self.client.unsubscribe_topic(self.topic)
            self.stop_event.clear()
        except Exception:  # the cluster is already gone: nothing left to release there
            pass
        self._relay_lines()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self.say(f"log sink {type(sink).__name__} failed to close: {exc}", force=True)

    # -- launching -----------------------------------------------------------------------------

    def _new_task_id(self) -> str:
        task_id = str(self.next_task_id)
        self.next_task_id += 1
        return task_id

    def _start(self, first: ReadyTask) -> None:
        """Clone the task (resume) or launch it; a ``@parallel`` gang starts all its nodes."""
        readies = [first]
        if first.num_parallel:
            readies += [self.queue.popleft() for _ in range(first.num_parallel - 1)]
        control = self._new_task_id()
        task_ids = [control] + [f"{control}_node_{i}" for i in range(1, len(readies))]
        clones = [self.ctx.clones.get(r.key) for r in readies]
        if all(clones):  # resume: a gang is cloned whole or runs again whole
            for ready, clone, task_id in zip(readies, clones, task_ids, strict=True):
                record = clone_record(self.ctx, clone, task_id, ready.inputs)
                self.kernel.task_finished(
                    TaskInfo(self.info, ready.step, task_id, 0, True, 0, cloned=True)
                )
                self._succeeded(record)
            return
        members = [Member(r, t) for r, t in zip(readies, task_ids, strict=True)]
        group = Group(first.step, members)
        if first.num_parallel:
            group.stop_event = f"{self.prefix}-gang-{control}"
            refusal = self.placement.gang_refusal(first.step, len(members))
            if refusal:
                self._fail(refusal, first.step)
                return
        self._launch(group)

    def _launch(self, group: Group) -> None:
        ctx = self.ctx
        decos = step_decorators(getattr(ctx.flow_cls, group.step))
        seconds = timeout_seconds(decos["timeout"].attributes) if "timeout" in decos else 0
        stops = (self.stop_name,) + ((group.stop_event,) if group.stop_event else ())
        workers = self.placement.gang_workers(len(group.members)) if group.stop_event else None
        group.running = len(group.members)
        group.failure = None
        for member in group.members:
            ready = member.ready
            spec = TaskSpec(
                flow_name=ctx.store.flow_name,
                run_id=ctx.run_id,
                step=ready.step,
                task_id=member.task_id,
                attempt=group.attempt,
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
            ctx.store.mark_started(ctx.run_id, ready.step, member.task_id, group.attempt)
            job = Job(
                argv=tuple(step_command(ctx, spec)),
                env=self.env,
                cwd=os.getcwd(),
                topic=self.topic,
                task=(ready.step, member.task_id, group.attempt),
                stop_events=stops,
                kill_after=seconds + TIMEOUT_GRACE if seconds else None,
                store=(ctx.store.root, ctx.store.flow_name, ctx.run_id),
            )
            key = f"{self.prefix}-{ready.step}-{member.task_id}-{group.attempt}"
            member.result = member.error = member.record = None
            member.ok = False
            member.started_at = time.time()
            member.future = self.client.submit(
                run_job,
                job,
                key=key,
                pure=False,
                retries=0,
                resources=self.placement.resources(ready.step) or None,
                workers=workers,
                allow_other_workers=False,
            )
            self.running[key] = (group, member)
            member.future.add_done_callback(self.done.put)
            retry = f" (retry {group.attempt})." if group.attempt else "."
            self.say("Task is starting" + retry, member)

    # -- output --------------------------------------------------------------------------------

    def _relay_lines(self) -> None:
        while True:
            try:
                msg = self.lines.get_nowait()
            except queue.Empty:
                return
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

    def _await_lines(self, member: Member, attempt: int) -> None:
        """Relay lines until every line the attempt wrote has arrived (they travel through the
        scheduler on a different path than the result)."""
        expected = (member.result or {}).get("lines") or {}
        deadline = time.monotonic() + LINES_WAIT
        while any(self.received[(member.task_id, attempt, s)] < n for s, n in expected.items()):
            if time.monotonic() > deadline:
                self.say("Some output lines of this task did not arrive in time.", member, True)
                return
            try:
                self._emit(self.lines.get(timeout=0.05))
            except queue.Empty:
                pass

    # -- exits ---------------------------------------------------------------------------------

    def _completed(self, future: Any) -> None:
        entry = self.running.pop(future.key, None)
        if entry is None:
            return
        group, member = entry
        try:
            member.result = future.result()
        except BaseException as exc:  # KilledWorker, CancelledError, a worker-side error
            member.error = f"{type(exc).__name__}: {exc}"
        self._await_lines(member, group.attempt)
        self._note_abnormal_end(member, group)
        store, ctx = self.ctx.store, self.ctx
        record = store.read_task_record(ctx.run_id, group.step, member.task_id, group.attempt)
        result = member.result or {}
        returncode = result.get("returncode")
        if result.get("reused"):  # the attempt had finished on a worker that died afterwards
            returncode = 0 if record is not None and record.get("task_ok") else 1
        member.ok = returncode == 0 and record is not None and bool(record.get("task_ok"))
        if not member.ok and record is None:
            record = self._record_crash(member, group.attempt, self._status(member, returncode))
        member.record = record
        member.result = {**result, "returncode": returncode}
        group.running -= 1
        if member.ok:
            caught = not record.get("success")
            self.say("Task finished; @catch handled its exception." if caught else
                     "Task finished successfully.", member)  # fmt: skip
        elif group.failure is None:
            group.failure = self._status(member, returncode)
            if group.running and group.stop_event:
                from distributed import Event

                self.say("Stopping the other nodes of this gang: a node failed.", member, True)
                Event(group.stop_event, client=self.client).set()
        if group.running == 0:
            self._group_done(group)

    def _note_abnormal_end(self, member: Member, group: Group) -> None:
        """Append how the step's process died to its own stderr log, as the local runtime does."""
        result = member.result or {}
        stopped = group.stopped or result.get("stopped") is not None
        ending = abnormal_end_line(result.get("returncode"), stopped)
        if ending is not None:
            msg = {"step": group.step, "task_id": member.task_id, "attempt": group.attempt,
                   "stream": "stderr", "lines": [ending.encode()], "t": time.time(),
                   "newline": True, "pid": result.get("pid")}  # fmt: skip
            self._emit(msg)

    def _group_done(self, group: Group) -> None:
        decos = step_decorators(getattr(self.ctx.flow_cls, group.step))
        retry = (
            group.failure is not None
            and not group.stopped
            and self.failure is None
            and all(m.result.get("returncode") != NO_RETRY_EXIT_CODE for m in group.members)
            and group.attempt + 1 < _max_attempts(decos)
        )
        for member in group.members:
            self.kernel.task_finished(
                TaskInfo(
                    self.info,
                    group.step,
                    member.task_id,
                    group.attempt,
                    member.ok,
                    member.result.get("returncode"),
                    will_retry=retry,
                )
            )
        if group.failure is None:
            for member in sorted(group.members, key=lambda m: m.ready.split_index or 0):
                self._succeeded(member.record)
            return
        first = group.members[0]
        if group.stop_event:
            from distributed import Event

            Event(group.stop_event, client=self.client).clear()
        if retry:
            self.say(f"Task failed ({group.failure}); retrying.", first, force=True)
            group.attempt += 1
            self._launch(group)
        elif group.stopped or self.failure is not None:
            self.say(f"Task was stopped ({group.failure}).", first, force=True)
        else:
            self.say(f"Task failed ({group.failure}).", first, force=True)
            what = f"gang {first.task_id}" if group.stop_event else f"task-id {first.task_id}"
            self._fail(f"Step {group.step} ({what}) failed.", group.step)

    def _status(self, member: Member, returncode: int | None) -> str:
        if member.error:
            return f"Dask could not run it: {member.error}"
        result = member.result or {}
        if result.get("stopped") == "timeout":
            return "killed after its @timeout"
        if returncode is None:
            return "no exit status"
        if returncode < 0:
            try:
                return f"killed by {signal.Signals(-returncode).name}"
            except ValueError:
                return f"killed by signal {-returncode}"
        return f"exit code {returncode}"

    def _succeeded(self, record: dict[str, Any]) -> None:
        try:
            ready = self.frontier.task_finished(record)
        except TooManySplitsError as exc:
            self._fail(str(exc), record["step"])
            return
        node = self.ctx.graph[record["step"]]
        if node.type == "foreach":
            what = "a gang of" if node.num_parallel is not None else "foreach yields"
            self.say(f"Step {node.name}: {what} {len(ready)} child tasks.")
        self.queue.extend(ready)

    def _record_crash(self, member: Member, attempt: int, status: str) -> dict[str, Any]:
        """The step died without writing its record: write a failed one for it."""
        ready = member.ready
        record = {
            "flow": self.ctx.store.flow_name,
            "run_id": self.ctx.run_id,
            "step": ready.step,
            "task_id": member.task_id,
            "attempt": attempt,
            "success": False,
            "task_ok": False,
            "artifacts": {},
            "info": {},
            "input_paths": list(ready.input_paths),
            "split_index": ready.split_index,
            "foreach_stack": [],
            "iteration_stack": [],
            "transition": None,
            "exception": {"type": "TaskProcessDied", "message": f"the task process {status}"},
            "returncode": (member.result or {}).get("returncode"),
            "started_at": member.started_at,
            "finished_at": time.time(),
            "pid": (member.result or {}).get("pid"),
        }
        self.ctx.store.write_task_record(record)
        return record

    # -- failure -------------------------------------------------------------------------------

    def _fail(self, message: str, step: str) -> None:
        if self.failure is None:
            self.failure = message
            self.failed_steps.append(step)
            self.queue.clear()
            self._stop_running()

    def _stop_running(self) -> None:
        """Ask every running step to stop: their runners kill the process groups on the workers."""
        if not self.running:
            return
        for group, member in self.running.values():
            group.stopped = True
            self.say("Stopping this task: the workflow is failing.", member, force=True)
        self.stop_event.set()

    def _stop_all(self) -> None:
        """Stop every running step and wait until the runners report them gone."""
        self._stop_running()
        deadline = time.monotonic() + KILL_GRACE + 5.0
        while self.running and time.monotonic() < deadline:
            self._wait(0.05)
        if self.running:  # runners that cannot answer: give up on them
            self.client.cancel([m.future for _, m in self.running.values()])
            self.running.clear()


def _user_retries(decos: dict[str, Any]) -> int:
    return int(decos["retry"]["times"]) if "retry" in decos else 0


def _max_attempts(decos: dict[str, Any]) -> int:
    error_retries = 3 if "catch" in decos else 0
    return min(MAX_ATTEMPTS, 1 + _user_retries(decos) + error_retries)


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise _Interrupted()
