"""``flow argo-workflows ...``: create (or print) the Argo objects of a flow; run one task."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from flowkernel.deployer_commands import (
    datastore_root,
    deployer_attribute_file,
    deployer_command,
    deployer_group,
    describe_command,
    group_option,
    list_command,
    required_name,
    write_deployer_attributes,
)
from flowkernel.errors import UsageError

TYPE = "argo-workflows"


@deployer_group(
    TYPE,
    click.Option(["--namespace"], default=None,
                 help="Kubernetes namespace [default: the kubeconfig context's]."),
    name_help="WorkflowTemplate name [default: the flow's name].",
)  # fmt: skip
def argo_workflows() -> None:
    """Deploy flows to Argo Workflows; run a deployment's manifest locally (run-local)."""


#: ``@project`` flows: the branch the deployment (and its runs) belong to, as ``flow run``'s
#: options pick it (environment variables included, through ``resolve_project``).
_project_options = [
    click.option("--branch", default=None,
                 help="@project flows: deploy the branch test.BRANCH (prod.BRANCH with "
                      "--production) [env FLOWKERNEL_BRANCH]."),
    click.option("--production", is_flag=True, default=None,
                 help="@project flows: deploy the production branch [env FLOWKERNEL_PRODUCTION]."),
]  # fmt: skip


def _project(flow_cls: type, branch: str | None, production: bool | None) -> Any:
    """Where the deployment of ``flow_cls`` belongs (None: no ``@project``)."""
    from flowkernel.engine.runs import current_user
    from flowkernel.flow.project import resolve_project

    return resolve_project(flow_cls, current_user(), branch, production or None)


def _not_project_options(flow_cls: type, branch: str | None, production: bool | None) -> list:
    """``--branch`` / ``--production`` given for a flow without ``@project``: they are the
    flow's own parameters then (or an unknown option, said so), never silently dropped."""
    if getattr(flow_cls, "_fk_project", None) is not None:
        return []
    return [
        *(["--branch", branch] if branch is not None else []),
        *(["--production"] * bool(production)),
    ]


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
        *_project_options,
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

    root = datastore_root(ctx)
    if remote and "://" not in root:
        raise UsageError(
            f"Argo runs each step in a pod, which cannot see the local datastore root {root}: "
            "give a shared one, e.g. --datastore-root s3://bucket/prefix"
        )
    if not image:
        raise UsageError(
            "say which container image runs the steps: --image or FLOWKERNEL_ARGO_IMAGE"
        )
    from flowkernel.engine.runs import current_user

    path = os.path.abspath(flow_file)
    flow_cls = load_flow(path)
    graph = get_kernel().validated_graph(flow_cls)
    project = _project(flow_cls, options["branch"], options["production"])
    if project is None and _not_project_options(flow_cls, options["branch"], options["production"]):
        raise UsageError(
            f"--branch / --production: flow {flow_cls.__name__} has no @project, so it has "
            "no branches"
        )
    package = build_package(path, flow_cls.__name__)
    opts = ArgoOptions(
        name=deployment_name(flow_cls, group_option(ctx, "name"), project),
        image=image,
        datastore_root=root,
        flow_file="-",  # the package's own flow file
        package=package.key,
        namespace=options["namespace"] or group_option(ctx, "namespace"),
        max_workers=options["max_workers"],
        workflow_timeout=options["workflow_timeout"],
        tags=tuple(options["tags"]),
        owner=current_user(),
        project=project,
    )
    objects = compile_objects(flow_cls, graph, opts)  # a flow it refuses stores nothing
    if store_code:
        store_package(root, package)
    return flow_cls, objects


