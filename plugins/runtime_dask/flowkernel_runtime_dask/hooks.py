"""Entry point: registers the ``dask`` runtime (dask itself is imported only when a run starts)."""

from __future__ import annotations

from typing import Any

from flowkernel import hookimpl
from flowkernel.specs import RuntimeSpec


def _make(kernel: Any) -> Any:
    from flowkernel_runtime_dask.controller import DaskRuntime

    return DaskRuntime(kernel)


@hookimpl
def flowkernel_runtimes() -> list[RuntimeSpec]:
    import click

    address = click.Option(
        ["--dask-scheduler"],
        envvar="FLOWKERNEL_DASK_SCHEDULER",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler to run on, e.g. tcp://10.0.0.5:8786 (env FLOWKERNEL_DASK_SCHEDULER). "
        "Without it (or --dask-scheduler-file) the run starts its own local cluster.",
    )
    scheduler_file = click.Option(
        ["--dask-scheduler-file"],
        default=None,
        metavar="FILE",
        help="Scheduler file written by `dask scheduler --scheduler-file FILE`.",
    )
    return [
        RuntimeSpec(
            name="dask",
            factory=_make,
            description="Runs every task attempt as `flow step` on a Dask distributed cluster.",
            options=(address, scheduler_file),
        )
    ]
