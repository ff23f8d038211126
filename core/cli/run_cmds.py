"""The commands that execute flows: ``run``, ``resume``, ``step`` (internal) and ``logs``.

``flow run FILE [options] [--<parameter> VALUE ...]``: the flow's Parameters become options of
the command, so the flow file is loaded before the rest of the line is parsed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import click

from flowkernel.errors import DecoratorError, UsageError

if TYPE_CHECKING:
    from flowkernel.engine.runs import RunOptions
    from flowkernel.kernel import Kernel

_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _datastore_root(ctx: click.Context) -> str:
    from flowkernel.datastore import default_root
    from flowkernel.storage import normalize_root

    root = (ctx.find_root().obj or {}).get("datastore_root")
    return normalize_root(root) if root else default_root()


def _common_run_options() -> list[click.Option]:
    """The options of run and resume every runtime understands (defaults: RunOptions')."""
    from flowkernel.engine.runs import RunOptions

    default = RunOptions.default
    return [
        click.Option(["--runtime"], default=default("runtime"), show_default=True,
                     help="Runtime to use."),
        click.Option(["--max-workers"], type=int, default=default("max_workers"),
                     show_default=True, help="Most tasks running at once."),
        click.Option(["--max-num-splits"], type=int, default=default("max_num_splits"),
                     show_default=True, help="Most tasks one foreach may create."),
        click.Option(["--tag", "tags"], multiple=True, help="Tag the run (repeatable)."),
        click.Option(["--run-id-file"], default=None, help="Write the run id to this file."),
        click.Option(["--quiet"], is_flag=True, help="Only task output and errors."),
        click.Option(["--with", "decospecs"], multiple=True, metavar="SPEC",
                     help="Add a decorator to every step, e.g. --with retry:times=2."),
        click.Option(["--max-log-size"], type=click.IntRange(min=1),
                     default=default("max_log_size"), show_default=True,
                     help="Most megabytes of each task's stdout and of its stderr kept in its "
                     "log; the rest is dropped."),
        click.Option(["--namespace", "user_namespace"], default=None, metavar="NS",
                     help="The namespace the client sees inside the steps (default: "
                     "user:<you>; '' for every run). The run's tags do not change."),
        click.Option(["--runner-attribute-file"], default=None, hidden=True,
                     help="Write {run_id, flow_name, datastore_root} here once the run exists."),
    ]  # fmt: skip


def _parameter_options(flow_cls: type) -> list[click.Option]:
    from flowkernel.flow.parameters import flow_parameters

    options = []
    for attr, param in flow_parameters(flow_cls).items():
        default = param.default
        shown = "" if default is None or callable(default) else f" [default: {default}]"
        options.append(
            click.Option(
                [f"--{param.name}", attr],
                type=param.click_type,
                envvar=param.env_var,
                default=None,
                help=(param.help or "") + shown + (" [required]" if param.required else ""),
            )
        )
    return options


def _project_options(flow_cls: type, ctx: click.Context) -> list[click.Option]:
    """``--branch`` / ``--production``, for flows with ``@project`` only (given before the
    command, as Metaflow's top-level options, they need one too)."""
    if getattr(flow_cls, "_fk_project", None) is None:
        root = ctx.find_root().obj or {}
        if root.get("branch") or root.get("production"):
            raise UsageError(
                f"--branch and --production are for @project flows; {flow_cls.__name__} has "
                "no @project"
            )
        return []
    from flowkernel.flow.project import ENV_BRANCH

    return [
        click.Option(["--branch"], default=None, envvar=ENV_BRANCH,
                     help="Run in the branch test.BRANCH (prod.BRANCH with --production)."),
        click.Option(["--production"], is_flag=True, default=None,
                     help="Run in the production branch (also FLOWKERNEL_PRODUCTION=1)."),
    ]  # fmt: skip


def _load(flow_file: str, kernel: Kernel, decospecs: list[str]) -> tuple[type, Any]:
    from flowkernel.flow.decorators import attach_decospecs
    from flowkernel.flow.loader import load_flow

    flow_cls = load_flow(flow_file)
    try:
        attach_decospecs(flow_cls, decospecs)
    except DecoratorError as exc:
        raise UsageError(str(exc)) from None
    return flow_cls, kernel.validated_graph(flow_cls)


def _option_values(args: list[str], option: str) -> list[str]:
    """Every value of ``option`` in ``args`` (``--x V`` or ``--x=V``), before they are parsed."""
    values = []
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith(option + "="):
            values.append(arg.split("=", 1)[1])
    return values


def _runtime_name(args: list[str]) -> str:
    """The runtime named on the command line: its own options are parsed with the others."""
    from flowkernel.engine.runs import RunOptions

    names = _option_values(args, "--runtime")
    return names[-1] if names else RunOptions.default("runtime")


#: Options of ``flow`` itself, given before the command (``flow --datastore-root X run F``).
_ROOT_OPTIONS = ("--datastore-root", "--config", "--config-value", "--no-plugins")


def _parse(name: str, params: list[click.Parameter], args: list[str]) -> dict[str, Any]:
    """Parse ``args`` with a command built from ``params`` (help and usage errors included).

    A bad value that came from an environment variable names the variable; a root option given
    after the command says where it goes.
    """
    command = click.Command(name, params=params, help=f"{name.capitalize()} the flow.")
    info = f"flow {name} FILE"
    helps = ["-h", "--help"]  # the outer command passes --help through to here
    try:
        with command.make_context(info, list(args), help_option_names=helps) as sub:
            return dict(sub.params)
    except click.NoSuchOption as exc:
        if exc.option_name in _ROOT_OPTIONS:
            exc.message += (
                f" {exc.option_name} is an option of flow itself and goes before the command: "
                f"flow {exc.option_name} VALUE {name} FILE"
            )
        raise
    except click.BadParameter as exc:
        envvar = _env_source(exc.param, args)
        if envvar:
            raise click.UsageError(
                f"Invalid value in the environment variable {envvar} "
                f"(parameter --{exc.param.name}): {exc.message}",
                exc.ctx,
            ) from None
        raise


def _env_source(param: click.Parameter | None, args: list[str]) -> str | None:
    """The environment variable ``param``'s value came from, if it was not on the command line."""
    import os

    envvar = getattr(param, "envvar", None)
    if not isinstance(envvar, str) or envvar not in os.environ or param is None:
        return None
    given = any(a in param.opts or a.split("=", 1)[0] in param.opts for a in args)
    return None if given else envvar


def _require_flow_file(name: str, flow_file: str, args: tuple[str, ...]) -> None:
    """``flow run --count 5 f.py``: say the file comes first (not "not found: --count")."""
    if not flow_file.startswith("-"):
        return
    files = [a for a in args if a.endswith(".py")]
    options = [flow_file, *(a for a in args if not files or a != files[0])]
    example = f"flow {name} {files[0] if files else 'FILE'} {' '.join(options)}"
    raise UsageError(f"the flow file comes right after '{name}', options after it: {example}")


def _options(ctx: click.Context, values: dict[str, Any], runtime_params) -> RunOptions:
    from flowkernel.engine.runs import RunOptions

    root = ctx.find_root().obj or {}
    return RunOptions(
        datastore_root=_datastore_root(ctx),
        runtime=values["runtime"],
        max_workers=values["max_workers"],
        max_num_splits=values["max_num_splits"],
        tags=tuple(values["tags"]),
        run_id_file=values["run_id_file"],
        quiet=values["quiet"],
        decospecs=tuple(values["decospecs"]),
        max_log_size=values["max_log_size"],
        namespace=values["user_namespace"],
        branch=values.get("branch") or root.get("branch"),
        production=values.get("production") or root.get("production") or None,
        extra={p.name: values.get(p.name) for p in runtime_params},
    )


def _announce(values: dict[str, Any], run_ctx: Any) -> None:
    """Tell a Runner the run exists (atomically: the file appears complete or not at all)."""
    path = values.get("runner_attribute_file")
    if path:
        from flowkernel.datastore import write_json_atomic

        write_json_atomic(
            path,
            {
                "run_id": run_ctx.run_id,
                "flow_name": run_ctx.store.flow_name,
                "datastore_root": run_ctx.store.root,
            },
        )


def _finish(ctx: click.Context, result: Any, flow_file: str) -> None:
    """Exit 0 or 1; a failed run's last line (on stderr) says how to resume it."""
    if not result.success:
        prog = ctx.find_root().info_name or "flow"
        command = f"python {prog} resume" if prog.endswith(".py") else f"flow resume {flow_file}"
        root = (ctx.find_root().obj or {}).get("datastore_root")
        if root and prog == "flow":
            command = f"flow --datastore-root {root} resume {flow_file}"
        click.echo(f"To resume from the failed step: {command}", err=True)
    sys.exit(0 if result.success else 1)


@attrs.frozen
class _Invocation:
    """A parsed ``flow run`` / ``flow resume``: the validated flow and how to run it."""

    kernel: Kernel
    flow_cls: type
    graph: Any
    values: dict[str, Any]
    options: RunOptions


def _prepare(
    ctx: click.Context,
    name: str,
    flow_file: str,
    args: list[str],
    command_params: Callable[[type], list[click.Parameter]],
) -> _Invocation:
    """What run and resume share: load the flow with its ``--with`` decorators, validate it, and
    parse the command line (the common options, ``@project``'s, the runtime's own and
    ``command_params(flow_cls)``) into :class:`RunOptions`."""
    from flowkernel.cli.context import get_kernel

    kernel = get_kernel()
    flow_cls, graph = _load(flow_file, kernel, _option_values(args, "--with"))
    runtime_params = list(kernel.runtime(_runtime_name(args)).options)
    own = _common_run_options() + _project_options(flow_cls, ctx) + runtime_params
    values = _parse(name, own + command_params(flow_cls), args)
    options = _options(ctx, values, runtime_params)
    return _Invocation(kernel, flow_cls, graph, values, options)


def _execute(ctx: click.Context, invocation: _Invocation, run_ctx: Any, flow_file: str) -> None:
    """Announce the run (to a Runner), execute it with its runtime, exit with its status."""
    from flowkernel.engine.runs import execute

    _announce(invocation.values, run_ctx)
    _finish(ctx, execute(invocation.kernel, run_ctx), flow_file)


@click.command(context_settings=_PASS_THROUGH, add_help_option=False)
@click.argument("flow_file", required=False, metavar="FILE")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, flow_file: str | None, args: tuple[str, ...]) -> None:
    """Run the flow in FILE. Its Parameters are options: flow run FILE --help lists them."""
    from flowkernel.engine.runs import current_user, start_run
    from flowkernel.flow.config import add_sources, take_config_options
    from flowkernel.flow.parameters import flow_parameters, resolve_parameters

    if flow_file is None or flow_file in ("--help", "-h"):
        click.echo(ctx.get_help())
        return
    _require_flow_file("run", flow_file, args)
    rest, files, config_values = take_config_options(list(args))
    add_sources(files, config_values)
    inv = _prepare(ctx, "run", flow_file, rest, _parameter_options)
    declared = flow_parameters(inv.flow_cls)
    given = {attr: inv.values.get(attr) for attr in declared}
    converted = {a: declared[a].split(v) if v is not None else None for a, v in given.items()}
    resolved = resolve_parameters(inv.flow_cls, converted, current_user())
    run_ctx = start_run(inv.flow_cls, inv.graph, _abspath(flow_file), resolved, inv.options)
    _execute(ctx, inv, run_ctx, flow_file)