@deployer_command(argo_workflows)
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--only-json", is_flag=True, help="Print the objects as JSON; create nothing.")
@_create_options
def create(
    ctx: click.Context, flow_file: str, only_json: bool, image: str | None, **options: Any
) -> dict[str, Any] | None:
    """Compile FLOW_FILE into a WorkflowTemplate and create it (or print it: --only-json)."""
    api = None if only_json else _api(ctx, options["namespace"])  # no cluster: fail first
    flow_cls, objects = compile_file(
        ctx, flow_file, image, remote=True, store_code=not only_json, **options
    )
    template = objects[0]
    compiled = {"workflow_template": template, "cron_workflow": (objects[1:] or [None])[0]}
    if api is None:  # nothing sent, nothing stored: the objects are the result
        click.echo(json.dumps(objects[0] if len(objects) == 1 else objects, indent=2))
        namespace = options["namespace"] or group_option(ctx, "namespace") or ""
        return {**_deployment(template, namespace), **compiled}
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
    return {**_deployment(template, api.namespace), **compiled}


@argo_workflows.command(hidden=True)
@click.argument("flow_file")
@click.argument("step_name")
@click.option("--run-id", required=True)
@click.option("--attempt", default="0", help="Argo's {{retries}} (0 without a retryStrategy).")
@click.option("--max-user-code-retries", type=int, default=0)
@click.option("--input-paths", default="", help="Task paths: comma-separated or a JSON list.")
@click.option("--split-index", default="", help="The task's foreach index ('': none).")
@click.option("--output-dir", required=True, type=click.Path(file_okay=False))
@click.option("--configs", default=None, help="Base64 JSON of the config values.")
@click.option("--parameters-dir", default=None, help="Start step: the parameter value files.")
@click.option("--package", default=None, help="Run the flow from this code package.")
@click.option("--tag", "tags", multiple=True)
@click.option("--user", default=None, help="Whose run it is (the deployment's owner).")
@click.option("--project-branch", default=None, help="Start step: the run's @project branch.")
@click.option(
    "--workflow-uid",
    default=None,
    help="Start step: Argo's {{workflow.uid}}; its retries may complete the run.",
)
@click.pass_context
def task(ctx: click.Context, flow_file: str, step_name: str, **opts: Any) -> None:
    """Internal: one step of a deployed flow, as an Argo container runs it."""
    from flowkernel_deploy_argo.task import run_argo_task

    raise SystemExit(run_argo_task(datastore_root(ctx), flow_file, step_name, **opts))


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
    flow_cls = load_flow(os.path.abspath(flow_file))
    own = _not_project_options(flow_cls, options["branch"], options["production"])
    if own:  # the flow's own parameters, not a branch
        params += tuple(own)
        options.update(branch=None, production=None)
    arguments = parse_parameters(flow_cls, list(params))
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
        {
            "name": template["metadata"]["name"],
            "pathspec": f"{flow_cls.__name__}/{run_id}",
            "metadata": _deployment(template, "")["metadata"],
        },
    )
    click.echo(f"Workflow {name} (run {flow_cls.__name__}/{run_id}) starting", err=True)

    def echo(where: str, stream: str, line: str) -> None:
        click.echo(f"[{where}] {line}", err=stream == "stderr")

    spec = resolved_spec(workflow, template)
    namespace = options["namespace"] or group_option(ctx, "namespace") or "default"
    phase = LocalWorkflow(spec, name, namespace, echo=echo).run()
    click.echo(f"Workflow {name}: {phase}", err=True)
    ctx.exit(0 if phase == "Succeeded" else 1)


# -- the cluster ---------------------------------------------------------------------------------


def _api(ctx: click.Context, namespace: str | None = None) -> Any:
    from flowkernel_deploy_argo.k8s import ArgoApi

    return ArgoApi(namespace or group_option(ctx, "namespace"))


def _deployment(template: dict[str, Any], namespace: str) -> dict[str, Any]:
    """What create / describe / list report for a WorkflowTemplate."""
    annotations = template["metadata"].get("annotations", {})
    root = annotations.get("flowkernel/datastore_root", "")
    info = {"namespace": namespace}
    for key in ("owner", "project_name", "branch_name", "project_flow_name"):
        if f"flowkernel/{key}" in annotations:
            info[key] = annotations[f"flowkernel/{key}"]
    return {
        "name": template["metadata"]["name"],
        "flow_name": annotations.get("flowkernel/flow_name"),
        "metadata": root if "://" in root else f"local@{root}",
        "additional_info": info,
        "parameters": json.loads(annotations.get("flowkernel/parameters", "[]")),
    }


