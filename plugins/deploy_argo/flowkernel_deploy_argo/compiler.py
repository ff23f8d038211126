"""Compile a flow's graph into an Argo Workflows ``WorkflowTemplate`` (plain dicts).

The shape (see docs/deploying.md): one DAG template for the flow, one container template per
step, one sub-DAG template per foreach, fanned out with ``withParam``. Steps hand each other
their task's path (``step/task/attempt``) through output parameters read from files; a foreach
step also writes its split indices, a switch step the step it chose. Every container runs
``flow argo-workflows task ...`` as a plain argv (no shell anywhere), and values that come from
users (parameters, configs) never appear where Argo or Kubernetes would interpret them:
parameters travel as JSON with ``{``, ``}`` and ``$`` escaped, configs as base64.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import attrs

from flowkernel.errors import FlowkernelError
from flowkernel.flow.project import ProjectInfo
from flowkernel_deploy_argo.names import object_name, template_name

API_VERSION = "argoproj.io/v1alpha1"
OUT_DIR = "/mnt/out"
PARAMS_DIR = "/mnt/parameters"
PARAM_NAME = re.compile(r"[-a-zA-Z0-9_]+")
LABELS = {"app.kubernetes.io/part-of": "flowkernel"}


class CompileError(FlowkernelError):
    """The flow cannot be deployed to Argo Workflows (the message says why and what to do)."""

    headline = "Cannot deploy to Argo Workflows"


@attrs.frozen
class ArgoOptions:
    """What ``create`` was asked for, besides the flow.

    :param name: the WorkflowTemplate's name (already a valid object name).
    :param image: the container image every step runs in.
    :param datastore_root: the root every task reads and writes (``s3://...`` in a cluster).
    :param flow_file: the flow file's path as the container sees it.
    :param package: the code package key tasks run from (None: the image has the file).
    :param owner: the deploying user: every run of the deployment is theirs.
    :param project: where a ``@project`` flow's runs belong (its branch is fixed at create).
    """

    name: str
    image: str
    datastore_root: str
    flow_file: str
    namespace: str | None = None
    max_workers: int = 100
    workflow_timeout: int | None = None
    package: str | None = None
    python: str = "python"
    tags: tuple[str, ...] = ()
    owner: str | None = None
    project: ProjectInfo | None = None


def safe_json(value: Any) -> str:
    """JSON of ``value`` in which no ``{``, ``}`` or ``$`` appears inside a string (they are
    ``\\u`` escapes), so neither Argo's ``{{...}}`` templating nor Kubernetes' ``$(VAR)``
    expansion can touch it; and structural JSON never has ``{{`` either."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    out, in_string, escaped = [], False, False
    for ch in text:
        if in_string and not escaped and ch in "{}$":
            out.append(f"\\u{ord(ch):04x}")
            continue
        out.append(ch)
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            in_string = not in_string
    return "".join(out)


def encode_configs(values: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(values, sort_keys=True).encode()).decode()


def scope_of(graph: Any, node: Any) -> str | None:
    """The innermost foreach a node runs inside (None: the top-level DAG)."""
    parents = node.split_parents[:-1] if node.type == "join" else node.split_parents
    foreaches = [p for p in parents if graph[p].type == "foreach"]
    return foreaches[-1] if foreaches else None


def _refuse_unsupported(graph: Any) -> None:
    for node in graph:
        if node.parallel_step:
            starter = next((p for p in node.in_funcs if graph[p].num_parallel is not None), "?")
            raise CompileError(
                f"step '{node.name}' is @parallel (a gang started by num_parallel in step "
                f"'{starter}'): gangs are not supported on Argo Workflows; run the flow with "
                "`flow run` instead"
            )


class _Names:
    """Template / task names for steps, foreach sub-DAGs and the flow's DAG; never two alike."""

    def __init__(self, flow_name: str, graph: Any):
        self.steps = {n.name: template_name(n.name) for n in graph}
        self.foreach = {
            n.name: template_name(f"foreach-{n.name}") for n in graph if n.type == "foreach"
        }
        loops = [n.name for n in graph if n.is_recursive_switch]
        self.loop = {s: template_name(f"loop-{s}") for s in loops}
        #: the task, inside a loop's DAG, that runs the loop's next round
        self.again = {s: template_name(f"{s}-again") for s in loops}
        self.dag = template_name(flow_name)
        taken: dict[str, str] = {}
        for origin, name in [
            *((f"step '{s}'", t) for s, t in self.steps.items()),
            *((f"the foreach of step '{s}'", t) for s, t in self.foreach.items()),
            *((f"the loop of step '{s}'", t) for s, t in self.loop.items()),
            (f"flow '{flow_name}'", self.dag),
        ]:
            if name.lower() in taken:
                raise CompileError(
                    f"{origin} and {taken[name.lower()]} both become the Argo name '{name}'; "
                    "rename one of them"
                )
            taken[name.lower()] = origin


def compile_flow(flow_cls: type, graph: Any, opts: ArgoOptions) -> dict[str, Any]:
    """The WorkflowTemplate for ``flow_cls``; raises :class:`CompileError` if it cannot run."""
    _refuse_unsupported(graph)
    return _Compiler(flow_cls, graph, opts).workflow_template()


def compile_objects(flow_cls: type, graph: Any, opts: ArgoOptions) -> list[dict[str, Any]]:
    """Every object ``create`` makes: the WorkflowTemplate, and a CronWorkflow for a flow
    with ``@schedule``."""
    from flowkernel.flow.schedule import flow_schedule

    template = compile_flow(flow_cls, graph, opts)
    when = flow_schedule(flow_cls)
    if when is None:
        return [template]
    _refuse_unschedulable(flow_cls)
    return [template, cron_workflow(template, when.cron, when.timezone)]


def _refuse_unschedulable(flow_cls: type) -> None:
    from flowkernel.flow.parameters import flow_parameters

    for param in flow_parameters(flow_cls).values():
        if param.required and param.default is None:
            raise CompileError(
                f"parameter '{param.name}' is required and has no default: a scheduled run "
                "cannot give it a value; give it a default or remove @schedule"
            )


def cron_workflow(template: dict[str, Any], cron: str, timezone: str | None) -> dict[str, Any]:
    """A CronWorkflow that starts the WorkflowTemplate on ``cron`` (Argo v4: ``schedules``)."""
    meta = template["metadata"]
    metadata: dict[str, Any] = {
        "name": meta["name"],
        "labels": {**LABELS, "app.kubernetes.io/name": "flowkernel-schedule"},
        "annotations": {"flowkernel/flow_name": meta["annotations"]["flowkernel/flow_name"]},
    }
    if "namespace" in meta:
        metadata["namespace"] = meta["namespace"]
    spec: dict[str, Any] = {
        "schedules": [cron],
        "concurrencyPolicy": "Allow",
        "startingDeadlineSeconds": 3540,  # a tick missed by up to an hour still runs
        "workflowMetadata": {"labels": {**LABELS, "app.kubernetes.io/name": "flowkernel-run"}},
        "workflowSpec": {"workflowTemplateRef": {"name": meta["name"]}},
    }
    if timezone:
        spec["timezone"] = timezone
    return {"apiVersion": API_VERSION, "kind": "CronWorkflow", "metadata": metadata, "spec": spec}


class _Compiler:
    def __init__(self, flow_cls: type, graph: Any, opts: ArgoOptions):
        self.flow_cls = flow_cls
        self.graph = graph
        self.opts = opts
        self.names = _Names(flow_cls.__name__, graph)

    # -- the whole object -------------------------------------------------------------------------

    def workflow_template(self) -> dict[str, Any]:
        from flowkernel.deployer_commands import parameter_declarations

        declared = parameter_declarations(self.flow_cls)
        metadata: dict[str, Any] = {
            "name": self.opts.name,
            "labels": {**LABELS, "app.kubernetes.io/name": "flowkernel-flow"},
            "annotations": {
                "flowkernel/flow_name": self.flow_cls.__name__,
                "flowkernel/parameters": json.dumps(declared, sort_keys=True),
                "flowkernel/datastore_root": self.opts.datastore_root,
            },
        }
        if self.opts.owner:
            metadata["annotations"]["flowkernel/owner"] = self.opts.owner
        project = self.opts.project
        if project is not None:
            metadata["annotations"].update(
                {
                    "flowkernel/project_name": project.name,
                    "flowkernel/branch_name": project.branch,
                    "flowkernel/project_flow_name": project.flow_name,
                }
            )
        if self.opts.namespace:
            metadata["namespace"] = self.opts.namespace
        spec: dict[str, Any] = {
            "entrypoint": self.names.dag,
            "parallelism": self.opts.max_workers,
            "volumes": [{"name": "out", "emptyDir": {}}],
            "workflowMetadata": {"labels": {**LABELS, "app.kubernetes.io/name": "flowkernel-run"}},
            "podMetadata": {"labels": {**LABELS, "app.kubernetes.io/name": "flowkernel-task"}},
            "templates": [*self._dag_templates(), *self._step_templates()],
        }
        arguments = self._arguments()
        if arguments:
            spec["arguments"] = {"parameters": arguments}
        if self.opts.workflow_timeout:
            spec["activeDeadlineSeconds"] = self.opts.workflow_timeout
        return {
            "apiVersion": API_VERSION,
            "kind": "WorkflowTemplate",
            "metadata": metadata,
            "spec": spec,
        }

    def _arguments(self) -> list[dict[str, Any]]:
        from flowkernel.flow.parameters import flow_parameters

        out = []
        for param in flow_parameters(self.flow_cls).values():
            if not PARAM_NAME.fullmatch(param.name):
                raise CompileError(
                    f"parameter '{param.name}': Argo parameter names may use only letters, "
                    "digits, '-' and '_'"
                )
            default = param.default
            if callable(default) or getattr(param, "IS_INCLUDE_FILE", False):
                default = None  # evaluated in the run, as `flow run` does
            try:
                value = safe_json(default)
            except TypeError:
                value = "null"
            entry = {"name": param.name, "value": value}
            if param.help:
                entry["description"] = param.help
            out.append(entry)
        return out

    # -- DAGs -------------------------------------------------------------------------------------

    def _dag_templates(self) -> list[dict[str, Any]]:
        scopes: dict[str | None, list[Any]] = {}
        for node in self.graph:
            scopes.setdefault(scope_of(self.graph, node), []).append(node)
        templates = []
        for scope, nodes in scopes.items():
            tasks = []
            for node in nodes:
                tasks.append(self._task(node, scope))
                if node.type == "foreach":
                    tasks.append(self._fan_out_task(node))
                if node.is_recursive_switch:
                    templates.append(self._loop_template(node))
            dag: dict[str, Any] = {"failFast": True, "tasks": tasks}
            if scope is None:
                templates.append({"name": self.names.dag, "dag": dag})
                continue
            ends = [
                n for n in nodes if self.graph[scope].matching_join in n.out_funcs
            ]  # the last body step(s): several only when a switch ends the body
            paths = "".join(
                f"{{{{tasks.{self.names.steps[n.name]}.outputs.parameters.task-path}}}}"
                for n in ends
            )
            templates.append(
                {
                    "name": self.names.foreach[scope],
                    "inputs": {"parameters": [{"name": "input-paths"}, {"name": "split-index"}]},
                    "outputs": {
                        "parameters": [{"name": "task-path", "valueFrom": {"parameter": paths}}]
                    },
                    "dag": dag,
                }
            )
        return templates

    def _task(self, node: Any, scope: str | None) -> dict[str, Any]:
        name = self.names.steps[node.name]
        template = self.names.loop.get(node.name, name)  # a loop's first round starts its DAG
        task: dict[str, Any] = {"name": name, "template": template}
        refs: list[str] = []
        deps: list[str] = []
        arguments = []
        for parent in _parents(node):
            if parent == scope:  # first step of a foreach body: fed by the sub-DAG's inputs
                refs.append("{{inputs.parameters.input-paths}}")
                arguments.append(
                    {"name": "split-index", "value": "{{inputs.parameters.split-index}}"}
                )
                continue
            if scope_of(self.graph, self.graph[parent]) == scope:
                dep = self.names.steps[parent]
            else:  # the join of a foreach: its fan-out task, whose output lists every body path
                dep = self.names.foreach[self.graph[node.name].split_parents[-1]]
            ref = f"{{{{tasks.{dep}.outputs.parameters.task-path}}}}"
            if dep not in deps:
                deps.append(dep)
                refs.append(ref)
        if refs:
            arguments.insert(0, {"name": "input-paths", "value": ",".join(refs)})
            task["arguments"] = {"parameters": arguments}
        if len(deps) == 1:
            task["depends"] = f"{deps[0]}.Succeeded"
            parent = self.graph[_parents(node)[0]]
            if parent.type == "split-switch" and len(_parents(node)) == 1:
                branch = f"{{{{tasks.{deps[0]}.outputs.parameters.branch}}}}"
                task["when"] = f"'{branch}' == '{node.name}'"
        elif len(deps) > 1:
            # the steps after a switch meet here: whichever ran (others are skipped/omitted)
            task["depends"] = " && ".join(
                f"({d}.Succeeded || {d}.Skipped || {d}.Omitted)" for d in deps
            )
            task["when"] = f"'{''.join(refs)}' != ''"
        return task

    def _loop_template(self, node: Any) -> dict[str, Any]:
        """A recursive switch: a DAG that runs the step, then itself again while the step
        chooses itself (Argo's recursion: a template that calls itself under a ``when``).

        Its outputs are the last round's: the round that leaves the loop writes
        ``exit-task-path`` / ``exit-branch``, a round that goes round again leaves them empty,
        and the round that did not run (Skipped) gives its outputs' empty defaults; so the two
        references joined give exactly one round's value."""
        step = self.names.steps[node.name]
        again = self.names.again[node.name]
        loop = self.names.loop[node.name]
        inputs = [{"name": "input-paths"}]
        forwarded = []
        if _first_in_foreach(self.graph, node):
            inputs.append({"name": "split-index"})
            forwarded.append({"name": "split-index", "value": "{{inputs.parameters.split-index}}"})
        this_round = f"{{{{tasks.{step}.outputs.parameters"
        next_rounds = f"{{{{tasks.{again}.outputs.parameters"
        outputs = [
            {
                "name": name,
                "valueFrom": {
                    "parameter": f"{next_rounds}.{name}}}}}{this_round}.exit-{name}}}}}",
                    "default": "",
                },
            }
            for name in ("task-path", "branch")
        ]
        first = {"name": "input-paths", "value": "{{inputs.parameters.input-paths}}"}
        then = [{"name": "input-paths", "value": f"{this_round}.task-path}}}}"}]
        if forwarded:  # only the first round follows the foreach (as with `flow run`)
            then.append({"name": "split-index", "value": ""})
        tasks = [
            {"name": step, "template": step, "arguments": {"parameters": [first, *forwarded]}},
            {
                "name": again,
                "template": loop,
                "depends": f"{step}.Succeeded",
                "when": f"'{this_round}.branch}}}}' == '{node.name}'",
                "arguments": {"parameters": then},
            },
        ]
        return {
            "name": loop,
            "inputs": {"parameters": inputs},
            "outputs": {"parameters": outputs},
            "dag": {"failFast": True, "tasks": tasks},
        }

    def _fan_out_task(self, node: Any) -> dict[str, Any]:
        step = self.names.steps[node.name]
        return {
            "name": self.names.foreach[node.name],
            "template": self.names.foreach[node.name],
            "depends": f"{step}.Succeeded",
            "withParam": f"{{{{tasks.{step}.outputs.parameters.splits}}}}",
            "arguments": {
                "parameters": [
                    {
                        "name": "input-paths",
                        "value": f"{{{{tasks.{step}.outputs.parameters.task-path}}}}",
                    },
                    {"name": "split-index", "value": "{{item}}"},
                ]
            },
        }

    # -- steps ------------------------------------------------------------------------------------

    def _step_templates(self) -> list[dict[str, Any]]:
        from flowkernel.flow.decorators import step_decorators

        templates = []
        for node in self.graph:
            decos = step_decorators(getattr(self.flow_cls, node.name))
            templates.append(self._step_template(node, decos))
        return templates

    def _step_template(self, node: Any, decos: dict[str, Any]) -> dict[str, Any]:
        name = self.names.steps[node.name]
        retries = int(decos["retry"]["times"]) if "retry" in decos else 0
        first_in_foreach = _first_in_foreach(self.graph, node)
        inputs = []
        command = [self.opts.python, "-m", "flowkernel.cli"]
        command += ["--datastore-root", self.opts.datastore_root, "argo-workflows", "task"]
        command += [self.opts.flow_file, node.name, "--run-id", "argo-{{workflow.name}}"]
        command += ["--attempt", "{{retries}}" if retries else "0"]
        command += ["--max-user-code-retries", str(retries), "--output-dir", OUT_DIR]
        if node.in_funcs:
            inputs.append({"name": "input-paths"})
            command += ["--input-paths", "{{inputs.parameters.input-paths}}"]
        if first_in_foreach:
            inputs.append({"name": "split-index"})
            command += ["--split-index", "{{inputs.parameters.split-index}}"]
        artifacts = self._parameter_files() if node.name == self.graph.start else []
        if artifacts:
            command += ["--parameters-dir", PARAMS_DIR]
        if self.opts.owner:
            command += ["--user", self.opts.owner]
        if node.name == self.graph.start:  # a retried start pod may complete its own run
            command += ["--workflow-uid", "{{workflow.uid}}"]
        if node.name == self.graph.start and self.opts.project is not None:
            command += ["--project-branch", self.opts.project.branch]  # the run starts in it
        if self.opts.package:
            command += ["--package", self.opts.package]
        configs = self._configs()
        if configs:
            command += ["--configs", encode_configs(configs)]
        for tag in self.opts.tags:
            command += ["--tag", tag]
        container: dict[str, Any] = {
            "image": self.opts.image,
            "command": command,
            "volumeMounts": [{"name": "out", "mountPath": OUT_DIR}],
        }
        env = self._env(node, decos)
        if env:
            container["env"] = env
        resources = _resources(decos.get("resources"))
        if resources:
            container["resources"] = resources
        outputs = [_file_output("task-path")]
        if node.type == "foreach":
            outputs.append(_file_output("splits", default="[]"))
        if node.type == "split-switch":
            outputs.append(_file_output("branch"))
        if node.is_recursive_switch:
            outputs += [_file_output("exit-task-path"), _file_output("exit-branch")]
        template: dict[str, Any] = {"name": name}
        if inputs or artifacts:
            template["inputs"] = {}
        if inputs:
            template["inputs"]["parameters"] = inputs
        if artifacts:
            template["inputs"]["artifacts"] = artifacts
        template["outputs"] = {"parameters": outputs}
        template["container"] = container
        if retries:
            strategy: dict[str, Any] = {"limit": retries, "retryPolicy": "Always"}
            minutes = decos["retry"]["minutes_between_retries"]
            if minutes:
                strategy["backoff"] = {"duration": f"{int(minutes)}m"}
            template["retryStrategy"] = strategy
        if "timeout" in decos:
            from flowkernel.flow.decorators import timeout_seconds

            template["activeDeadlineSeconds"] = math.ceil(
                timeout_seconds(decos["timeout"].attributes)
            )
        return template

    def _parameter_files(self) -> list[dict[str, Any]]:
        """The run's parameter values, as files the start step reads: a raw input artifact has
        no size limit of its own (an environment variable or an argument stops at 128 KiB)."""
        from flowkernel.flow.parameters import flow_parameters

        return [
            {
                "name": f"parameter-{i}",
                "path": f"{PARAMS_DIR}/{i}",
                "raw": {"data": f"{{{{workflow.parameters.{param.name}}}}}"},
            }
            for i, param in enumerate(flow_parameters(self.flow_cls).values())
        ]

    def _configs(self) -> dict[str, Any]:
        from flowkernel.flow.config import flow_configs, thaw

        return {cfg.name: thaw(cfg.value) for cfg in flow_configs(self.flow_cls).values()}

    def _env(self, node: Any, decos: dict[str, Any]) -> list[dict[str, str]]:
        env = []
        for key, value in (decos["environment"]["vars"] if "environment" in decos else {}).items():
            text = str(value)
            if "{{" in text:
                continue  # Argo would template it; the task sets @environment itself anyway
            env.append({"name": str(key), "value": text.replace("$", "$$")})
        return env


def _parents(node: Any) -> list[str]:
    """The steps a task of ``node`` can follow, but for itself (a recursive switch's next
    round is its loop's business)."""
    return [p for p in node.in_funcs if p != node.name]


def _first_in_foreach(graph: Any, node: Any) -> bool:
    """A step that a foreach fans out to: its tasks take a split index."""
    return any(graph[p].type == "foreach" for p in _parents(node))


def _file_output(name: str, default: str = "") -> dict[str, Any]:
    return {"name": name, "valueFrom": {"path": f"{OUT_DIR}/{name}", "default": default}}


def _quantity(value: Any, unit: str = "") -> int | str:
    number = float(value)
    if unit:
        return f"{math.ceil(number)}{unit}"
    return int(number) if number.is_integer() else f"{math.ceil(number * 1000)}m"


def _resources(deco: Any) -> dict[str, Any]:
    if deco is None:
        return {}
    attrs_ = deco.attributes
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if attrs_.get("cpu"):
        requests["cpu"] = _quantity(attrs_["cpu"])
    if attrs_.get("memory"):
        requests["memory"] = _quantity(attrs_["memory"], "M")
    if attrs_.get("disk"):
        requests["ephemeral-storage"] = _quantity(attrs_["disk"], "M")
    if attrs_.get("gpu"):
        limits["nvidia.com/gpu"] = int(attrs_["gpu"])
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def deployment_name(flow_cls: type, given: str | None, project: ProjectInfo | None = None) -> str:
    """The WorkflowTemplate name (valid, stable, at most 45 characters): ``--name``, else a
    ``@project`` flow's ``<project>.<branch>.<flow>``, else the flow's name.

    :raises CompileError: ``--name`` for a ``@project`` flow (its branch names it).
    """
    if project is not None:
        if given is not None:
            raise CompileError(
                f"--name cannot name a @project flow: it is deployed as {project.flow_name} "
                "(choose the branch with --branch / --production)"
            )
        return object_name(project.flow_name)
    return object_name(given or flow_cls.__name__)
