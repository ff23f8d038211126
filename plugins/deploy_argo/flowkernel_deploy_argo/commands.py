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
    def __init__(self, name: str | None, namespace: str | None):
        self.name = name
        self.namespace = namespace


def _root(ctx: click.Context) -> str:
    from flowkernel.datastore import default_root

    return (ctx.find_root().obj or {}).get("datastore_root") or default_root()


def _group_namespace(ctx: click.Context) -> str | None:
    state = ctx.find_object(_GroupState)
    return state.namespace if state else None


def _given_name(ctx: click.Context) -> str | None:
    state = ctx.find_object(_GroupState)
    return state.name if state else None


@click.group(TYPE)
@click.option("--name", default=None, help="WorkflowTemplate name [default: the flow's name].")
@click.option(
    "--namespace", default=None, help="Kubernetes namespace [default: the kubeconfig context's]."
)
@click.pass_context
def argo_workflows(ctx: click.Context, name: str | None, namespace: str | None) -> None:
    """Deploy flows to Argo Workflows; run a deployment's manifest locally (run-local)."""
    ctx.obj = _GroupState(name, namespace)


def _create_options(func: Any) -> Any:
    """The options ``create`` and ``run-local`` share (run-local compiles as create does)."""
    options = [
        click.option("--image", envvar="FLOWKERNEL_ARGO_IMAGE", default=None,
                     help="Container image of every step [env FLOWKERNEL_ARGO_IMAGE]."),
        click.option("--namespace", default=None,
                     help="Kubernetes namespace [default: the group's --namespace, else the "
                          "kubeconfig context's]."),
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
    ctx: click.Context,
    flow_file: str,
    image: str | None,
    remote: bool,
    store_code: bool = True,
    **options: Any,
) -> tuple[type, list[dict[str, Any]]]:
    """Load, validate and compile ``flow_file``; returns the flow class and the objects (the
    WorkflowTemplate first, then a CronWorkflow for a flow with ``@schedule``).

    Every task runs from the flow's code package: ``store_code`` puts it in the datastore
    (``--only-json`` only computes its key, which is all the manifest holds).
    """
    from flowkernel.cli.context import get_kernel
    from flowkernel.engine.packages import build_package, store_package
    from flowkernel.flow.loader import load_flow
    from flowkernel_deploy_argo.compiler import ArgoOptions, compile_objects, deployment_name

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
    package = build_package(path, flow_cls.__name__)
    key = store_package(root, package) if store_code else package.key
    opts = ArgoOptions(
        name=deployment_name(flow_cls, _given_name(ctx)),
        image=image,
        datastore_root=root,
        flow_file="-",  # the package's own flow file
        package=key,
        namespace=options["namespace"] or _group_namespace(ctx),
        max_workers=options["max_workers"],
        workflow_timeout=options["workflow_timeout"],
        tags=tuple(options["tags"]),
    )
    return flow_cls, compile_objects(flow_cls, graph, opts)


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
    api = None if only_json else _api(ctx, options["namespace"])  # no cluster: fail first
    flow_cls, objects = compile_file(
        ctx, flow_file, image, remote=True, store_code=not only_json, **options
    )
    template = objects[0]
    if api is None:
        click.echo(json.dumps(objects[0] if len(objects) == 1 else objects, indent=2))
        return
    api.apply("workflowtemplates", template)
    name = template["metadata"]["name"]
    if len(objects) > 1:
        api.apply("cronworkflows", objects[1])
    elif api.delete("cronworkflows", name):
        click.echo(f"Removed the schedule of {name} (the flow has no @schedule now).", err=True)
    click.echo(
        f"Deployed {flow_cls.__name__} as WorkflowTemplate {name} (namespace {api.namespace}).",
        err=True,
    )
    write_deployer_attributes(deployer_attribute_file, _deployment(template, api.namespace))


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
    from flowkernel.flow.loader import load_flow
    from flowkernel_deploy_argo.local_executor import LocalWorkflow, workflow_name
    from flowkernel_deploy_argo.workflow import parse_parameters, resolved_spec, workflow_object

    # parameters are checked before anything is stored or run
    arguments = parse_parameters(load_flow(os.path.abspath(flow_file)), list(params))
    flow_cls, objects = compile_file(ctx, flow_file, image or "local", remote=False, **options)
    template = objects[0]
    workflow = workflow_object(template, arguments)
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
    namespace = options["namespace"] or _group_namespace(ctx) or "default"
    phase = LocalWorkflow(spec, name, namespace, echo=echo).run()
    click.echo(f"Workflow {name}: {phase}", err=True)
    ctx.exit(0 if phase == "Succeeded" else 1)


