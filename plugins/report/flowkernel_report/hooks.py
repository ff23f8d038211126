"""Entry point: adds ``flow report`` (the command module is imported only when it runs)."""

from __future__ import annotations

from typing import Any

import click

from flowkernel import hookimpl


@click.command()
@click.argument("run", metavar="[FLOW/]RUN")
@click.option("-o", "--output", default=None, help="HTML file to write [default: FLOW-RUN.html].")
@click.pass_context
def report(ctx: click.Context, run: str, output: str | None) -> None:
    """Write a self-contained HTML report of a run: graph, timeline, steps, failures,
    artifacts and logs. RUN: a run id, FLOW/RUN, FLOW/latest, or FLOW (its latest run)."""
    from flowkernel_report.command import write_report

    root = (ctx.find_root().obj or {}).get("datastore_root")
    path = write_report(root, run, output)
    click.echo(f"Report written to {path}")


@hookimpl
def flowkernel_cli(cli: Any) -> None:
    cli.add_command(report)
