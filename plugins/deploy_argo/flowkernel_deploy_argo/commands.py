"""``flow argo-workflows ...``: create (or print) the Argo objects of a flow; run one task."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from flowkernel.deployer import deployer_attribute_file, write_deployer_attributes
from flowkernel.errors import UsageError

TYPE = "argo-workflows"


class _GroupState:
    def __init__(self, name: str | None):
        self.name = name


def _root(ctx: click.Context) -> str:
    from flowkernel.datastore import default_root

    return (ctx.find_root().obj or {}).get("datastore_root") or default_root()


def _given_name(ctx: click.Context) -> str | None:
    state = ctx.find_object(_GroupState)
    return state.name if state else None


@click.group(TYPE)
@click.option("--name", default=None, help="WorkflowTemplate name [default: the flow's name].")
@click.pass_context
def argo_workflows(ctx: click.Context, name: str | None) -> None:
    """Deploy flows to Argo Workflows; run a deployment's manifest locally (run-local)."""
    ctx.obj = _GroupState(name)


def _create_options(func: Any) -> Any:
    """The options ``create`` and ``run-local`` share (run-local compiles as create does)."""
    options = [
        click.option("--image", envvar="FLOWKERNEL_ARGO_IMAGE", default=None,
                     help="Container image of every step [env FLOWKERNEL_ARGO_IMAGE]."),
        click.option("--namespace", default=None, help="Kubernetes namespace."),
        click.option("--max-workers", type=click.IntRange(min=1), default=100, show_default=True,
                     help="Most pods running at once (spec.parallelism)."),
        click.option("--workflow-timeout", type=click.IntRange(min=1), default=None,
                     help="Seconds a run may take (spec.activeDeadlineSeconds)."),
        click.option("--tag", "tags", multiple=True, help="Tag every run (repeatable)."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def compile_file(
    ctx: click.Context, flow_file: str, image: str | None, remote: bool, **options: Any
) -> tuple[type, dict[str, Any]]:
    """Load, validate and compile ``flow_file``; returns the flow class and the template."""
    from flowkernel.cli.context import get_kernel
    from flowkernel.flow.loader import load_flow
    from flowkernel_deploy_argo.compiler import ArgoOptions, compile_flow, deployment_name

    root = _root(ctx)
    if remote and "://" not in root:
        raise UsageError(
            f"Argo runs each step in a pod, which cannot see the local datastore root {root}: "
            "give a shared one, e.g. --datastore-root s3://bucket/prefix"
        )
    if not image:
        raise UsageError(
            "say which container image runs the steps: --image or FLOWKERNEL_ARGO_IMAGE"
        )
    path = os.path.abspath(flow_file)
    flow_cls = load_flow(path)
    graph = get_kernel().validated_graph(flow_cls)
    opts = ArgoOptions(
        name=deployment_name(flow_cls, _given_name(ctx)),
        image=image,
        datastore_root=root,
        flow_file=path,
        namespace=options["namespace"],
        max_workers=options["max_workers"],
        workflow_timeout=options["workflow_timeout"],
        tags=tuple(options["tags"]),
    )
    return flow_cls, compile_flow(flow_cls, graph, opts)


@argo_workflows.command()
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--only-json", is_flag=True, help="Print the objects as JSON; create nothing.")
@_create_options
@deployer_attribute_file
@click.pass_context
def create(
    ctx: click.Context,
    flow_file: str,
    only_json: bool,
    image: str | None,
    deployer_attribute_file: str | None,
    **options: Any,
) -> None:
    """Compile FLOW_FILE into a WorkflowTemplate and create it (or print it: --only-json)."""
    _, template = compile_file(ctx, flow_file, image, remote=True, **options)
    if only_json:
        click.echo(json.dumps(template, indent=2))
        return
    raise UsageError("creating objects in a cluster is not available yet: use --only-json")
    write_deployer_attributes(deployer_attribute_file, {})  # pragma: no cover


@argo_workflows.command(hidden=True)
@click.argument("flow_file")
@click.argument("step_name")
@click.option("--run-id", required=True)
@click.option("--attempt", default="0", help="Argo's {{retries}} (0 without a retryStrategy).")
@click.option("--max-user-code-retries", type=int, default=0)
@click.option("--input-paths", default="", help="Task paths: comma-separated or a JSON list.")
@click.option("--split-index", type=int, default=None)
@click.option("--output-dir", required=True, type=click.Path(file_okay=False))
@click.option("--configs", default=None, help="Base64 JSON of the config values.")
@click.option("--parameters-dir", default=None, help="Start step: the parameter value files.")
@click.option("--package", default=None, help="Run the flow from this code package.")
@click.option("--tag", "tags", multiple=True)
@click.pass_context
def task(ctx: click.Context, flow_file: str, step_name: str, **opts: Any) -> None:
    """Internal: one step of a deployed flow, as an Argo container runs it."""
    from flowkernel_deploy_argo.task import run_argo_task

    raise SystemExit(run_argo_task(_root(ctx), flow_file, step_name, **opts))


@argo_workflows.command("run-local", context_settings={"ignore_unknown_options": True})
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@_create_options
@click.option("--run-id-file", default=None, help="Write the run id (argo-<workflow>) here.")
@click.argument("params", nargs=-1, type=click.UNPROCESSED)
@deployer_attribute_file
@click.pass_context
def run_local(
    ctx: click.Context,
    flow_file: str,
    image: str | None,
    run_id_file: str | None,
    params: tuple[str, ...],
    deployer_attribute_file: str | None,
    **options: Any,
) -> None:
    """Compile FLOW_FILE as create would and run the Workflow on this machine (--param value)."""
    from flowkernel_deploy_argo.local_executor import LocalWorkflow, workflow_name
    from flowkernel_deploy_argo.workflow import parse_parameters, resolved_spec, workflow_object

    flow_cls, template = compile_file(ctx, flow_file, image or "local", remote=False, **options)
    workflow = workflow_object(template, parse_parameters(flow_cls, list(params)))
    name = workflow_name(workflow["metadata"]["generateName"])
    run_id = f"argo-{name}"
    if run_id_file:
        with open(run_id_file, "w") as fh:
            fh.write(run_id)
    write_deployer_attributes(
        deployer_attribute_file,
        {"name": template["metadata"]["name"], "pathspec": f"{flow_cls.__name__}/{run_id}"},
    )
    click.echo(f"Workflow {name} (run {flow_cls.__name__}/{run_id}) starting", err=True)

    def echo(where: str, stream: str, line: str) -> None:
        click.echo(f"[{where}] {line}", err=stream == "stderr")

    spec = resolved_spec(workflow, template)
    phase = LocalWorkflow(spec, name, options["namespace"] or "default", echo=echo).run()
    click.echo(f"Workflow {name}: {phase}", err=True)
    ctx.exit(0 if phase == "Succeeded" else 1)
