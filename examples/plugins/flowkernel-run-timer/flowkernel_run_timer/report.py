"""``flow timer-report``: print the timings the run_timer hooks recorded."""

from __future__ import annotations

import glob
import json
import os

import click


@click.command("timer-report")
@click.argument("flow_name", required=False)
@click.option("--root", default=None, help="Datastore root [default: flow --datastore-root].")
@click.pass_context
def timer_report(ctx: click.Context, flow_name: str | None, root: str | None) -> None:
    """Show how long each recorded run took (optionally only FLOW_NAME's runs)."""
    from flowkernel_run_timer.hooks import report_dir

    if root is None:  # the root `flow` group's --datastore-root / FLOWKERNEL_DATASTORE_ROOT
        root = (ctx.find_root().obj or {}).get("datastore_root") or ".flowkernel"
    pattern = os.path.join(report_dir(root, flow_name or "*"), "*.json")
    reports = []
    for path in glob.glob(pattern):
        with open(path, encoding="utf-8") as fh:
            reports.append(json.load(fh))
    if not reports:
        click.echo(f"No timed runs under {root}.")
        return
    reports.sort(key=lambda r: (r["flow"], r["run_id"]))
    for r in reports:
        status = "ok" if r["success"] else "FAILED"
        click.echo(
            f"{r['flow']}/{r['run_id']}  {r['seconds']:.2f}s  {len(r['tasks'])} tasks  {status}"
        )
