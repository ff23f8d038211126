"""One step of a deployed flow, as its Argo container runs it (``flow argo-workflows task``).

It turns what Argo hands over (task paths as text, ``{{retries}}``, parameter values in files)
into one attempt of ``flow step`` (its output stored as the task's logs through the kernel's log
sinks), and writes what the next tasks need into ``--output-dir``: ``task-path`` (this attempt's
``step/task/attempt``), ``splits`` (a foreach: the JSON list of split indices ``withParam`` fans
out over) and ``branch`` (a switch: the step it chose). The start step first creates the run
(``argo-<workflow name>``) with its parameters, reserving the id for the workflow's uid: a
retried start pod of the same workflow completes whatever an earlier attempt did not store,
while a different workflow of the same name is refused ("exists already").
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from typing import Any

from flowkernel.errors import UsageError
from flowkernel_deploy_argo import step_process


def parse_paths(text: str) -> list[str]:
    """Task paths from Argo: ``a/1/0,b/2/0``, a JSON list (a foreach's aggregated outputs), or
    a mix of both; empty entries (steps a switch skipped) are dropped."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            raise UsageError(f"unreadable task paths: {text[:200]!r}") from None
        return [p for item in items for p in parse_paths(str(item))]
    return [p for p in (part.strip() for part in text.split(",")) if p]


def task_id_for(step: str, paths: list[str], split_index: int | None) -> str:
    """The same id for every attempt of one task, different for any other task of the run."""
    key = json.dumps([step, paths, split_index])
    return "t" + hashlib.sha256(key.encode()).hexdigest()[:15]


def _split_index(text: str | int | None) -> int | None:
    """Argo's split index: a number, or '' for a task that does not follow a foreach."""
    if text is None or str(text).strip() == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--split-index: not a number: {text!r}") from None


def _parameters_from(directory: str | None, flow_cls: type) -> dict[str, Any]:
    """The values the workflow was given: file ``<i>`` holds the i-th Parameter's JSON."""
    from flowkernel.flow.parameters import flow_parameters

    given: dict[str, Any] = {}
    for i, (attr, param) in enumerate(flow_parameters(flow_cls).items()):
        try:
            with open(os.path.join(directory or "", str(i)), encoding="utf-8") as fh:
                raw = fh.read()
        except FileNotFoundError:
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            raise UsageError(f"parameter '{param.name}': not JSON: {raw[:200]!r}") from None
        if value is not None:
            given[attr] = param.convert(value) if isinstance(value, str) else value
    return given


def branch_options(full: str | None) -> tuple[str | None, bool]:
    """``--branch`` / ``--production`` that put a run in the deployment's branch:
    ``prod[.X]``, ``test.X``, or ``user.<user>`` (the run's own user makes that one)."""
    kind, _, rest = (full or "").partition(".")
    if kind == "prod":
        return rest or None, True
    if kind == "test" and rest:
        return rest, False
    return None, False


def _start_run(flow_cls, graph, store, flow_file: str, run_id: str, opts: dict[str, Any]) -> None:
    from flowkernel.engine.runs import RunOptions, current_user, start_run
    from flowkernel.flow.parameters import resolve_parameters

    holder = opts.get("workflow_uid") or None
    if holder is None and store.read_run_record(run_id) is not None:
        return  # a manifest without --workflow-uid, retried: the run exists
    user = opts["user"] or current_user()
    given = _parameters_from(opts["parameters_dir"], flow_cls)
    params = resolve_parameters(flow_cls, given, user)
    branch, production = branch_options(opts["project_branch"])
    options = RunOptions(
        datastore_root=store.root, tags=tuple(opts["tags"]), branch=branch, production=production
    )
    start_run(flow_cls, graph, flow_file, params, options, run_id=run_id, user=user, holder=holder)


def _ordered(graph, node, store, run_id: str, paths: list[str]) -> list[str]:
    """A join's inputs in the order the local runtime gives them: by step name, and a
    foreach's by split index."""
    from flowkernel.engine.executor import parse_input_path

    if node.type != "join" or len(paths) < 2:
        return paths

    def key(path: str) -> tuple[str, int]:
        step, task_id, attempt = parse_input_path(path)
        record = store.read_task_record(run_id, step, task_id, attempt) or {}
        stack = record.get("foreach_stack") or []
        return step, stack[-1][3] if stack else 0

    return sorted(paths, key=key)


def _write(output_dir: str, name: str, text: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, name), "w") as fh:
        fh.write(text)