def _template_name(
    ctx: click.Context,
    flow_file: str | None = None,
    branch: str | None = None,
    production: bool | None = None,
) -> str:
    """The deployment a command addresses: ``--name``, else the one ``create FLOW_FILE``
    (with the same ``--branch`` / ``--production``) made."""
    from flowkernel.flow.loader import load_flow
    from flowkernel_deploy_argo.compiler import deployment_name

    given = group_option(ctx, "name") if flow_file else required_name(ctx)
    if given is not None:
        return deployment_name(type("_", (), {"__name__": given}), given)
    flow_cls = load_flow(os.path.abspath(flow_file))
    return deployment_name(flow_cls, None, _project(flow_cls, branch, production))


def _workflow_name(pathspec: str) -> str:
    run_id = pathspec.rsplit("/", 1)[-1]
    if not run_id.startswith("argo-"):
        raise UsageError(f"{pathspec} is not a run of an Argo workflow (its id starts argo-)")
    return run_id[len("argo-") :]


def _with_project_options(func: Any) -> Any:
    for option in reversed(_project_options):
        func = option(func)
    return func


@deployer_command(argo_workflows, context_settings={"ignore_unknown_options": True})
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--run-id-file", default=None, help="Write the run id (argo-<workflow>) here.")
@_with_project_options
@click.argument("params", nargs=-1, type=click.UNPROCESSED)
def trigger(
    ctx: click.Context,
    flow_file: str,
    run_id_file: str | None,
    branch: str | None,
    production: bool | None,
    params: tuple[str, ...],
) -> dict[str, Any]:
    """Start a run of FLOW_FILE's WorkflowTemplate (--<parameter> VALUE ...)."""
    from flowkernel.flow.loader import load_flow
    from flowkernel_deploy_argo.workflow import parse_parameters, workflow_object

    flow_cls = load_flow(os.path.abspath(flow_file))
    params += tuple(_not_project_options(flow_cls, branch, production))
    arguments = parse_parameters(flow_cls, list(params))
    name = _template_name(ctx, flow_file, branch, production)
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
    return {"name": name, "pathspec": pathspec, "metadata": _deployment(template, "")["metadata"]}


PHASES = {"Pending": "pending", "Running": "running", "Succeeded": "successful",
          "Failed": "failed", "Error": "failed"}  # fmt: skip


@deployer_command(argo_workflows)
@click.argument("pathspec")
def status(ctx: click.Context, pathspec: str) -> dict[str, Any]:
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
    return {"status": state, "phase": phase}


@deployer_command(argo_workflows)
@click.argument("pathspec")
def terminate(ctx: click.Context, pathspec: str) -> dict[str, Any]:
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
    return {"terminated": not finished}


def _describe(ctx: click.Context, given: str) -> dict[str, Any]:
    from flowkernel_deploy_argo.names import object_name

    name = object_name(given)
    api = _api(ctx)
    template = api.get("workflowtemplates", name)
    if template is None:
        raise UsageError(f"no WorkflowTemplate '{name}' in namespace {api.namespace}")
    return {**_deployment(template, api.namespace), "workflow_template": template}


def _deployments(ctx: click.Context) -> list[dict[str, Any]]:
    """The flowkernel WorkflowTemplates of the namespace."""
    api = _api(ctx)
    return [_deployment(template, api.namespace) for template in api.list("workflowtemplates")]


describe_command(argo_workflows, _describe)
list_command(argo_workflows, _deployments)


@deployer_command(argo_workflows)
def delete(ctx: click.Context) -> dict[str, Any]:
    """Delete the WorkflowTemplate given with --name, and its schedule (runs are kept)."""
    name = _template_name(ctx)
    api = _api(ctx)
    api.delete("cronworkflows", name)
    if not api.delete("workflowtemplates", name):
        raise UsageError(f"no WorkflowTemplate '{name}' in namespace {api.namespace}")
    click.echo(f"Deleted WorkflowTemplate {name}.", err=True)
    return {"deleted": True}
