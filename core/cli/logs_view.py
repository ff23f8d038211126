"""Reading stored task logs back (``flow logs``)."""

from __future__ import annotations

import sys

import click

from flowkernel.datastore import FlowStore, iter_flow_names
from flowkernel.errors import NotFoundError, UsageError

_FORMS = "RUN, RUN/STEP[/TASK] or FLOW/RUN[/STEP[/TASK]] (RUN may be 'latest')"


def resolve_pathspec(
    root: str, pathspec: str, flow_file: str | None, need_step: bool = False
) -> tuple[str, list[str]]:
    """``(flow name, [run, step?, task?])`` from a pathspec in any of the forms of :data:`_FORMS`.

    ``latest`` as the run means the flow's latest run. A name that is both a flow and a run id
    is read as the flow. Nothing found raises :class:`NotFoundError` saying where it looked.
    ``need_step``: a pathspec without a step is a usage error (``flow dump``).
    """
    parts = [p for p in pathspec.split("/") if p]
    if not parts or len(parts) > 4 or (need_step and len(parts) < 2):
        forms = "[FLOW/]RUN/STEP[/TASK]" if need_step else _FORMS
        raise UsageError(f"expected {forms}, got {pathspec!r}")
    if flow_file is not None:
        from flowkernel.flow.loader import load_flow

        flow = load_flow(flow_file).__name__
        return flow, _resolve_latest(root, flow, parts)
    flows = list(iter_flow_names(root))
    if parts[0] in flows:
        flow, rest = parts[0], parts[1:] or ["latest"]  # FLOW alone: its latest run
        return flow, _resolve_latest(root, flow, rest)
    if len(parts) == 4:
        raise NotFoundError(f"no flow {parts[0]} under {root} (flows there: {_names(flows)})")
    if parts[0] == "latest":
        raise UsageError(f"'latest' needs a flow: FLOW/latest[/STEP], got {pathspec!r}")
    owners = [f for f in flows if FlowStore(root, f).read_run_record(parts[0])]
    if not owners:
        raise NotFoundError(
            f"no flow or run named {parts[0]} under {root} (flows there: {_names(flows)})"
        )
    if len(owners) > 1:
        raise UsageError(
            f"run {parts[0]} exists for several flows ({', '.join(owners)}); write FLOW/{pathspec}"
        )
    return owners[0], parts


def _resolve_latest(root: str, flow: str, parts: list[str]) -> list[str]:
    """``parts`` with a leading ``latest`` replaced by the flow's latest run id."""
    if parts[0] != "latest":
        return parts
    latest = FlowStore(root, flow).latest_run()
    if latest is None:
        raise NotFoundError(f"flow {flow} has no runs under {root}")
    return [latest, *parts[1:]]


def _names(flows: list[str]) -> str:
    return ", ".join(sorted(flows)) or "none"


def _task_order(task_id: str) -> tuple[int, str]:
    head = task_id.split("_", 1)[0]
    return (int(head) if head.isdigit() else 1 << 62, task_id)


def _steps_in_launch_order(store: FlowStore, run_id: str) -> list[str]:
    """The run's steps (``_parameters`` left out), ordered by their first task's id."""
    steps = {}
    for step in store.step_names(run_id):
        if not step.startswith("_"):
            task_ids = store.task_ids(run_id, step)
            if task_ids:
                steps[step] = min(_task_order(t) for t in task_ids)
    return sorted(steps, key=steps.__getitem__)


def print_logs(
    root: str, pathspec: str, stream: str, attempt: int | None, flow_file: str | None
) -> None:
    """Write the logs of a run's, a step's or one task's tasks to stdout, byte for byte.

    With more than one task, a ``--- FLOW/RUN/STEP/TASK (attempt k) ---`` line on stderr
    precedes each task's output.
    """
    flow, parts = resolve_pathspec(root, pathspec, flow_file)
    store = FlowStore(root, flow)
    run_id = parts[0]
    if store.read_run_record(run_id) is None:
        raise NotFoundError(f"no run {flow}/{run_id} under {root}")
    steps = [parts[1]] if len(parts) > 1 else _steps_in_launch_order(store, run_id)
    tasks = []
    for step in steps:
        task_ids = [parts[2]] if len(parts) > 2 else store.task_ids(run_id, step)
        if not task_ids:
            raise NotFoundError(f"no tasks for {flow}/{run_id}/{step} under {root}")
        tasks += [(step, t) for t in sorted(task_ids, key=_task_order)]
    out = sys.stdout.buffer
    for step, task_id in tasks:
        latest = store.latest_attempt(run_id, step, task_id)
        if latest is None:
            raise NotFoundError(f"no task {flow}/{run_id}/{step}/{task_id} under {root}")
        k = latest if attempt is None else attempt
        if len(tasks) > 1:
            click.echo(f"--- {flow}/{run_id}/{step}/{task_id} (attempt {k}) ---", err=True)
        out.write(store.read_log(run_id, step, task_id, k, stream))
        out.flush()
