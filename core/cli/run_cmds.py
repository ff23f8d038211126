"""``flow run`` (and, once a runtime exists, the commands that execute flows)."""

from __future__ import annotations

import click


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("flow_file", type=click.Path(dir_okay=False), metavar="FILE")
@click.option("--runtime", default="local", show_default=True, help="Runtime to run with.")
@click.pass_context
def run(ctx: click.Context, flow_file: str, runtime: str) -> None:
    """Run the flow in FILE."""
    from flowkernel.cli.main import get_kernel
    from flowkernel.loader import load_flow

    kernel = get_kernel()
    flow_cls = load_flow(flow_file)
    kernel.validated_graph(flow_cls)
    kernel.runtime(runtime)
    raise click.ClickException("running flows arrives with the runtime")


COMMANDS = [run]
