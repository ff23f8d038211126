"""``flow show`` and ``flow check``."""

from __future__ import annotations

import click

from flowkernel.errors import GraphValidationError

FLOW_FILE = click.argument("flow_file", type=click.Path(dir_okay=False), metavar="FILE")


@click.command()
@FLOW_FILE
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "mermaid", "dot", "json", "svg"]),
    default="text",
    show_default=True,
    help="Output format.",
)
def show(flow_file: str, fmt: str) -> None:
    """Show the steps of the flow in FILE and how they connect."""
    from flowkernel.cli.context import get_kernel
    from flowkernel.flow.loader import load_flow
    from flowkernel.graph.render import render_graph

    kernel = get_kernel()
    flow_cls = load_flow(flow_file)
    graph = kernel.validated_graph(flow_cls)
    click.echo(render_graph(graph, fmt))


@click.command()
@FLOW_FILE
def check(flow_file: str) -> None:
    """Validate the flow in FILE, reporting every problem found (exit 1 if any)."""
    from flowkernel.cli.context import get_kernel
    from flowkernel.flow.loader import load_flow

    kernel = get_kernel()
    flow_cls = load_flow(flow_file)
    problems = kernel.check_flow(flow_cls)
    if problems:
        raise GraphValidationError(problems)
    click.echo(f"The graph of {flow_cls.__name__} looks good!")