# -- the cluster ---------------------------------------------------------------------------------


def _api(ctx: click.Context, namespace: str | None = None) -> Any:
    from flowkernel_deploy_argo.k8s import ArgoApi

    state = ctx.find_object(_GroupState)
    return ArgoApi(namespace or (state.namespace if state else None))


def _deployment(template: dict[str, Any], namespace: str) -> dict[str, Any]:
    """What create / describe / list report for a WorkflowTemplate."""
    annotations = template["metadata"].get("annotations", {})
    root = annotations.get("flowkernel/datastore_root", "")
    return {
        "name": template["metadata"]["name"],
        "flow_name": annotations.get("flowkernel/flow_name"),
        "metadata": root if "://" in root else f"local@{root}",
        "additional_info": {"namespace": namespace},
        "parameters": json.loads(annotations.get("flowkernel/parameters", "[]")),
    }


def _template_name(ctx: click.Context, flow_file: str | None = None) -> str:
    from flowkernel.flow.loader import load_flow
    from flowkernel_deploy_argo.compiler import deployment_name

    given = _given_name(ctx)
    if flow_file is None:
        if given is None:
            raise UsageError(f"say which deployment: flow {TYPE} --name NAME ...")
        return deployment_name(type("_", (), {"__name__": given}), given)
    return deployment_name(load_flow(os.path.abspath(flow_file)), given)


def _workflow_name(pathspec: str) -> str:
    run_id = pathspec.rsplit("/", 1)[-1]
    if not run_id.startswith("argo-"):
        raise UsageError(f"{pathspec} is not a run of an Argo workflow (its id starts argo-)")
    return run_id[len("argo-") :]


@argo_workflows.command(context_settings={"ignore_unknown_options": True})
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--run-id-file", default=None, help="Write the run id (argo-<workflow>) here.")
@click.argument("params", nargs=-1, type=click.UNPROCESSED)
@deployer_attribute_file
@click.pass_context
def trigger(
    ctx: click.Context,
    flow_file: str,
    run_id_file: str | None,
    params: tuple[str, ...],
    deployer_attribute_file: str | None,
) -> None:
    """Start a run of FLOW_FILE's WorkflowTemplate (--<parameter> VALUE ...)."""
    from flowkernel.flow.loader import load_flow
    from flowkernel_deploy_argo.workflow import parse_parameters, workflow_object

    flow_cls = load_flow(os.path.abspath(flow_file))
    arguments = parse_parameters(flow_cls, list(params))
    name = _template_name(ctx, flow_file)
    api = _api(ctx)
    template = api.get("workflowtemplates", name)
    if template is None:
        raise UsageError(
            f"no WorkflowTemplate '{name}' in namespace {api.namespace}: run "
            f"`flow argo-workflows create {flow_file}` first"
        )
    created = api.create("workflows", workflow_object(template, arguments))
    run_id = f"argo-{created['metadata']['name']}"
    if run_id_file:
        with open(run_id_file, "w") as fh:
            fh.write(run_id)
    pathspec = f"{flow_cls.__name__}/{run_id}"
    click.echo(f"Workflow {created['metadata']['name']} started: run {pathspec}", err=True)
    write_deployer_attributes(
        deployer_attribute_file,
        {"name": name, "pathspec": pathspec, "metadata": _deployment(template, "")["metadata"]},
    )