@click.command(context_settings=_PASS_THROUGH, add_help_option=False)
@click.argument("flow_file", required=False, metavar="FILE")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def resume(ctx: click.Context, flow_file: str | None, args: tuple[str, ...]) -> None:
    """Resume a run of the flow in FILE: clone what succeeded, run the rest.

    flow resume FILE [STEP] [--origin-run-id ID]: STEP and everything after it run again.
    """
    from flowkernel.engine.runs import start_resume
    from flowkernel.flow.config import take_config_options

    if flow_file is None or flow_file in ("--help", "-h"):
        click.echo(ctx.get_help())
        return
    _require_flow_file("resume", flow_file, args)
    _, files, config_values = take_config_options(list(args))
    if files or config_values or (ctx.find_root().obj or {}).get("configs_given"):
        raise UsageError(
            "resume reuses the configs of the origin run; --config and --config-value "
            "cannot be given"
        )

    def resume_params(flow_cls: type) -> list[click.Parameter]:
        _reject_parameters(flow_cls, list(args))
        return [
            click.Argument(["step"], required=False),
            click.Option(
                ["--origin-run-id"], default=None, help="Run to resume (default: latest)."
            ),
        ]

    inv = _prepare(ctx, "resume", flow_file, list(args), resume_params)
    origin = inv.values["origin_run_id"]
    flow_cls = _with_origin_configs(inv.flow_cls, flow_file, inv.options.datastore_root, origin)
    if flow_cls is not inv.flow_cls:
        from flowkernel.flow.decorators import attach_decospecs

        attach_decospecs(flow_cls, inv.options.decospecs)
    graph = inv.kernel.validated_graph(flow_cls)
    run_ctx = start_resume(
        flow_cls,
        graph,
        _abspath(flow_file),
        inv.options,
        origin_run_id=origin,
        step=inv.values["step"],
    )
    _execute(ctx, inv, run_ctx, flow_file)


