"""NBRunner: run a flow class defined in a notebook, with its output in the calling cell."""

from __future__ import annotations

import asyncio
import atexit
import sys
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from flowkernel.runner import ExecutingRun
from flowkernel_notebook.flowfile import NotebookFlow

if TYPE_CHECKING:
    from flowkernel.runner import Runner

#: Every Runner an NBRunner made that may still have a run going (an ExecutingRun keeps its
#: Runner alive): stopped when the kernel shuts down or restarts, so no run outlives it.
_LIVE: weakref.WeakSet[Runner] = weakref.WeakSet()


@atexit.register
def _stop_live_runs() -> None:
    for runner in list(_LIVE):
        runner.cleanup()


class NotebookExecutingRun(ExecutingRun):
    """An :class:`ExecutingRun` whose ``await wait()`` and ``stream_log()`` stop the run when
    the cell awaiting them is interrupted (ipykernel cancels the cell's task)."""

    async def _wait_async(self, timeout: float | None) -> ExecutingRun:
        with _stop_when_interrupted(self):
            return await super()._wait_async(timeout)

    async def stream_log(
        self, stream: str = "stdout", position: int | None = None
    ) -> AsyncIterator[tuple[int, str]]:
        with _stop_when_interrupted(self):
            async for item in super().stream_log(stream, position):
                yield item


class NBRunner(NotebookFlow):
    """Run ``flow_cls`` (defined in any cell of this notebook) in a child process.

    ``NBRunner(MyFlow).nbrun(alpha=3)`` blocks, shows the flow's output in the cell line by line
    and returns the client ``Run``. It never calls :func:`asyncio.run`, so it works in a cell
    (which runs inside an event loop); ``await NBRunner(MyFlow).async_run()`` works as well.
    Interrupting the kernel stops the run and every process of it; the run is recorded as
    failed and :meth:`nbresume` continues it.

    :param flow_cls: a FlowSpec subclass, defined in a notebook cell or in a module.
    :param show_output: show the flow's output (blocking calls only).
    :param env: variables added to the flow process's environment.
    :param base_dir: where the flow file is written (default: the working directory).
    :param file_read_timeout: seconds to wait for the run to start.
    :param top_level: ``flow`` options, as for :class:`~flowkernel.runner.Runner`.
    :raises NotebookSourceError: the class's source cannot be found, or a step uses a name
        defined in another cell (before anything starts).
    """

    def __init__(
        self,
        flow_cls: type,
        show_output: bool = True,
        env: dict[str, str] | None = None,
        base_dir: str | None = None,
        file_read_timeout: float = 3600,
        **top_level: Any,
    ):
        from flowkernel.runner import Runner

        super().__init__(flow_cls, env, base_dir)
        self.runner: Runner = Runner(
            self.flow_file.path,
            show_output=show_output,
            file_read_timeout=file_read_timeout,
            **top_level,
        )
        self.runner.env = self.env
        _LIVE.add(self.runner)
        weakref.finalize(self, self.flow_file.remove)  # also at exit

    # -- blocking, notebook style -------------------------------------------------------------

    def nbrun(self, **params: Any) -> Any:
        """Run the flow to its end; returns the client ``Run`` (successful or not)."""
        try:
            return self.run(**params).run
        finally:
            self.cleanup()

    def nbresume(self, **kwargs: Any) -> Any:
        """Resume the latest (or ``origin_run_id=``) run; returns the client ``Run``."""
        try:
            return self.resume(**kwargs).run
        finally:
            self.cleanup()

    # -- Runner's API --------------------------------------------------------------------------

    def run(self, **params: Any) -> ExecutingRun:
        """Run the flow to its end; returns the finished ExecutingRun."""
        self.flow_file.ensure()
        with _report_interrupt(self.flow_cls.__name__):
            return self.runner.run(**params)

    def resume(self, **kwargs: Any) -> ExecutingRun:
        """Resume like :meth:`Runner.resume`; returns the finished ExecutingRun."""
        self.flow_file.ensure()
        with _report_interrupt(self.flow_cls.__name__):
            return self.runner.resume(**kwargs)

    async def async_run(self, **params: Any) -> ExecutingRun:
        """Start the flow; returns once the run exists. Call :meth:`cleanup` when done.

        Interrupting a cell that awaits the run's ``wait()`` or reads its ``stream_log()``
        stops the run.
        """
        self.flow_file.ensure()
        return _interruptible(await self.runner.async_run(**params))

    async def async_resume(self, **kwargs: Any) -> ExecutingRun:
        self.flow_file.ensure()
        return _interruptible(await self.runner.async_resume(**kwargs))

    def cleanup(self) -> None:
        """Stop what still runs and remove the flow file and temporary files."""
        try:
            self.runner.cleanup()
        finally:
            self.flow_file.remove()

    def __enter__(self) -> NBRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    async def __aenter__(self) -> NBRunner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cleanup()


class _report_interrupt:
    """On KeyboardInterrupt (the notebook's stop button) say what happened to the run."""

    def __init__(self, flow_name: str):
        self.flow_name = flow_name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, *rest: object) -> None:
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            print(
                f"Interrupted: the {self.flow_name} run was stopped and is recorded as failed; "
                "nbresume() continues it.",
                file=sys.stderr,
                flush=True,
            )


def _interruptible(execution: ExecutingRun) -> ExecutingRun:
    execution.__class__ = NotebookExecutingRun  # same state; only the waits differ
    return execution


class _stop_when_interrupted:
    def __init__(self, execution: ExecutingRun):
        self.execution = execution

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, *rest: object) -> None:
        if kind is not None and issubclass(kind, (asyncio.CancelledError, KeyboardInterrupt)):
            self.execution.terminate()
            print(
                f"Interrupted: the {self.execution.flow_name} run {self.execution.run_id} was "
                "stopped and is recorded as failed; nbresume() continues it.",
                file=sys.stderr,
                flush=True,
            )
