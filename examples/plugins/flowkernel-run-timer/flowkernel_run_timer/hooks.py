"""Entry point of the run_timer plugin: time runs, write a report, add ``flow timer-report``.

The lifecycle hooks run in the controller process only, so this works with every runtime.
Each finished run leaves ``<datastore root>/.run_timer/<flow>/<run id>.json`` (a dot
directory, so the client never mistakes it for a flow).
Only the standard library is imported here: entry-point modules are imported on every
``flow`` invocation and must stay light.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from flowkernel import hookimpl

if TYPE_CHECKING:
    import click

    from flowkernel.specs import RunInfo, RunResult, TaskInfo

#: Runs in progress in this controller, keyed by (flow name, run id).
_active: dict[tuple[str, str], dict[str, Any]] = {}


def report_dir(root: str, flow_name: str) -> str:
    """Where the reports of ``flow_name`` are kept under the datastore root ``root``."""
    return os.path.join(root, ".run_timer", flow_name)


@hookimpl
def flowkernel_run_started(run: RunInfo) -> None:
    _active[(run.flow_name, run.run_id)] = {"started": time.time(), "tasks": []}


@hookimpl
def flowkernel_task_finished(task: TaskInfo) -> None:
    state = _active.get((task.run.flow_name, task.run.run_id))
    if state is None:  # the run started before this plugin was loaded
        return
    state["tasks"].append(
        {
            "step": task.step,
            "task_id": task.task_id,
            "attempt": task.attempt,
            "success": task.success,
            "finished_after": round(time.time() - state["started"], 3),
        }
    )


@hookimpl
def flowkernel_run_finished(run: RunInfo, result: RunResult) -> None:
    state = _active.pop((run.flow_name, run.run_id), None)
    if state is None:
        return
    report = {
        "flow": run.flow_name,
        "run_id": run.run_id,
        "runtime": run.runtime,
        "success": result.success,
        "seconds": round(time.time() - state["started"], 3),
        "tasks": state["tasks"],
    }
    folder = report_dir(run.datastore_root, run.flow_name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{run.run_id}.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    os.replace(tmp, path)  # atomic: a reader sees the whole report or none


@hookimpl
def flowkernel_cli(cli: click.Group) -> None:
    from flowkernel_run_timer.report import timer_report

    cli.add_command(timer_report)
