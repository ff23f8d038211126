"""The ``Runtime`` protocol: what a runtime plugin implements.

A plugin offers a runtime with ``flowkernel_runtimes`` (a :class:`~flowkernel.specs.RuntimeSpec`);
``RuntimeSpec.factory(kernel)`` returns an object implementing :class:`Runtime`. ``flow run``,
``flow resume``, ``Runner`` and ``Kernel.run`` all prepare the run the same way and then call
``runtime.run(ctx)`` once. The ``local`` runtime (plugins/runtime_local) is the reference
implementation; docs/writing-a-runtime.md builds a small one step by step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from flowkernel.engine.runs import RunContext
    from flowkernel.specs import RunResult


@runtime_checkable
class Runtime(Protocol):
    """Executes one prepared run to its end.

    **What run(ctx) receives.** A :class:`~flowkernel.engine.runs.RunContext` whose run
    already exists: the run id is allocated, the
    :class:`~flowkernel.engine.records.RunRecord` and the ``_parameters`` task's
    :class:`~flowkernel.engine.records.TaskRecord` are written (``ctx.params_record``), and
    ``ctx.options`` holds the generic options plus the runtime's own (declared in
    ``RuntimeSpec.options``) in ``ctx.options.extra``. A resume is the same call: its context
    also carries ``ctx.origin_run_id`` and ``ctx.clones``, the origin tasks to clone instead of
    running.

    **What it must do.**

    * *Scheduling and policy*: drive a :class:`~flowkernel.engine.dispatch.Dispatcher` (it owns the
      frontier, task ids, clones, ``@parallel`` gangs, the
      :class:`~flowkernel.engine.policy.RetryPolicy` and fail-fast) and run each
      :class:`~flowkernel.engine.dispatch.Attempt` it hands out; report each attempt's end with
      :meth:`~flowkernel.engine.dispatch.Dispatcher.finished`.
    * *Records*: an attempt runs :func:`flowkernel.engine.executor.run_task` in some process,
      or the ``flow step`` command line of :func:`flowkernel.engine.runs.step_command` on any
      machine that sees the datastore; either writes the attempt's TaskRecord.
      ``Dispatcher.finished`` writes a crashed record for an attempt that left none.
    * *Hooks*: ``kernel.run_started(info)`` once before the first task;
      ``flowkernel_task_finished`` for every attempt and clone (the dispatcher fires it);
      ``kernel.run_finished(info, result)`` once at the end, also after a failure or an
      interrupt. ``info`` is ``dispatcher.info``.
    * *Logs*: every line a task writes to stdout or stderr goes, as it arrives, to every sink of
      ``kernel.log_sinks(info)`` as a :class:`~flowkernel.specs.LogLine` (the built-in file
      sink stores it where ``flow logs`` and the client read it). A sink that raises is dropped
      and reported; every sink is closed at the end.
    * *Cancellation*: on ``KeyboardInterrupt`` (and ``SIGTERM`` if the runtime handles signals)
      stop every running task, fire ``run_finished`` and return a failed result whose message is
      ``"interrupted"``. When the dispatcher fails the run it calls the backend's
      ``stop(None)``: stop every running task and start no new one.

    **Returns** a :class:`~flowkernel.specs.RunResult`. Task failures are results, not
    exceptions: ``run`` raises only for errors of the runtime itself.
    """

    def run(self, ctx: RunContext) -> RunResult:
        """Execute the run of ``ctx`` (a new run or a resume) to its end."""
        ...
