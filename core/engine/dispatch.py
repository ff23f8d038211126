"""The runtime-independent half of executing a run: which attempt to start next, what a
finished attempt means, when to retry, when the run has failed.

A runtime owns processes (or futures, or pods); the :class:`Dispatcher` owns everything else and
is the same for every runtime, so a run behaves the same whichever engine executes it:

* the :class:`~flowkernel.engine.scheduling.Frontier` and the queue of ready tasks;
* task ids (one counter per run, from 1; ``@parallel`` nodes are ``<id>_node_<i>``);
* resume: cloning a task instead of running it;
* :class:`TaskGroup`: tasks that start, fail and retry together. A ``@parallel`` step's N
  tasks form one group; every other task is a group of one, handled by the same code;
* the :class:`~flowkernel.engine.policy.RetryPolicy`, the crashed record of a process that died
  without writing its own, the ``flowkernel_task_finished`` hook, fail-fast;
* durability before progress: a group's successors are queued only once the backend's
  :meth:`Backend.commit` says the group's records are durable.

* the run itself (:meth:`Dispatcher.run`): the ``run_started`` / ``run_finished`` hooks, the
  launch loop within ``--max-workers``, interrupts, the console's first and last lines and the
  :class:`~flowkernel.specs.RunResult`.

A runtime implements :class:`Backend` (start an attempt, wait for ends, stop some, print a
message), reports each attempt's end to :meth:`Dispatcher.finished` and calls
:meth:`Dispatcher.run` once.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

from flowkernel.engine.executor import TaskSpec
from flowkernel.engine.policy import RetryPolicy, describe_exit
from flowkernel.engine.progress import Progress
from flowkernel.engine.records import TaskRecord
from flowkernel.engine.runs import clone_record, resume_plan
from flowkernel.engine.scheduling import Frontier, ReadyTask, TooManySplitsError
from flowkernel.errors import StorageError
from flowkernel.specs import RunInfo, RunResult, TaskInfo
from flowkernel.unbounded_foreach import UBF_CONTROL

if TYPE_CHECKING:
    from flowkernel.engine.runs import RunContext
    from flowkernel.kernel import Kernel


@attrs.define(eq=False)
class TaskGroup:
    """Tasks that start together, fail together and are retried together.

    The nodes of a ``@parallel`` step (``gang`` is True), or one ordinary task.
    """

    step: str
    members: tuple[ReadyTask, ...]
    task_ids: tuple[str, ...]
    policy: RetryPolicy
    gang: bool = False
    attempt: int = 0
    #: members of the current attempt still running (by index)
    running: set[int] = attrs.field(factory=set)
    #: successful records of the current attempt (by member index)
    records: dict[int, TaskRecord] = attrs.field(factory=dict)
    #: the first failure of the current attempt, e.g. ``"node 1 exited with status 1"``
    failure: str | None = None
    #: whether the current attempt, having failed, will be retried (decided at its first failure)
    will_retry: bool = False


@attrs.frozen
class Attempt:
    """One attempt of one member of a group: what a runtime starts and reports back."""

    group: TaskGroup = attrs.field(eq=False)
    member: int  #: index in ``group.members`` (the ``@parallel`` node number)
    spec: TaskSpec

    @property
    def ready(self) -> ReadyTask:
        return self.group.members[self.member]

    @property
    def step(self) -> str:
        return self.spec.step

    @property
    def task_id(self) -> str:
        return self.spec.task_id

    @property
    def attempt(self) -> int:
        return self.spec.attempt


class Interrupted(Exception):
    """Raised by a backend (from :meth:`Backend.wait` or a signal handler) to interrupt the run:
    :meth:`Dispatcher.run` then stops every attempt and fails the run as ``"interrupted"``, as
    for ``KeyboardInterrupt``."""


class Backend(Protocol):
    """What a runtime does for the dispatcher: where and how attempts execute.

    A runtime's backend subclasses this protocol (it then inherits the defaults of
    :meth:`refusal` and :meth:`close`).
    """

    def launch(self, attempt: Attempt) -> None:
        """Start ``attempt`` (its ``.started`` marker is written: before this call, or when
        it starts if :meth:`reports_starts`) without waiting for it; its end is reported to
        :meth:`Dispatcher.finished`, from :meth:`wait` or :meth:`stop`."""

    def wait(self) -> None:
        """Wait a little (a fraction of a second at most, or one attempt's execution) for
        launched attempts to end, and report each end to :meth:`Dispatcher.finished`. Called
        in a loop while attempts are in flight; may raise :class:`Interrupted`."""

    def stop(self, attempts: Sequence[Attempt] | None) -> None:
        """Stop these running attempts (``None``: every running attempt: the run failed; start
        nothing more). Their ends are reported as usual, here or from :meth:`wait`."""

    def say(
        self, text: str, attempt: Attempt | None = None, force: bool = False, err: bool = False
    ) -> None:
        """An engine message for the user (``force``: even with ``--quiet``; ``err``: on
        stderr, e.g. the failed run's last line)."""

    def lookahead(self) -> int:
        """How many attempts the dispatcher may launch past ``--max-workers``: they wait on the
        backend's side and start as soon as a slot frees, without a round trip through the
        dispatcher (a remote engine's queue). A backend returning more than 0 promises that at
        most ``--max-workers`` of its attempts *run* at once. Never applied while a
        ``@parallel`` gang is in flight or next (a gang starts only below ``--max-workers``, as
        without lookahead). Read once, when the run's launch loop starts. A queued attempt
        counts as in flight from its launch for the dispatcher; its real start is the
        backend's to report (its ``started_at``, and
        :meth:`Dispatcher.started` if :meth:`reports_starts`), and one stopped before it
        started is reported with ``finished(..., started=False)``. A retry the dispatcher
        launches should take the next free slot, ahead of the attempts queued already (as
        without lookahead). The default, 0: every launched attempt may run at once."""
        return 0

    def reports_starts(self) -> bool:
        """Whether the backend calls :meth:`Dispatcher.started` when each attempt really
        starts (one it queued, see :meth:`lookahead`, starts after its launch): the progress
        counts then show an attempt as running from its start, not from its launch. Read
        once, when the run starts. The default, False: running from the launch."""
        return False

    def refusal(self, group: TaskGroup) -> str | None:
        """Why ``group`` cannot start on this backend (the run fails with this message), or
        ``None``: it can. E.g. a ``@parallel`` gang larger than any one host."""
        return None

    def commit(self, records: Sequence[TaskRecord], then: Callable[[], None]) -> None:
        """Make ``records`` (successful attempts of one group, written by this backend's
        attempts) durable, then call ``then``: the group's successors are queued only then.
        A backend whose attempts fsync their own records (``flow step``) keeps this default,
        which calls ``then`` at once; one that commits in batches calls it later, from
        :meth:`wait`, and must not return from :meth:`close` before it has."""
        then()

    def close(self) -> None:
        """The run is over (no attempt in flight): release what it used (log sinks, pollers).
        Called once, before the run's last line and ``run_finished``."""


class Dispatcher:
    """Runs the shared policy of one run for a runtime (see the module docstring)."""

    def __init__(self, kernel: Kernel, ctx: RunContext, backend: Backend, runtime: str):
        self.kernel = kernel
        self.ctx = ctx
        self.backend = backend
        self.info = RunInfo(
            flow_name=ctx.store.flow_name,
            run_id=ctx.run_id,
            datastore_root=ctx.store.root,
            runtime=runtime,
            origin_run_id=ctx.origin_run_id,
            tags=ctx.options.tags,
            max_log_size=ctx.options.max_log_size,
        )
        self.frontier = Frontier(ctx.graph, ctx.options.max_num_splits)
        self.queue: deque[ReadyTask] = deque()
        #: why the run failed (``None`` while it has not)
        self.failure: str | None = None
        self.failed_steps: list[str] = []
        #: attempts launched whose end has not been reported to :meth:`finished` yet
        self.in_flight = 0
        #: groups that succeeded and wait for the backend's :meth:`~Backend.commit`
        self.committing = 0
        #: attempts of ``@parallel`` gangs in flight (no lookahead while there are any)
        self.gang_in_flight = 0
        self._next_task_id = 1
        self._policies: dict[str, RetryPolicy] = {}
        #: the backend reports attempts' real starts (:meth:`Backend.reports_starts`)
        self.starts_reported = False
        #: counts per step, fed here; a runtime may replace it with a live display
        #: (:func:`~flowkernel.engine.progress.progress_for`) and calls its ``tick``/``stop``
        self.progress = Progress()

    # -- the run -------------------------------------------------------------------------------

    def run(self, where: str = "") -> RunResult:
        """Execute the run to its end through the backend and return its result.

        Fires ``run_started``, prints the resume plan and the starting line (``where`` is
        appended to it, e.g. ``" on Dask"``), then launches ready groups while fewer than
        ``--max-workers`` attempts are in flight (plus the backend's
        :meth:`~Backend.lookahead`; a ``@parallel`` gang starts whole, past the limit) and has
        the backend :meth:`~Backend.wait` for their ends. ``KeyboardInterrupt``,
        :class:`Interrupted` or a datastore failure stops every attempt and fails the run. Then
        the backend is closed, ``Done!`` or ``Workflow failed: ...`` (on stderr) printed, and
        ``run_finished`` fired with the returned result. Task failures are results, not
        exceptions.
        """
        ctx, say = self.ctx, self.backend.say
        self.kernel.run_started(self.info)
        if ctx.origin_run_id:
            cloned, rerun = resume_plan(ctx)
            say(f"Resuming run {ctx.origin_run_id} as run {ctx.run_id}.", force=True)
            say(f"Cloned from the origin run: {', '.join(cloned) or 'nothing'}", force=True)
            say(f"Run again: {', '.join(rerun) or 'nothing'}", force=True)
        say(f"Workflow starting (run-id {ctx.run_id}){where}:", force=True)
        self.starts_reported = self.backend.reports_starts()
        try:
            self.start()
            self._loop()
        except (KeyboardInterrupt, Interrupted):
            self._stop_everything("interrupted", "Workflow interrupted: stopping every task.")
        except StorageError as exc:  # the datastore failed under us (disk full, read-only)
            self._stop_everything(str(exc), f"Storage error: {exc}; stopping every task.", True)
        finally:
            self.backend.close()
            self.progress.stop()
        return self._ending()

    def _loop(self) -> None:
        max_workers = max(1, self.ctx.options.max_workers)
        ahead = max(0, self.backend.lookahead())
        while self.has_ready or self.in_flight > 0 or self.committing:
            while self.has_ready and self.in_flight < max_workers + self._ahead(ahead):
                group = self.next_group()
                if group is None:
                    continue
                refusal = self.backend.refusal(group)
                if refusal:
                    self.fail(refusal, group.step)
                else:
                    self.launch(group)
            self.backend.wait()
            self.progress.tick()

    def _ahead(self, lookahead: int) -> int:
        """The lookahead that applies now: none around a gang (see :meth:`Backend.lookahead`)."""
        if self.gang_in_flight or (self.queue and self.queue[0].num_parallel is not None):
            return 0
        return lookahead

    def _stop_everything(self, failure: str, message: str, err: bool = False) -> None:
        """Fail the run with ``failure`` (unless it failed already) and wait for every attempt
        in flight to end."""
        self.failure = self.failure or failure
        self.backend.say(message, force=True, err=err)
        self.backend.stop(None)
        while self.in_flight > 0 or self.committing:
            self.backend.wait()

    def _ending(self) -> RunResult:
        success = self.failure is None
        if success:
            self.backend.say("Done!", force=True)
        else:
            sys.stdout.flush()  # the summary on stderr comes after everything above it
            self.backend.say(f"Workflow failed: {self.failure}", force=True, err=True)
        result = RunResult(
            run=self.info,
            success=success,
            message=self.failure or "",
            failed_steps=tuple(self.failed_steps),
        )
        self.kernel.run_finished(self.info, result)
        return result

    # -- scheduling ----------------------------------------------------------------------------

    def start(self) -> None:
        """Queue the start task."""
        self._enqueue(self.frontier.start(self.ctx.params_record))

    @property
    def has_ready(self) -> bool:
        """A task is ready and the run has not failed."""
        return bool(self.queue) and self.failure is None

    def policy(self, step: str) -> RetryPolicy:
        policy = self._policies.get(step)
        if policy is None:
            policy = self._policies[step] = RetryPolicy.of_step(self.ctx.flow_cls, step)
        return policy

    def next_group(self) -> TaskGroup | None:
        """The next group to launch, with task ids, or ``None`` if nothing is ready.

        Tasks a resume clones are recorded on the way (their successors are queued).
        """
        while self.has_ready:
            first = self.queue.popleft()
            size = first.num_parallel or 1
            members = (first, *(self.queue.popleft() for _ in range(size - 1)))
            if first.task_id is not None:  # an unbounded foreach's mapper: named by its control
                task_ids: tuple[str, ...] = (first.task_id,)
            else:
                control = str(self._next_task_id)
                self._next_task_id += 1
                task_ids = (control, *(f"{control}_node_{i}" for i in range(1, size)))
            clones = [self.ctx.clones.get(m.key) for m in members]
            if all(clones):  # resume: a gang is cloned whole or runs again whole
                for member, clone, task_id in zip(members, clones, task_ids, strict=True):
                    self._clone(member, clone, task_id)
                continue
            gang = first.num_parallel is not None
            return TaskGroup(first.step, members, task_ids, self.policy(first.step), gang)
        return None

    def launch(self, group: TaskGroup) -> list[Attempt]:
        """Start the group's current attempt: every member, through the backend."""
        group.records.clear()
        group.failure = None
        group.will_retry = False
        attempts = [self._attempt(group, i) for i in range(len(group.members))]
        store = self.ctx.store
        for attempt in attempts:
            if not self.starts_reported:
                store.mark_started(self.ctx.run_id, attempt.step, attempt.task_id, attempt.attempt)
                self.progress.started(attempt.step)
            elif store.start_mark_is_a_directory(attempt.attempt):  # the task writes into it
                store.mark_started(self.ctx.run_id, attempt.step, attempt.task_id, attempt.attempt)
            group.running.add(attempt.member)
            self.backend.launch(attempt)
            # counted once launched: an attempt whose launch was interrupted is not waited for
            self.in_flight += 1
            self.gang_in_flight += group.gang
        return attempts

    def started(self, attempt: Attempt) -> None:
        """The backend's report that ``attempt`` really started (it may have waited in the
        backend's queue since its launch). If :meth:`Backend.reports_starts`, the progress
        counts it as running from now, and its ``.started`` marker is written now unless it
        is the task's directory, made at launch (see :meth:`launch`; the task may have
        written its record already: readers take either)."""
        if self.starts_reported:
            ctx = self.ctx
            if not ctx.store.start_mark_is_a_directory(attempt.attempt):
                ctx.store.mark_started(ctx.run_id, attempt.step, attempt.task_id, attempt.attempt)
            self.progress.started(attempt.step)

    def _attempt(self, group: TaskGroup, member: int) -> Attempt:
        ctx, ready = self.ctx, group.members[member]
        spec = TaskSpec(
            flow_name=ctx.store.flow_name,
            run_id=ctx.run_id,
            step=ready.step,
            task_id=group.task_ids[member],
            attempt=group.attempt,
            input_paths=ready.input_paths,
            datastore_root=ctx.store.root,
            split_index=ready.split_index,
            max_user_code_retries=group.policy.user_retries,
            origin_run_id=ctx.origin_run_id,
            user=ctx.user,
            tags=ctx.options.tags,
            num_parallel=ready.num_parallel,
            max_num_splits=ctx.options.max_num_splits,
            ubf_context=ready.ubf_context,
            namespace=ctx.options.namespace,
        )
        return Attempt(group, member, spec)

    # -- outcomes ------------------------------------------------------------------------------

    def finished(
        self,
        attempt: Attempt,
        returncode: int | None,
        *,
        stopped: bool = False,
        started_at: float = 0.0,
        pid: int | None = None,
        lost: bool = False,
        started: bool = True,
    ) -> TaskRecord | None:
        """Attempt ``attempt`` ended with ``returncode``: record, report and act on it.

        Reads the attempt's record (writes a crashed one if the process left none), fires
        ``flowkernel_task_finished``, and then, once the whole group is done: queues the
        successors, relaunches the group, or fails the run (and has the backend stop
        everything). Returns the attempt's record; ``None`` for an attempt withdrawn
        (below).

        An attempt of a backend that :meth:`~Backend.reports_starts` that never started and
        was ``stopped`` or ``lost`` (it waited in the backend's queue) is *withdrawn*: as if
        it had never been launched, it leaves nothing (no record, hook call, console line or
        count; its marker is not written, or, the task directory made at launch, removed:
        :meth:`~flowkernel.datastore.FlowStore.unmark_started`); a ``lost`` one is launched
        again as the same attempt, unless the run is failing.

        :param stopped: the runtime stopped this attempt because the run is failing.
        :param lost: the attempt was lost with the machine running it; it is retried whatever
            ``@retry`` says (see :meth:`RetryPolicy.retries`).
        :param started: False: its process never started (it was stopped or lost while it
            waited in the backend's queue, see :meth:`Backend.lookahead`, or could not be
            created): the attempt's status is "never started" (console, crashed record).
        """
        self.in_flight -= 1
        group = attempt.group
        self.gang_in_flight -= group.gang
        ctx = self.ctx
        if not started and self.starts_reported:
            if (stopped or lost) and not group.gang:
                group.running.discard(attempt.member)
                ctx.store.unmark_started(ctx.run_id, attempt.step, attempt.task_id, attempt.attempt)
                if lost and self.failure is None:
                    self.launch(group)
                return None
            # its process could not be created: it failed, and is recorded (never started)
            ctx.store.mark_started(ctx.run_id, attempt.step, attempt.task_id, attempt.attempt)
        record = TaskRecord.read(
            ctx.store, ctx.run_id, attempt.step, attempt.task_id, attempt.attempt
        )
        ok = returncode == 0 and record is not None and record.task_ok
        status = "ok" if ok else describe_exit(returncode) if started else "never started"
        if record is None:
            record = TaskRecord.crashed(
                flow=ctx.store.flow_name,
                run_id=ctx.run_id,
                step=attempt.step,
                task_id=attempt.task_id,
                attempt=attempt.attempt,
                status=status,
                returncode=returncode,
                input_paths=attempt.spec.input_paths,
                split_index=attempt.spec.split_index,
                started_at=started_at,
                pid=pid,
            )
            try:
                record.write(ctx.store)
            except StorageError as exc:  # disk full: the run still fails cleanly, hooks fire
                self.backend.say(f"Could not record how the task ended: {exc}", attempt, True)
        group.running.discard(attempt.member)
        first_failure = not ok and group.failure is None
        if ok:
            group.records[attempt.member] = record
        elif first_failure:
            group.failure = f"node {attempt.spec.split_index} {status}" if group.gang else status
            group.will_retry = group.policy.retries(
                group.attempt,
                returncode,
                stopped=stopped,
                run_failing=self.failure is not None,
                lost=lost,
            )
        counted = started or not self.starts_reported  # counted as running by the progress
        self._report(attempt, ok, returncode, not ok and group.will_retry, counted)
        self._say_finished(attempt, record, ok, status, stopped)
        if first_failure and group.running:
            others = [self._attempt(group, i) for i in sorted(group.running)]
            for other in others:
                self.backend.say(
                    "Stopping this node: another node of the gang failed.", other, True
                )
            self.backend.stop(others)
        if not group.running and group.failure is None:
            self._commit(group, attempt, stopped)
        elif not group.running:
            self._group_done(group, attempt, stopped)
        return record

    def _report(
        self,
        attempt: Attempt,
        ok: bool,
        returncode: int | None,
        will_retry: bool,
        running: bool = True,
    ) -> None:
        """The one place a ``TaskInfo`` is built for an attempt that ran (``running``: the
        progress counted it as running)."""
        self.progress.finished(attempt.step, ok, will_retry, running=running)
        self.kernel.task_finished(
            TaskInfo(
                run=self.info,
                step=attempt.step,
                task_id=attempt.task_id,
                attempt=attempt.attempt,
                success=ok,
                returncode=returncode,
                will_retry=will_retry,
            )
        )

    def _say_finished(self, attempt: Attempt, record, ok: bool, status: str, stopped: bool) -> None:
        say, group = self.backend.say, attempt.group
        if ok:
            caught = not record.success and not group.gang
            say("Task finished; @catch handled its exception." if caught else
                "Task finished successfully.", attempt)  # fmt: skip
        elif group.gang:
            say(f"Task failed ({status}).", attempt)
        elif group.will_retry:
            say(f"Task failed ({status}); retrying.", attempt, force=True)
        elif stopped:
            say(f"Task was stopped ({status}).", attempt, force=True)
        else:
            say(f"Task failed ({status}).", attempt, force=True)

    def _commit(self, group: TaskGroup, last: Attempt, stopped: bool) -> None:
        """A group succeeded: its successors start only on durable records (see
        :meth:`Backend.commit`); the run does not end while a commit is pending."""
        self.committing += 1

        def committed() -> None:
            self.committing -= 1
            self._group_done(group, last, stopped)

        self.backend.commit([group.records[m] for m in sorted(group.records)], committed)

    def _group_done(self, group: TaskGroup, last: Attempt, stopped: bool) -> None:
        if group.failure is None:
            for member in sorted(group.records):
                self._succeeded(group.records[member])
            return
        if group.will_retry and self.failure is None:
            if group.gang:
                message = (
                    f"Gang of step {group.step} failed ({group.failure}); retrying every node."
                )
                self.backend.say(message, force=True)
            group.attempt += 1
            self.launch(group)
        elif stopped and not group.gang:
            return
        elif self.failure is None:
            if group.gang:
                message = f"Step {group.step} (gang {group.task_ids[0]}) failed: {group.failure}."
            else:
                message = f"Step {group.step} (task-id {group.task_ids[0]}) failed."
            self.fail(message, group.step)

    def _clone(self, ready: ReadyTask, origin: TaskRecord, task_id: str) -> None:
        record = clone_record(self.ctx, origin, task_id, ready.input_paths)
        self.progress.finished(ready.step, True, cloned=True)
        self.kernel.task_finished(
            TaskInfo(
                run=self.info,
                step=ready.step,
                task_id=task_id,
                attempt=0,
                success=True,
                returncode=0,
                cloned=True,
            )
        )
        self._succeeded(record)

    def _succeeded(self, record: TaskRecord) -> None:
        try:
            ready = self.frontier.task_finished(record)
        except TooManySplitsError as exc:
            self.fail(str(exc), record.step)
            return
        node = self.ctx.graph[record.step]
        if record.ubf_context == UBF_CONTROL:
            self.backend.say(
                f"Step {node.name}: the control task decided {len(ready)} mapper tasks."
            )
        elif node.type == "foreach" and "_unbounded_foreach" in record.artifacts:
            self.backend.say(f"Step {node.name}: unbounded foreach; a control task decides.")
        elif node.type == "foreach":
            what = "a gang of" if node.num_parallel is not None else "foreach yields"
            self.backend.say(f"Step {node.name}: {what} {len(ready)} child tasks.")
        self._enqueue(ready)

    def _enqueue(self, ready: list[ReadyTask]) -> None:
        for task in ready:
            self.progress.queued(task.step)
        self.queue.extend(ready)

    # -- failure -------------------------------------------------------------------------------

    def fail(self, message: str, step: str | None = None) -> None:
        """Fail the run (the first failure wins): start nothing more, stop what runs."""
        if self.failure is not None:
            return
        self.failure = message
        if step is not None:
            self.failed_steps.append(step)
        self.queue.clear()
        self.backend.stop(None)
