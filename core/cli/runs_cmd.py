"""``flow runs [FLOW]``: the stored runs, newest first, with status, start, duration and tags."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import attrs
import click

if TYPE_CHECKING:
    from flowkernel.datastore import FlowStore


@attrs.frozen
class RunSummary:
    """One run as ``flow runs`` lists it."""

    flow: str
    run_id: str
    #: "succeeded", "failed", "running", "crashed" (its controller, on this host, is gone: it
    #: will never end; a run controlled from another host shows "running" until it ends),
    #: "broken": the run's record is damaged
    status: str
    started_at: float
    finished_at: float | None  #: the last task's end (None before any task ended)
    tags: tuple[str, ...]
    origin_run_id: str | None = None

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else max(0.0, self.finished_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "duration": self.duration}


def summarize_run(store: FlowStore, run_id: str) -> RunSummary | None:
    """Read a run's record and its tasks' latest records (None if ``run_id`` has no record).

    A run whose record is damaged is listed with status "broken"; a damaged task record counts
    as a failed task.
    """
    from flowkernel.engine.records import RunRecord, TaskRecord
    from flowkernel.errors import CorruptRecordError

    try:
        record = RunRecord.read(store, run_id)
    except CorruptRecordError:
        return RunSummary(store.flow_name, run_id, "broken", 0.0, None, ())
    if record is None:
        return None
    failed = ended = False
    last = None
    for step in store.step_names(run_id):
        for task_id in store.task_ids(run_id, step):
            try:
                task = TaskRecord.read_latest(store, run_id, step, task_id)
            except CorruptRecordError:
                failed = True
                continue
            if task is None:
                continue
            if task.finished_at:
                last = max(last or 0.0, task.finished_at)
            if not task.task_ok:
                failed = True
            elif step == record.end_step:
                ended = True
    status = "succeeded" if ended else "failed" if failed else "running"
    if status == "running":
        status, last = _status_without_tasks(store, run_id, last)
    return RunSummary(
        flow=store.flow_name,
        run_id=run_id,
        status=status,
        started_at=record.created_at,
        finished_at=last if status != "running" else None,
        tags=record.tags,
        origin_run_id=record.origin_run_id,
    )


def _status_without_tasks(
    store: FlowStore, run_id: str, last: float | None
) -> tuple[str, float | None]:
    """The status of a run its task records call running: its ending (a runtime that raised
    before a task failed), else "crashed" if its controller is known to be gone, else running.
    Returns it with the run's end time."""
    from flowkernel.engine.run_state import RunController, RunEnding
    from flowkernel.errors import CorruptRecordError

    try:
        ending = RunEnding.read(store, run_id)
        controller = None if ending else RunController.read(store, run_id)
    except CorruptRecordError:
        return "running", last
    if ending is not None:
        return ("succeeded" if ending.success else "failed"), max(last or 0.0, ending.finished_at)
    if controller is not None and controller.is_gone():
        return "crashed", last
    return "running", last


def list_runs(root: str, flow: str | None, limit: int) -> list[RunSummary]:
    """The newest ``limit`` runs (0: all) of ``flow``, or of every flow under ``root``."""
    from flowkernel.datastore import FlowStore, iter_flow_names

    stores = [FlowStore(root, name) for name in ([flow] if flow else iter_flow_names(root))]
    candidates = sorted(
        ((store, run_id) for store in stores for run_id in store.run_ids()),
        key=lambda pair: (len(pair[1]), pair[1]),  # run ids are microsecond timestamps
        reverse=True,
    )
    runs = []
    for store, run_id in candidates:
        summary = summarize_run(store, run_id)
        if summary is not None:
            runs.append(summary)
            if limit and len(runs) >= limit:
                break
    return runs


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


_COLORS = {"succeeded": "green", "failed": "red", "running": "yellow", "crashed": "red"}


@click.command()
@click.argument("flow", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list of runs).")
@click.option("-n", "--limit", type=int, default=20, show_default=True,
              help="Show at most this many runs (0: all).")  # fmt: skip
@click.pass_context
def runs(ctx: click.Context, flow: str | None, as_json: bool, limit: int) -> None:
    """List stored runs of FLOW (default: every flow), newest first."""
    from flowkernel.datastore import FlowStore, default_root

    root = (ctx.find_root().obj or {}).get("datastore_root") or default_root()
    if flow and not FlowStore(root, flow).run_ids():
        from flowkernel.errors import NotFoundError

        raise NotFoundError(f"no runs of flow {flow} under {root}")
    found = list_runs(root, flow, limit)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in found], indent=2))
        return
    if not found:
        click.echo(f"No runs under {root}.")
        return
    rows = [
        (
            f"{r.flow}/{r.run_id}",
            r.status,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at)),
            format_duration(r.duration),
            ", ".join(r.tags),
        )
        for r in found
    ]
    header = ("RUN", "STATUS", "STARTED", "DURATION", "TAGS")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        cells[1] = click.style(cells[1], fg=_COLORS.get(row[1]))
        click.echo("  ".join(cells).rstrip())
