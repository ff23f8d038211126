"""The ``flow`` root command, the built-in introspection commands, and error handling.

Exit codes: 0 success; 1 a flow that fails validation or a run that fails; 2 a usage error.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from flowkernel.cli.context import get_kernel
from flowkernel.errors import FlowkernelError, GraphValidationError, UsageError
from flowkernel.startup import resume_gc


def _version_callback(ctx: click.Context, _param: Any, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from flowkernel.cli.plugins_cmd import version_lines

    for line in version_lines(get_kernel()):
        click.echo(line)
    ctx.exit(0)


def _no_plugins_callback(_ctx: click.Context, _param: Any, value: bool) -> None:
    if value:
        os.environ["FLOWKERNEL_PLUGINS"] = ""


#: The commands that run a flow: the collector stays paused until the flow file is imported
#: (:func:`flowkernel.flow.loader.load_module`); every other command turns it on at its start.
_COLLECT_AT_FLOW_IMPORT = frozenset({"run", "resume", "step"})


class FlowGroup(click.Group):
    """Root group: adds plugin commands lazily and turns flowkernel errors into exit codes."""

    _extended = False

    def _extend(self) -> None:
        if not self._extended:
            self._extended = True
            try:
                kernel = get_kernel()
                kernel.extend_cli(self)
                for name, spec in kernel.deployers().items():
                    if spec.cli is not None and name not in self.commands:
                        self.add_command(spec.cli, name=name)
            except FlowkernelError as exc:
                click.echo(f"flow: {exc}", err=True)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for name in _LAZY_COMMANDS:
            self._builtin(name)
        self._extend()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        cmd = self.commands.get(name) or self._builtin(name)
        if cmd is None:
            self._extend()
            cmd = self.commands.get(name)
        return cmd

    def _builtin(self, name: str) -> click.Command | None:
        """The built-in command ``name`` of :data:`_LAZY_COMMANDS`, imported and added on first
        use (None: not one of them)."""
        if name not in _LAZY_COMMANDS or name in self.commands:
            return self.commands.get(name)
        module, attr = _LAZY_COMMANDS[name]
        command = getattr(importlib.import_module(f"flowkernel.cli.{module}"), attr)
        self.add_command(command, name=name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.invoked_subcommand not in _COLLECT_AT_FLOW_IMPORT:
            resume_gc()  # (flowkernel.startup; the others turn it on before the flow's import)
        try:
            return super().invoke(ctx)
        except GraphValidationError as exc:
            report_graph_errors(exc)
            ctx.exit(1)
        except UsageError as exc:
            raise click.UsageError(str(exc), ctx)
        except FlowkernelError as exc:
            click.secho(f"{exc.headline}: ", fg="red", bold=True, err=True, nl=False)
            click.echo(str(exc), err=True)
            ctx.exit(1)


def report_graph_errors(exc: GraphValidationError) -> None:
    n = len(exc.problems)
    click.secho(
        f"{exc.headline}: {n} problem{'s' if n != 1 else ''}", fg="red", bold=True, err=True
    )
    for problem in exc.problems:
        click.echo(problem.format(), err=True)


@click.group(cls=FlowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version_callback,
    help="Show the kernel and plugin versions and exit.",
)
@click.option(
    "--no-plugins",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_no_plugins_callback,
    help="Load no external plugins (same as FLOWKERNEL_PLUGINS='').",
)
@click.option(
    "--datastore-root",
    envvar="FLOWKERNEL_DATASTORE_ROOT",
    default=None,
    help="Where runs are stored [default: ./.flowkernel].",
)
@click.option(
    "--config",
    "config_files",
    nargs=2,
    multiple=True,
    metavar="NAME PATH",
    help="Read config NAME from the file PATH (repeatable).",
)
@click.option(
    "--config-value",
    "config_values",
    nargs=2,
    multiple=True,
    metavar="NAME JSON",
    help="Give config NAME as a JSON value (repeatable).",
)
@click.option(
    "--branch",
    default=None,
    help="@project flows: run in the branch test.BRANCH (also an option of run and resume).",
)
@click.option(
    "--production",
    is_flag=True,
    default=False,
    help="@project flows: run in the production branch (also an option of run and resume).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    datastore_root: str | None,
    config_files: tuple[tuple[str, str], ...],
    config_values: tuple[tuple[str, str], ...],
    branch: str | None,
    production: bool,
) -> None:
    """flowkernel: run workflows written as Python classes."""
    from flowkernel.flow.config import set_sources

    ctx.obj = {
        "datastore_root": datastore_root,
        "configs_given": bool(config_files or config_values),
        "branch": branch,
        "production": production,
    }
    set_sources(dict(config_files), dict(config_values))


#: The built-in commands other than those that run flows, imported when first used (``flow
#: run`` never needs them): name -> (module of :mod:`flowkernel.cli`, attribute).
_LAZY_COMMANDS = {
    "check": ("graph_cmds", "check"),
    "dump": ("dump_cmd", "dump"),
    "package": ("package_cmd", "package"),
    "plugins": ("plugins_cmd", "plugins"),
    "runs": ("runs_cmd", "runs"),
    "show": ("graph_cmds", "show"),
    "spin": ("spin_cmd", "spin"),
    "tag": ("tag_cmds", "tag"),
}


def _register_builtin_commands() -> None:
    from flowkernel.cli import run_cmds

    for command in run_cmds.COMMANDS:
        cli.add_command(command)


_register_builtin_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``flow`` console script."""
    cli.main(args=argv, prog_name="flow")


