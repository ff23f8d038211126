"""``flow dump [FILE] [FLOW/]RUN/STEP[/TASK]``: print (or pickle) the artifacts of tasks.

Each task's artifacts are printed as ``name [size: N type: T] = value``; a value whose stored
size is over ``--max-value-size`` bytes is shown as ``< artifact too large >`` and not loaded.
``--file F`` pickles ``{"run/step/task": {name: value}}`` to F instead (large values left out).
Artifacts named with a leading underscore are shown only with ``--private``.
"""

from __future__ import annotations

from typing import Any

import click

from flowkernel.errors import NotFoundError, UsageError

TOO_LARGE = "< artifact too large >"


@click.command()
@click.argument("target", nargs=-1, required=True, metavar="[FILE] [FLOW/]RUN/STEP[/TASK]")
@click.option("--private", is_flag=True, help="Also show artifacts whose name starts with _.")
@click.option(
    "--max-value-size",
    type=int,
    default=1000,
    show_default=True,
    help="Do not load artifacts larger than this many bytes (stored size).",
)
@click.option("--include", default=None, metavar="A,B", help="Only these artifacts.")
@click.option(
    "--file", "out_file", default=None, help="Pickle {run/step/task: {name: value}} to this file."
)
@click.pass_context
def dump(
    ctx: click.Context,
    target: tuple[str, ...],
    private: bool,
    max_value_size: int,
    include: str | None,
    out_file: str | None,
) -> None:
    """Show the artifacts of every task of a step, or of one task."""
    from flowkernel.cli.run_cmds import _datastore_root

    if len(target) > 2:
        raise UsageError("give at most a flow file and a RUN/STEP[/TASK] pathspec")
    flow_file = target[0] if len(target) == 2 else None
    names = [n.strip() for n in include.split(",") if n.strip()] if include else None
    tasks = _tasks(_datastore_root(ctx), target[-1], flow_file)
    dumped: dict[str, dict[str, Any]] = {}
    for task in tasks:
        key = "/".join(task.path_components[1:])
        values = dumped[key] = {}
        if out_file is None:
            click.echo(f"Artifacts of {task.pathspec}:")
        for name, sha in sorted(_artifacts(task, private, names).items()):
            size = task._store.blob_size(sha)
            too_large = size > max_value_size
            value = TOO_LARGE if too_large else task._store.load(sha)
            if out_file is None:
                info = task._record_or_raise().info.get(name, {})
                kind = info.get("type") or ("?" if too_large else type(value).__qualname__)
                shown = TOO_LARGE if too_large else _show(value)
                click.echo(f"{name} [size: {size} type: {kind}] = {shown}")
            elif too_large:
                click.echo(f"{key}: {name} left out ({size} bytes > --max-value-size)", err=True)
            else:
                values[name] = value
    if out_file is not None:
        import pickle

        with open(out_file, "wb") as fh:
            pickle.dump(dumped, fh, protocol=4)
        click.echo(f"Artifacts of {len(dumped)} task(s) written to {out_file}", err=True)


def _tasks(root: str, pathspec: str, flow_file: str | None) -> list[Any]:
    from flowkernel.cli.logs_view import resolve_pathspec
    from flowkernel.client import Task, _task_order
    from flowkernel.datastore import FlowStore

    flow, parts = resolve_pathspec(root, pathspec, flow_file, need_step=True)
    if len(parts) not in (2, 3):
        raise UsageError(f"expected RUN/STEP[/TASK], got {pathspec!r}")
    store = FlowStore(root, flow, flow_file)
    run_id, step = parts[0], parts[1]
    task_ids = [parts[2]] if len(parts) == 3 else store.task_ids(run_id, step)
    if not task_ids:
        raise NotFoundError(f"no tasks for {flow}/{run_id}/{step}")
    tasks = []
    for task_id in sorted(task_ids, key=_task_order):
        task = Task(f"{flow}/{run_id}/{step}/{task_id}", _namespace_check=False, _root=root)
        if flow_file:
            task._store.flow_file = flow_file
        tasks.append(task)
    return tasks


def _artifacts(task: Any, private: bool, names: list[str] | None) -> dict[str, str]:
    """The artifacts to show by name -> content hash."""
    try:
        stored = task._record_or_raise().artifacts
    except NotFoundError:
        click.echo(f"{task.pathspec} has no completed attempt; nothing to dump", err=True)
        return {}
    return {
        name: sha
        for name, sha in stored.items()
        if (private or not name.startswith("_")) and (names is None or name in names)
    }


def _show(value: Any) -> str:
    import pprint

    return pprint.pformat(value, width=100, compact=True)
