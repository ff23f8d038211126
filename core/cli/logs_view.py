"""Reading stored task logs back (``flow logs``)."""

from __future__ import annotations

import sys

import click

from flowkernel.datastore import FlowStore, iter_flow_names
from flowkernel.errors import NotFoundError, UsageError


def resolve_pathspec(root: str, pathspec: str, flow_file: str | None) -> tuple[str, list[str]]:
    """``(flow name, [run, step, task?])`` from ``[FLOW/]RUN/STEP[/TASK]``."""
    parts = [p for p in pathspec.split("/") if p]
    if flow_file is not None:
        from flowkernel.flow.loader import load_flow

        return load_flow(flow_file).__name__, parts
    if len(parts) == 4 or (len(parts) == 3 and FlowStore(root, parts[0]).read_run_record(parts[1])):
        return parts[0], parts[1:]  # FLOW/RUN/STEP[/TASK]
    if len(parts) not in (2, 3):
        raise UsageError(f"expected RUN/STEP[/TASK], got {pathspec!r}")
    owners = [f for f in iter_flow_names(root) if FlowStore(root, f).read_run_record(parts[0])]
    if not owners:
        raise NotFoundError(f"no run {parts[0]} under {root}")
    if len(owners) > 1:
        raise UsageError(
            f"run {parts[0]} exists for several flows ({', '.join(owners)}); write FLOW/RUN/STEP"
        )
    return owners[0], parts  # fmt: skip


def print_logs(
    root: str, pathspec: str, stream: str, attempt: int | None, flow_file: str | None
) -> None:
    """Write the logs of every task of a step (or of one task) to stdout, byte for byte."""
    flow, parts = resolve_pathspec(root, pathspec, flow_file)
    if len(parts) < 2:
        raise UsageError(f"expected RUN/STEP[/TASK], got {pathspec!r}")
    store = FlowStore(root, flow)
    run_id, step = parts[0], parts[1]
    task_ids = [parts[2]] if len(parts) > 2 else store.task_ids(run_id, step)
    if not task_ids:
        raise NotFoundError(f"no tasks for {flow}/{run_id}/{step}")
    out = sys.stdout.buffer
    for task_id in sorted(task_ids, key=lambda t: (len(t), t)):
        latest = store.latest_attempt(run_id, step, task_id)
        if latest is None:
            raise NotFoundError(f"no task {flow}/{run_id}/{step}/{task_id}")
        k = latest if attempt is None else attempt
        if len(task_ids) > 1:
            click.echo(f"--- {flow}/{run_id}/{step}/{task_id} (attempt {k}) ---", err=True)
        out.write(store.read_log(run_id, step, task_id, k, stream))
        out.flush()
