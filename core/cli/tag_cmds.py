"""``flow tag add|remove|replace|list``: change and show the user tags of runs.

The run is ``--run-id RUN`` of the flow in FILE (``flow tag add FILE --run-id R TAG...``, or
``python flow.py tag add --run-id R TAG...``), or ``--run-id FLOW/RUN`` without a file. System
tags cannot be removed; adding one changes nothing.
"""

from __future__ import annotations

import os
from typing import Any

import click

from flowkernel.errors import UsageError


class TagGroup(click.Group):
    """``python flow.py tag add ...`` puts the flow file after the subcommand's name."""

    flow_file_after_subcommand = True


def _split_file(args: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """``(flow file or None, the rest)``: a first argument naming a ``.py`` file is the flow."""
    if args and args[0].endswith(".py") and os.path.isfile(args[0]):
        return args[0], list(args[1:])
    return None, list(args)


def _run(ctx: click.Context, flow_file: str | None, run_id: str | None, ns: str | None) -> Any:
    """The client Run for ``--run-id`` (namespace: ``--namespace``, default: the user's)."""
    from flowkernel import client
    from flowkernel.cli.run_cmds import _datastore_root

    if not run_id:
        raise UsageError("--run-id is required: the run whose tags to change")
    root = _datastore_root(ctx)
    if "/" in run_id:
        flow, _, run_id = run_id.partition("/")
    elif flow_file is not None:
        from flowkernel.flow.loader import load_flow

        flow = load_flow(flow_file).__name__
    else:
        from flowkernel.cli.logs_view import resolve_pathspec

        flow, _ = resolve_pathspec(root, f"{run_id}/_", None)
    client.metadata(root)
    if ns is not None:
        client.namespace(ns)
    else:
        client.default_namespace()
    try:
        return client.Run(f"{flow}/{run_id}")
    except client.NotFoundError:
        raise UsageError(f"no run {flow}/{run_id} under {root}") from None


def _show(run: Any, hide_system: bool = False) -> None:
    click.echo(f"Tags of {run.pathspec}:")
    click.echo(f"  user tags:   {', '.join(sorted(run.user_tags)) or '(none)'}")
    if not hide_system:
        click.echo(f"  system tags: {', '.join(sorted(run.system_tags))}")


_RUN_ID = click.option("--run-id", default=None, help="The run: RUN (with FILE) or FLOW/RUN.")
_NAMESPACE = click.option(
    "--namespace", "ns", default=None, help="Namespace to find the run in [default: user:<you>]."
)


@click.group(cls=TagGroup)
def tag() -> None:
    """Add, remove, replace or list the user tags of a run."""


@tag.command(context_settings={"ignore_unknown_options": True})
@_RUN_ID
@_NAMESPACE
@click.argument("args", nargs=-1, metavar="[FILE] TAG...")
@click.pass_context
def add(ctx: click.Context, run_id: str | None, ns: str | None, args: tuple[str, ...]) -> None:
    """Add user tags to a run."""
    flow_file, tags = _split_file(args)
    if not tags:
        raise UsageError("give at least one tag to add")
    run = _run(ctx, flow_file, run_id, ns)
    run.add_tags(tags)
    _show(run)


@tag.command(context_settings={"ignore_unknown_options": True})
@_RUN_ID
@_NAMESPACE
@click.argument("args", nargs=-1, metavar="[FILE] TAG...")
@click.pass_context
def remove(ctx: click.Context, run_id: str | None, ns: str | None, args: tuple[str, ...]) -> None:
    """Remove user tags from a run (system tags cannot be removed)."""
    flow_file, tags = _split_file(args)
    if not tags:
        raise UsageError("give at least one tag to remove")
    run = _run(ctx, flow_file, run_id, ns)
    run.remove_tags(tags)
    _show(run)


@tag.command()
@_RUN_ID
@_NAMESPACE
@click.option("--remove", "to_remove", multiple=True, help="A tag to remove (repeatable).")
@click.option("--add", "to_add", multiple=True, help="A tag to add (repeatable).")
@click.argument("flow_file", required=False, metavar="[FILE]")
@click.pass_context
def replace(
    ctx: click.Context,
    run_id: str | None,
    ns: str | None,
    to_remove: tuple[str, ...],
    to_add: tuple[str, ...],
    flow_file: str | None,
) -> None:
    """Remove some tags and add others, as one change."""
    if not to_remove or not to_add:
        raise UsageError("give tags to remove (--remove) and to add (--add); or use tag add/remove")
    run = _run(ctx, flow_file, run_id, ns)
    run.replace_tags(list(to_remove), list(to_add))
    _show(run)


@tag.command("list")
@_RUN_ID
@_NAMESPACE
@click.option("--all", "all_runs", is_flag=True, help="Runs of every user (namespace None).")
@click.option("--my-runs", is_flag=True, help="Only your runs (the default).")
@click.option("--hide-system-tags", is_flag=True, help="Only user tags.")
@click.option(
    "--flat", is_flag=True, help="One tag per line on stderr, after a header line (as Metaflow)."
)
@click.option("--group-by-tag", is_flag=True, help="For each tag, the runs that have it.")
@click.option("--group-by-run", is_flag=True, help="For each run, its tags (the default).")
@click.argument("flow_file", required=False, metavar="[FILE]")
@click.pass_context
def list_tags(
    ctx: click.Context,
    run_id: str | None,
    ns: str | None,
    all_runs: bool,
    my_runs: bool,
    hide_system_tags: bool,
    flat: bool,
    group_by_tag: bool,
    group_by_run: bool,
    flow_file: str | None,
) -> None:
    """List the tags of one run (--run-id) or of every run of the flow."""
    from flowkernel import client

    if run_id:
        runs = [_run(ctx, flow_file, run_id, None if all_runs else ns)]
    else:
        if flow_file is None:
            raise UsageError("give --run-id, or the flow file to list all its runs")
        from flowkernel.cli.run_cmds import _datastore_root
        from flowkernel.flow.loader import load_flow

        client.metadata(_datastore_root(ctx))
        if all_runs:
            client.namespace(None)
        elif ns is not None:
            client.namespace(ns)
        else:
            client.default_namespace()
        try:
            runs = list(client.Flow(load_flow(flow_file).__name__).runs())
        except (client.NotFoundError, client.NamespaceMismatchError):
            runs = []
    if group_by_tag and not flat:
        by_tag: dict[str, list[str]] = {}
        for run in runs:
            tags = set(run.user_tags) | (set() if hide_system_tags else set(run.system_tags))
            for one in tags:
                by_tag.setdefault(one, []).append(run.id)
        for one in sorted(by_tag):
            click.echo(f"{one}: {', '.join(by_tag[one])}")
        return
    for run in runs:
        if flat:
            tags = sorted(run.user_tags)
            if not hide_system_tags:
                tags += sorted(run.system_tags)
            click.echo(f"Tags of {run.pathspec}:", err=True)
            for one in tags:
                click.echo(one, err=True)
        else:
            _show(run, hide_system_tags)
