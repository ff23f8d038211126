"""``flow package FILE``: store the flow's code package in the datastore, print its key."""

from __future__ import annotations

import click


@click.command()
@click.argument("flow_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="Also package files matching GLOB (beyond .py and config files).",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="GLOB",
    help="Leave out files and directories matching GLOB.",
)
@click.option(
    "--max-size-mb",
    type=float,
    default=None,
    show_default=False,
    help="Refuse a package larger than this (default 50).",
)
@click.pass_context
def package(ctx: click.Context, flow_file: str, include: tuple[str, ...],
            exclude: tuple[str, ...], max_size_mb: float | None) -> None:  # fmt: skip
    """Store the code of the flow in FILE as a content-addressed package; print its key.

    The package holds the flow file, the Python modules and packages beside it and its config
    files; the same code always gives the same key. `flow step ... --package KEY` runs a task
    from it on any machine that can read the datastore.
    """
    from flowkernel.cli.run_cmds import _datastore_root
    from flowkernel.engine.packages import DEFAULT_MAX_MB, build_package, store_package
    from flowkernel.flow.config import flow_configs
    from flowkernel.flow.loader import load_flow

    flow_cls = load_flow(flow_file)
    defaults = [c.default for c in flow_configs(flow_cls).values() if c.default]
    pkg = build_package(flow_file, flow_cls.__name__, include, exclude, defaults,
                        max_size_mb or DEFAULT_MAX_MB)  # fmt: skip
    key = store_package(_datastore_root(ctx), pkg)
    click.echo(
        f"{len(pkg.files)} files, {pkg.size / 1e3:.1f} kB; flow file {pkg.flow_file}", err=True
    )
    click.echo(key)