PHASES = {"Pending": "pending", "Running": "running", "Succeeded": "successful",
          "Failed": "failed", "Error": "failed"}  # fmt: skip


@argo_workflows.command()
@click.argument("pathspec")
@deployer_attribute_file
@click.pass_context
def status(ctx: click.Context, pathspec: str, deployer_attribute_file: str | None) -> None:
    """Print the state of a run: pending, running, successful, failed or terminated."""
    name = _workflow_name(pathspec)
    workflow = _api(ctx).get("workflows", name)
    if workflow is None:
        raise UsageError(f"no workflow {name} (run {pathspec})")
    phase = workflow.get("status", {}).get("phase") or "Pending"
    state = PHASES.get(phase, phase.lower())
    if state == "failed" and workflow["spec"].get("shutdown") == "Terminate":
        state = "terminated"
    click.echo(state)
    write_deployer_attributes(deployer_attribute_file, {"status": state, "phase": phase})


@argo_workflows.command()
@click.argument("pathspec")
@deployer_attribute_file
@click.pass_context
def terminate(ctx: click.Context, pathspec: str, deployer_attribute_file: str | None) -> None:
    """Stop a run (Argo's terminate: its pods are stopped, no exit handler runs)."""
    name = _workflow_name(pathspec)
    api = _api(ctx)
    workflow = api.get("workflows", name)
    if workflow is None:
        raise UsageError(f"no workflow {name} (run {pathspec})")
    finished = workflow.get("status", {}).get("phase") in ("Succeeded", "Failed", "Error")
    if not finished:
        api.terminate_workflow(name)
    click.echo(f"{pathspec}: {'already finished' if finished else 'terminating'}")
    write_deployer_attributes(deployer_attribute_file, {"terminated": not finished})


@argo_workflows.command()
@deployer_attribute_file
@click.pass_context
def describe(ctx: click.Context, deployer_attribute_file: str | None) -> None:
    """Print the deployment given with --name as JSON."""
    name = _template_name(ctx)
    api = _api(ctx)
    template = api.get("workflowtemplates", name)
    if template is None:
        raise UsageError(f"no WorkflowTemplate '{name}' in namespace {api.namespace}")
    attributes = _deployment(template, api.namespace)
    click.echo(json.dumps(attributes, indent=2))
    write_deployer_attributes(deployer_attribute_file, attributes)


@argo_workflows.command("list")
@click.option("--flow-name", default=None, help="Only deployments of this flow.")
@deployer_attribute_file
@click.pass_context
def list_(ctx: click.Context, flow_name: str | None, deployer_attribute_file: str | None) -> None:
    """List the flowkernel WorkflowTemplates of the namespace (NAME FLOW)."""
    api = _api(ctx)
    found = []
    for template in api.list("workflowtemplates"):
        attributes = _deployment(template, api.namespace)
        if flow_name in (None, attributes["flow_name"]):
            found.append(attributes)
            click.echo(f"{attributes['name']}  {attributes['flow_name']}")
    write_deployer_attributes(deployer_attribute_file, {"deployments": found})


@argo_workflows.command()
@deployer_attribute_file
@click.pass_context
def delete(ctx: click.Context, deployer_attribute_file: str | None) -> None:
    """Delete the WorkflowTemplate given with --name, and its schedule (runs are kept)."""
    name = _template_name(ctx)
    api = _api(ctx)
    api.delete("cronworkflows", name)
    if not api.delete("workflowtemplates", name):
        raise UsageError(f"no WorkflowTemplate '{name}' in namespace {api.namespace}")
    click.echo(f"Deleted WorkflowTemplate {name}.", err=True)
    write_deployer_attributes(deployer_attribute_file, {"deleted": True})
