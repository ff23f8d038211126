"""Entry point: registers the ``local`` runtime."""

from __future__ import annotations

from typing import Any

from flowkernel import hookimpl
from flowkernel.specs import RuntimeSpec


def _make(kernel: Any) -> Any:
    from flowkernel_runtime_local.controller import LocalRuntime

    return LocalRuntime(kernel)


@hookimpl
def flowkernel_runtimes() -> list[RuntimeSpec]:
    import click

    isolation = click.Option(
        ["--isolation"],
        type=click.Choice(["fork", "spawn", "pool"]),
        default=None,
        help="fork: tasks fork from the warm controller (default where fork exists); "
        "spawn: each task starts a fresh interpreter running `flow step`; "
        "pool: --max-workers long-lived processes run the tasks one after another "
        "(faster; module globals persist between tasks).",
    )
    return [
        RuntimeSpec(
            name="local",
            factory=_make,
            description="Runs every task attempt in its own process on this machine.",
            options=(isolation,),
        )
    ]
