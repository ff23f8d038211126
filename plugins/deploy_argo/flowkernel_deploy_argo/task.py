"""One step of a deployed flow, as its Argo container runs it (``flow argo-workflows task``).

It turns what Argo hands over (task paths as text, ``{{retries}}``, parameters in environment
variables) into one attempt of the kernel's task executor, and writes what the next tasks need
into ``--output-dir``: ``task-path`` (this attempt's ``step/task/attempt``), ``splits`` (a
foreach: the JSON list of split indices ``withParam`` fans out over) and ``branch`` (a switch:
the step it chose). The start step first creates the run (``argo-<workflow name>``) with its
parameters, unless an earlier attempt did.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from flowkernel.errors import UsageError


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


def _parameters_from_env(flow_cls: type) -> dict[str, Any]:
    from flowkernel.flow.parameters import flow_parameters
    from flowkernel_deploy_argo.compiler import PARAM_ENV

    given: dict[str, Any] = {}
    for i, (attr, param) in enumerate(flow_parameters(flow_cls).items()):
        raw = os.environ.get(PARAM_ENV.format(i))
        if raw is None:
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            raise UsageError(f"parameter '{param.name}': not JSON: {raw[:200]!r}") from None
        if value is not None:
            given[attr] = param.convert(value) if isinstance(value, str) else value
    return given


def _start_run(flow_cls, graph, store, flow_file: str, run_id: str, tags) -> None:
    from flowkernel.engine.runs import RunOptions, current_user, start_run
    from flowkernel.flow.parameters import resolve_parameters

    if store.read_run_record(run_id) is not None:
        return  # a retry of the start step: the run exists
    params = resolve_parameters(flow_cls, _parameters_from_env(flow_cls), current_user())
    options = RunOptions(datastore_root=store.root, tags=tuple(tags))
    start_run(flow_cls, graph, flow_file, params, options, run_id=run_id)


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


def run_argo_task(root: str, flow_file: str, step_name: str, **opts: Any) -> int:
    """Run the task; returns its exit code (0: done, including a caught failure)."""
    from flowkernel.cli.context import get_kernel
    from flowkernel.datastore import FlowStore
    from flowkernel.engine.executor import PARAMS_STEP, PARAMS_TASK, TaskSpec, run_task
    from flowkernel.engine.runs import current_user
    from flowkernel.flow.config import set_sources
    from flowkernel.flow.loader import load_flow

    if opts.get("configs"):
        set_sources(values=json.loads(base64.b64decode(opts["configs"])))
    flow_cls = load_flow(os.path.abspath(flow_file))
    graph = get_kernel().build_graph(flow_cls)
    if step_name not in graph:
        raise UsageError(f"flow {flow_cls.__name__} has no step '{step_name}'")
    node = graph[step_name]
    run_id = opts["run_id"]
    store = FlowStore(root, flow_cls.__name__, os.path.abspath(flow_file))
    if step_name == graph.start:
        _start_run(flow_cls, graph, store, os.path.abspath(flow_file), run_id, opts["tags"])
        paths = [f"{PARAMS_STEP}/{PARAMS_TASK}/0"]
    else:
        paths = _ordered(graph, node, store, run_id, parse_paths(opts["input_paths"]))
        if not paths:
            raise UsageError(f"step '{step_name}' got no input task paths")
    attempt = int(opts["attempt"] or 0)
    task_id = task_id_for(step_name, paths, opts["split_index"])
    spec = TaskSpec(
        flow_name=flow_cls.__name__,
        run_id=run_id,
        step=step_name,
        task_id=task_id,
        attempt=attempt,
        input_paths=tuple(paths),
        datastore_root=store.root,
        split_index=opts["split_index"],
        max_user_code_retries=opts["max_user_code_retries"],
        user=current_user(),
        tags=tuple(opts["tags"]),
    )
    store.mark_started(run_id, step_name, task_id, attempt)
    code = run_task(flow_cls, graph, store, spec)
    if code != 0:
        return code
    record = store.read_task_record(run_id, step_name, task_id, attempt) or {}
    out = opts["output_dir"]
    _write(out, "task-path", f"{step_name}/{task_id}/{attempt}")
    if node.type == "foreach":
        _write(out, "splits", json.dumps(list(range(record.get("foreach_num_splits") or 0))))
    if node.type == "split-switch":
        transition = record.get("transition") or [[""]]
        _write(out, "branch", transition[0][0])
    return 0
