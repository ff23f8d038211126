"""The kernel API for in-process use: run a flow class or file in this Python process.

``Kernel.discover().run(MyFlow, alpha=3)`` validates the flow, resolves its parameters and runs
it with the chosen runtime, here and now (the local runtime forks task processes from this
process), then returns the client :class:`~flowkernel.client.Run`. Use :class:`Runner` instead
to keep the run in a separate process.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flowkernel.errors import UsageError

if TYPE_CHECKING:
    from flowkernel.kernel import Kernel


def run_flow(
    kernel: Kernel,
    flow: type | str,
    *,
    runtime: str | None = None,
    datastore_root: str | None = None,
    max_workers: int | None = None,
    max_num_splits: int | None = None,
    tags: tuple[str, ...] | list[str] = (),
    quiet: bool = True,
    runtime_options: dict[str, Any] | None = None,
    **params: Any,
) -> Any:
    """Run ``flow`` (a FlowSpec subclass or a flow file) to the end; returns the client Run.

    Options left out (``None``) take :class:`~flowkernel.engine.runs.RunOptions`' defaults.

    :param params: parameter values by attribute (or command-line) name, as Python values.
    :raises GraphValidationError: the flow is invalid (nothing ran).
    :raises UsageError: an unknown parameter or a value of the wrong type.
    """
    from flowkernel.client import Run
    from flowkernel.datastore import default_root
    from flowkernel.engine.runs import RunOptions, current_user, execute, start_run
    from flowkernel.flow.loader import flow_file_of, load_flow
    from flowkernel.flow.parameters import flow_parameters, resolve_parameters
    from flowkernel.storage import normalize_root

    flow_cls = load_flow(flow) if isinstance(flow, str) else flow
    flow_file = os.path.abspath(flow) if isinstance(flow, str) else flow_file_of(flow_cls)
    graph = kernel.validated_graph(flow_cls)
    kernel.runtime(runtime or RunOptions.default("runtime"))  # an unknown name: before the run
    declared = flow_parameters(flow_cls)
    aliases = {p.name.replace("-", "_"): a for a, p in declared.items()}
    given: dict[str, Any] = {}
    for key, value in params.items():
        attr = key if key in declared else aliases.get(key)
        if attr is None:
            raise UsageError(f"unknown parameter '{key}' for flow {flow_cls.__name__}")
        given[attr] = declared[attr].convert(value) if isinstance(value, str) else value
    values = resolve_parameters(flow_cls, given, current_user())
    options = RunOptions.given(
        normalize_root(datastore_root) if datastore_root else default_root(),
        runtime=runtime,
        max_workers=max_workers,
        max_num_splits=max_num_splits,
        tags=tuple(tags),
        quiet=quiet,
        extra=dict(runtime_options or {}),
    )
    ctx = start_run(flow_cls, graph, flow_file, values, options)
    execute(kernel, ctx)
    return Run(f"{flow_cls.__name__}/{ctx.run_id}", _namespace_check=False, _root=ctx.store.root)
