"""Library use: :class:`Runner` runs a flow in a child process (over the subprocess layer in
:mod:`.procs`); :mod:`.inprocess` runs one in this process (``Kernel.run``)."""

from flowkernel.runner.runner import ExecutingRun, FlowStartError, Runner

__all__ = ["ExecutingRun", "FlowStartError", "Runner"]
