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

    **What it must do.** Build a :class:`~flowkernel.engine.dispatch.Dispatcher` with its
    :class:`~flowkernel.engine.dispatch.Backend` and return ``dispatcher.run()``. The dispatcher
    owns everything that is the same on every runtime: the frontier, task ids, clones,
    ``@parallel`` gangs, the :class:`~flowkernel.engine.policy.RetryPolicy`, fail-fast, the
    launch loop within ``--max-workers``, the hooks (``run_started`` once, ``task_finished`` for
    every attempt and clone, ``run_finished`` once, also after a failure or an interrupt), the
    console's first and last lines and the result. The backend owns execution:

    * *Attempts*: ``launch`` starts each :class:`~flowkernel.engine.dispatch.Attempt` handed out,
      ``wait`` reports each end to :meth:`~flowkernel.engine.dispatch.Dispatcher.finished`. An
      attempt runs :func:`flowkernel.engine.executor.run_task` in some process, or the
      ``flow step`` command line of :func:`flowkernel.engine.runs.step_command` on any machine
      that sees the datastore; either writes the attempt's TaskRecord. ``Dispatcher.finished``
      writes a crashed record for an attempt that left none, and returns the record, or
      ``None`` for an attempt withdrawn from the backend's queue (only with
      :meth:`~flowkernel.engine.dispatch.Backend.reports_starts`).
    * *Logs*: every line a task writes to stdout or stderr goes, as it arrives, to every sink of
      ``kernel.log_sinks(dispatcher.info)`` as a :class:`~flowkernel.specs.LogLine` (the
      built-in file sink stores it where ``flow logs`` and the client read it). A sink that
      raises is dropped and reported; every sink is closed in ``close``.
    * *Cancellation*: ``stop(None)`` (the run failed) stops every running attempt. On
      ``KeyboardInterrupt``, or :class:`~flowkernel.engine.dispatch.Interrupted` raised by the
      backend (e.g. for ``SIGTERM``), the dispatcher stops everything and the run fails with the
      message ``"interrupted"``.

    **Returns** a :class:`~flowkernel.specs.RunResult`. Task failures are results, not
    exceptions: ``run`` raises only for errors of the runtime itself.
    """

    def run(self, ctx: RunContext) -> RunResult:
        """Execute the run of ``ctx`` (a new run or a resume) to its end."""
        ...
