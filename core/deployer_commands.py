"""The plugin side of the deployer contract: building a deployer's ``flow <name>`` commands.

A deployer's click group and its commands share the same scaffolding whatever they deploy to:
the group's ``--name`` (and any options of the deployer's own, stored for the commands), the
datastore root of ``flow --datastore-root``, the hidden ``--deployer-attribute-file`` every
command writes its result to, and the ``describe`` / ``list`` commands that only differ in where
deployments are kept. This module holds that part once (see docs/writing-a-deployer.md)::

    @deployer_group("my-deployer")
    def my_deployer() -> None:
        \"\"\"Deploy flows to My Scheduler.\"\"\"

    @deployer_command(my_deployer)
    @click.argument("pathspec")
    def status(ctx: click.Context, pathspec: str) -> dict:
        \"\"\"Print the state of a run.\"\"\"
        state = ...
        click.echo(state)
        return {"status": state}  # written to the attribute file for ``Deployer``
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

import click

from flowkernel.errors import UsageError

#: Add to every command of a deployer group: where the command writes its result.
deployer_attribute_file = click.option(
    "--deployer-attribute-file",
    default=None,
    hidden=True,
    help="Write the command's result here as JSON (Deployer reads it).",
)


def write_deployer_attributes(path: str | None, attributes: dict[str, Any]) -> None:
    """Write a command's result for :class:`Deployer` (atomically; nothing if ``path`` is None)."""
    if path:
        from flowkernel.datastore import write_json_atomic

        write_json_atomic(path, attributes)


class DeployerOptions:
    """The values of a deployer group's options (``--name`` and the deployer's own), kept on
    the group's context for its commands."""

    def __init__(self, group: str, values: dict[str, Any]):
        self.group = group  #: the group's name on the command line (``local-deployer``)
        self.values = values


def deployer_group(
    name: str,
    *options: click.Option,
    name_help: str = "Deployment name [default: the flow's name].",
) -> Callable[[Callable[..., Any]], click.Group]:
    """Decorator: the function (its docstring is the help) becomes the click group ``name``,
    with the contract's ``--name NAME`` and ``options``. Commands read their values with
    :func:`group_option`; the function's body (no arguments) runs before every command."""

    def decorate(func: Callable[..., Any]) -> click.Group:
        @functools.wraps(func)
        @click.pass_context
        def callback(ctx: click.Context, **values: Any) -> None:
            ctx.obj = DeployerOptions(
                ctx.info_name or name, values
            )  # the root's settings stay in ctx.find_root()
            func()

        params = [click.Option(["--name"], default=None, help=name_help), *options]
        return click.Group(name, callback=callback, params=params, help=func.__doc__)

    return decorate


def group_option(ctx: click.Context, key: str) -> Any:
    """The value of the deployer group's option ``key`` (``"name"``, ...); None if not given."""
    state = ctx.find_object(DeployerOptions)
    return state.values.get(key) if state else None


def required_name(ctx: click.Context) -> str:
    """The group's ``--name``; a :class:`UsageError` saying how to give it when missing."""
    name = group_option(ctx, "name")
    if name is None:
        state = ctx.find_object(DeployerOptions)
        group = state.group if state else "<deployer>"
        raise UsageError(f"say which deployment: flow {group} --name NAME ...")
    return name


def datastore_root(ctx: click.Context) -> str:
    """The root of ``flow --datastore-root`` (local paths made absolute), else the default."""
    from flowkernel.datastore import default_root
    from flowkernel.storage import normalize_root

    root = (ctx.find_root().obj or {}).get("datastore_root")
    return normalize_root(root) if root else default_root()


def deployer_command(
    group: click.Group, name: str | None = None, **settings: Any
) -> Callable[[Callable[..., dict[str, Any] | None]], click.Command]:
    """Decorator: a command of the contract in ``group``. The function takes the click
    context first, then its own options; it **returns** its result (a JSON-able dict, or None
    for none), which is written to ``--deployer-attribute-file`` (added, hidden) for
    :class:`Deployer`. ``settings`` go to ``click.Command`` (``context_settings``, ...)."""

    def decorate(func: Callable[..., dict[str, Any] | None]) -> click.Command:
        @functools.wraps(func)
        def callback(ctx: click.Context, deployer_attribute_file: str | None, **kw: Any) -> None:
            attributes = func(ctx, **kw)
            if attributes is not None:
                write_deployer_attributes(deployer_attribute_file, attributes)

        command = deployer_attribute_file(click.pass_context(callback))
        return group.command(name, **settings)(command)

    return decorate


def describe_command(
    group: click.Group, find: Callable[[click.Context, str], dict[str, Any]]
) -> click.Command:
    """Add ``describe``: the deployment given with ``--name``, as ``find(ctx, name)`` reports it
    (the object ``create`` writes; ``find`` raises :class:`UsageError` when there is none),
    printed as JSON."""

    @deployer_command(group, "describe")
    def describe(ctx: click.Context) -> dict[str, Any]:
        """Print the deployment given with --name as JSON."""
        attributes = find(ctx, required_name(ctx))
        click.echo(json.dumps(attributes, indent=2))
        return attributes

    return describe


def list_command(
    group: click.Group, deployments: Callable[[click.Context], Iterable[dict[str, Any]]]
) -> click.Command:
    """Add ``list [--flow-name F]``: every deployment ``deployments(ctx)`` yields (objects as
    ``create`` writes), one ``NAME  FLOW`` line each."""

    @deployer_command(group, "list")
    @click.option("--flow-name", default=None, help="Only deployments of this flow.")
    def list_(ctx: click.Context, flow_name: str | None) -> dict[str, Any]:
        """List the deployments (NAME FLOW)."""
        found = [d for d in deployments(ctx) if flow_name in (None, d["flow_name"])]
        for attributes in found:
            click.echo(f"{attributes['name']}  {attributes['flow_name']}")
        return {"deployments": found}

    return list_


def parameter_declarations(flow_cls: type) -> list[dict[str, Any]]:
    """The flow's Parameters as JSON-able records (what ``describe`` reports, and what a
    stand-in flow is built from): name, type, default (None if not JSON-able), help, required."""
    from flowkernel.flow.parameters import JSONType, flow_parameters

    out = []
    for param in flow_parameters(flow_cls).values():
        kind = param.type
        type_name = "JSON" if kind is JSONType else getattr(kind, "__name__", "str")
        default = param.default
        try:
            json.dumps(default)
        except TypeError:
            default = None
        if callable(param.default):
            default = None
        out.append(
            {
                "name": param.name,
                "type": type_name
                if type_name in ("str", "int", "float", "bool", "JSON")
                else "str",
                "default": default,
                "help": param.help or "",
                "required": bool(param.required),
            }
        )
    return out