def _reject_parameters(flow_cls: type, args: list[str]) -> None:
    from flowkernel.flow.parameters import flow_parameters

    for param in flow_parameters(flow_cls).values():
        option = f"--{param.name}"
        if any(a == option or a.startswith(option + "=") for a in args):
            raise UsageError(
                f"resume reuses the parameters of the origin run; {option} cannot be given "
                "(start a new run with `flow run` to change it)"
            )


def _with_origin_configs(flow_cls: type, flow_file: str, root: str, origin: str | None) -> type:
    """Re-import the flow with the configs its origin run used (if it has configs)."""
    from flowkernel.datastore import FlowStore
    from flowkernel.engine.records import PARAMS_STEP, PARAMS_TASK, TaskRecord
    from flowkernel.flow.config import flow_configs, set_sources
    from flowkernel.flow.loader import load_flow

    configs = flow_configs(flow_cls)
    if not configs:
        return flow_cls
    store = FlowStore(root, flow_cls.__name__)
    origin = origin or store.latest_run()
    record = TaskRecord.read_latest(store, origin, PARAMS_STEP, PARAMS_TASK) if origin else None
    if record is None:
        return flow_cls  # start_resume reports the missing origin
    values = {
        cfg.name: store.load(record.artifacts[attr])
        for attr, cfg in configs.items()
        if attr in record.artifacts
    }
    set_sources(values=values)
    return load_flow(flow_file, fresh=True)