def _step_argv(spec: Any, configs: dict[str, Any], package: str | None, flow_file: str) -> list:
    """``flow step`` for ``spec``, where the step cannot run in a forked child."""
    argv = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", spec.datastore_root]
    for name, value in configs.items():
        argv += ["--config-value", name, json.dumps(value)]
    code = "-" if package else os.path.abspath(flow_file)  # "-": the package's own flow file
    argv += ["step", code, spec.step, "--run-id", spec.run_id]
    if package:
        argv += ["--package", package]
    argv += ["--task-id", spec.task_id, "--attempt", str(spec.attempt)]
    argv += ["--input-paths", ",".join(spec.input_paths)]
    argv += ["--max-user-code-retries", str(spec.max_user_code_retries), "--user", spec.user]
    if spec.split_index is not None:
        argv += ["--split-index", str(spec.split_index)]
    for tag in spec.tags:
        argv += ["--tag", tag]
    return argv


def run_argo_task(root: str, flow_file: str, step_name: str, **opts: Any) -> int:
    """Run the task; returns its exit code (0: done, including a caught failure)."""
    from flowkernel.cli.context import get_kernel
    from flowkernel.datastore import FlowStore
    from flowkernel.engine.executor import TaskSpec, run_task
    from flowkernel.engine.records import PARAMS_STEP, PARAMS_TASK
    from flowkernel.engine.runs import current_user
    from flowkernel.flow.config import set_sources
    from flowkernel.flow.loader import load_flow
    from flowkernel.specs import RunInfo

    configs = json.loads(base64.b64decode(opts["configs"])) if opts.get("configs") else {}
    set_sources(values=configs)
    package = opts.get("package")
    if package:  # as `flow step --package` does: FILE is inside the package, "-" its own
        from flowkernel.engine.packages import fetch_package

        packaged = fetch_package(root, package)
        if flow_file != "-":
            packaged = os.path.join(os.path.dirname(packaged), flow_file)
        flow_file = packaged
    flow_cls = load_flow(os.path.abspath(flow_file))
    graph = get_kernel().build_graph(flow_cls)
    if step_name not in graph:
        raise UsageError(f"flow {flow_cls.__name__} has no step '{step_name}'")
    node = graph[step_name]
    run_id = opts["run_id"]
    store = FlowStore(root, flow_cls.__name__, os.path.abspath(flow_file))
    if step_name == graph.start:
        path = os.path.abspath(flow_file)
        _start_run(flow_cls, graph, store, path, run_id, opts)
        paths = [f"{PARAMS_STEP}/{PARAMS_TASK}/0"]
    else:
        paths = _ordered(graph, node, store, run_id, parse_paths(opts["input_paths"]))
        if not paths:
            raise UsageError(f"step '{step_name}' got no input task paths")
    attempt = int(opts["attempt"] or 0)
    split_index = _split_index(opts["split_index"])
    task_id = task_id_for(step_name, paths, split_index)
    spec = TaskSpec(
        flow_name=flow_cls.__name__,
        run_id=run_id,
        step=step_name,
        task_id=task_id,
        attempt=attempt,
        input_paths=tuple(paths),
        datastore_root=store.root,
        split_index=split_index,
        max_user_code_retries=int(opts["max_user_code_retries"]),
        user=opts["user"] or current_user(),
        tags=tuple(opts["tags"]),
        code_package=package,
    )
    store.mark_started(run_id, step_name, task_id, attempt)
    run = RunInfo(flow_cls.__name__, run_id, store.root, runtime="argo-workflows")
    if step_process.CAN_FORK:
        child = step_process.fork(lambda: run_task(flow_cls, graph, store, spec))
    else:
        child = step_process.spawn(_step_argv(spec, configs, package, flow_file))
    code = step_process.run_step(
        child, get_kernel().log_sinks(run), run, step_name, task_id, attempt
    )
    if code != 0:
        return code
    record = store.read_task_record(run_id, step_name, task_id, attempt) or {}
    out = opts["output_dir"]
    _write(out, "task-path", f"{step_name}/{task_id}/{attempt}")
    if node.type == "foreach":
        width = record.get("foreach_num_splits")
        if width is None:  # its control task would decide the width: a runtime's job
            print(
                f"step '{step_name}': a foreach over an UnboundedForeachInput cannot run on "
                "Argo Workflows (the workflow's fan-out is fixed when the step ends); run the "
                "flow with `flow run`",
                file=sys.stderr,
            )
            return 1
        _write(out, "splits", json.dumps(list(range(width))))
    if node.type == "split-switch":
        transition = record.get("transition") or [[""]]
        branch = transition[0][0]
        _write(out, "branch", branch)
        if node.is_recursive_switch and branch != step_name:  # this round leaves the loop
            _write(out, "exit-task-path", f"{step_name}/{task_id}/{attempt}")
            _write(out, "exit-branch", branch)
    return 0
