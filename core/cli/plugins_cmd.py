"""``flow plugins`` and the plugin part of ``flow --version``."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from flowkernel.kernel import Kernel


def version_lines(kernel: Kernel) -> list[str]:
    from importlib.metadata import version

    lines = [f"flowkernel {version('flowkernel')}"]
    for rec in kernel.records:
        if rec.status == "builtin":
            continue
        extra = f" [{rec.status}]" if rec.status != "loaded" else ""
        lines.append(f"  {rec.name}: {rec.distribution or '?'} {rec.version or '?'}{extra}")
    return lines


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--all", "show_all", is_flag=True, help="Include the kernel's built-in plugins.")
@click.option("--hook", "hook", default=None, help="Only plugins implementing this hook.")
def plugins(as_json: bool, show_all: bool, hook: str | None) -> None:
    """List plugins: name, distribution, version, hooks and status (loaded/blocked/failed)."""
    from flowkernel.cli.context import get_kernel

    kernel = get_kernel()
    records = [
        r
        for r in kernel.records
        if (show_all or r.status != "builtin") and (hook is None or hook in r.hooks)
    ]
    declines = kernel.declined_hooks()
    if as_json:
        rows = [{**r.to_dict(), "declines": declines.get(r.name, [])} for r in records]
        click.echo(json.dumps(rows, indent=2))
        return
    if not records:
        click.echo("No plugins installed.")
        return
    colors = {"loaded": "green", "builtin": "blue", "blocked": "yellow", "failed": "red"}
    for r in records:
        dist = f"{r.distribution} {r.version}" if r.distribution else "(kernel)"
        click.echo(f"{r.name}  ", nl=False)
        click.secho(r.status, fg=colors.get(r.status), nl=False)
        click.echo(f"  {dist}")
        if declines.get(r.name):
            hooks = ", ".join(declines[r.name])
            click.secho(f"    declines here ({sys.platform}): {hooks}", fg="yellow")
        if r.hooks:
            click.echo(f"    hooks: {', '.join(r.hooks)}")
        if r.error:
            click.echo(f"    error: {r.error}")