@click.command(hidden=True)
@click.argument("flow_file", metavar="FILE")
@click.argument("step_name", metavar="STEP")
@click.option("--run-id", required=True)
@click.option("--task-id", required=True)
@click.option("--attempt", type=int, default=0)
@click.option("--input-paths", required=True, help="Comma-separated step/task/attempt.")
@click.option("--split-index", type=int, default=None)
@click.option("--max-user-code-retries", type=int, default=0)
@click.option("--origin-run-id", default=None)
@click.option("--user", default=None)
@click.option("--num-parallel", type=int, default=None)
@click.option("--max-num-splits", type=int, default=None)
@click.option(
    "--ubf-context",
    type=click.Choice(["none", "ubf_control", "ubf_task"]),
    default="none",
    help="Unbounded foreach: the control task (decides the width) or a mapper task.",
)
@click.option("--tag", "tags", multiple=True)
@click.option("--namespace", default=None, help="The client's namespace inside the task.")
@click.option("--with", "decospecs", multiple=True)
@click.option(
    "--package",
    default=None,
    metavar="KEY",
    help="Run the flow from code package KEY (`flow package`): FILE is then the flow file's "
    "path inside the package, or - for the package's own flow file.",
)
@click.pass_context
def step(ctx: click.Context, flow_file: str, step_name: str, **opts: Any) -> None:
    """Internal: run one attempt of one task (what every runtime and deployer executes)."""
    from flowkernel.cli.context import get_kernel
    from flowkernel.engine.executor import TaskSpec
    from flowkernel.engine.runs import current_user, run_step

    spec = TaskSpec(
        flow_name="",  # the flow class's, once imported
        run_id=opts["run_id"],
        step=step_name,
        task_id=opts["task_id"],
        attempt=opts["attempt"],
        input_paths=tuple(p for p in opts["input_paths"].split(",") if p),
        datastore_root=_datastore_root(ctx),
        split_index=opts["split_index"],
        max_user_code_retries=opts["max_user_code_retries"],
        origin_run_id=opts["origin_run_id"],
        user=opts["user"] or current_user(),
        tags=tuple(opts["tags"]),
        num_parallel=opts["num_parallel"],
        max_num_splits=opts["max_num_splits"],
        ubf_context=None if opts["ubf_context"] == "none" else opts["ubf_context"],
        namespace=opts["namespace"],
    )
    sys.exit(run_step(get_kernel(), flow_file, spec, opts["decospecs"], opts["package"]))


@click.command()
@click.argument("target", nargs=-1, required=True, metavar="[FILE] [FLOW/]RUN[/STEP[/TASK]]")
@click.option("--stderr", "stream", flag_value="stderr", help="Show stderr instead of stdout.")
@click.option("--stdout", "stream", flag_value="stdout", default=True, help="Show stdout.")
@click.option("--attempt", type=int, default=None, help="Attempt to show (default: latest).")
@click.pass_context
def logs(ctx: click.Context, target: tuple[str, ...], stream: str, attempt: int | None) -> None:
    """Print the stored output of a run's tasks, a step's tasks, or one task.

    RUN may be a run id or, after FLOW/, 'latest'; FLOW alone means its latest run.
    """
    from flowkernel.cli.logs_view import print_logs

    if len(target) > 2:
        raise UsageError("give at most a flow file and a [FLOW/]RUN[/STEP[/TASK]] pathspec")
    flow_file = target[0] if len(target) == 2 else None
    print_logs(_datastore_root(ctx), target[-1], stream, attempt, flow_file)


def _abspath(path: str) -> str:
    import os

    return os.path.abspath(path)


COMMANDS = [run, resume, step, logs]