def main_for_flow(flow_cls: type) -> None:
    """``python myflow.py COMMAND ...``: run ``flow COMMAND myflow.py ...``."""
    from flowkernel.flow.config import flow_configs
    from flowkernel.flow.loader import flow_file_of, preload

    args = sys.argv[1:]
    if flow_configs(flow_cls) and any(a in ("--config", "--config-value") for a in args):
        # configs given on the command line: import the file afresh once they are registered
        path = flow_file_of(flow_cls) or ""
    else:
        path = preload(flow_cls)
    prog = os.path.basename(path)
    args = _insert_flow_file(args, path, prog)
    cli.main(args=args, prog_name=prog)


#: Options of ``flow`` itself that take a value (they come before the command).
_ROOT_OPTIONS_WITH_VALUE = {
    "--datastore-root": 1,
    "--config": 2,
    "--config-value": 2,
    "--branch": 1,
}


def _insert_flow_file(args: list[str], path: str, prog: str) -> list[str]:
    """``[root options] COMMAND [args]`` -> ``[root options] COMMAND path [args]``.

    No command at all checks the flow, as Metaflow does. An unknown word is left for click, whose
    error suggests the command meant ("Did you mean 'run'?"); an option that is not a root option
    (a flow parameter, a run option) before any command is a usage error that says where it goes.
    """
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            command = cli.commands.get(arg) or cli._builtin(arg)
            if command is not None:
                at = i + 1
                if getattr(command, "flow_file_after_subcommand", False) and at < len(args):
                    at += 1  # `tag add FILE ...`: the group's subcommand comes first
                return [*args[:at], path, *args[at:]]
            return args  # an unknown command: click says so, with a suggestion
        name = arg.split("=", 1)[0]
        if name in ("--help", "-h", "--version", "--no-plugins", "--production"):
            i += 1
        elif name in _ROOT_OPTIONS_WITH_VALUE:
            i += 1 + (0 if "=" in arg else _ROOT_OPTIONS_WITH_VALUE[name])
        else:
            click.UsageError(
                f"{name} is not an option of {prog} itself; parameters and run options go "
                f"after the command: python {prog} run {' '.join(args[i:])}"
            ).show()
            sys.exit(2)
    if args and args[0] in ("--help", "-h", "--version"):
        return args
    return ["check", path, *args]  # no command: check, as Metaflow does
