"""The task executor: runs one attempt of one task, in the process it is called in.

Every runtime uses it: runtime_local calls :func:`run_task` in a forked child (or runs
``flow step`` in a fresh interpreter), remote runtimes run ``flow step``. It sets ``current``,
binds the inputs lazily, runs the step with ``@catch`` / ``@timeout`` / ``@environment`` applied,
checks the ``self.next`` call against the graph, persists the artifacts and writes the attempt's
record once, atomically. Returns the process exit code (0: the task counts as done).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from flowkernel.datastore import remember_inline
from flowkernel.engine.foreach_chunks import chunks_for
from flowkernel.engine.records import RunRecord, TaskFailure, TaskRecord, TaskRef, Transition
from flowkernel.errors import (
    ExceptionWrapper,
    FailureHandledByCatch,
    FlowkernelError,
    InternalError,
    InvalidNextError,
    StorageError,
    TimeoutException,
    TooManySplitsError,
    TransitionMismatchError,
    UnpicklableArtifactError,
)
from flowkernel.flow.current import ParallelInfo, current
from flowkernel.flow.decorators import step_decorators, timeout_seconds
from flowkernel.flow.flowspec import EPHEMERAL, FlowSpec, ForeachFrame, Inputs, load_chunk
from flowkernel.unbounded_foreach import UBF_CONTROL, foreach_width

if TYPE_CHECKING:
    from flowkernel.datastore import FlowStore
    from flowkernel.graph.model import FlowGraph, Node

#: Bookkeeping kept in the task record, not stored as artifacts.
INTERNAL = frozenset(
    {
        "_current_step",
        "_foreach_stack",
        "_iteration_stack",
        "_transition",
        "_success",
        "_task_ok",
        "_foreach_var",
        "_foreach_num_splits",
    }
)
_IMMUTABLE = (str, bytes, int, float, bool, complex, type(None))


@attrs.frozen
class TaskSpec:
    """Everything that identifies one task attempt. ``input_paths`` are ``step/task/attempt``."""

    flow_name: str
    run_id: str
    step: str
    task_id: str
    attempt: int
    input_paths: tuple[str, ...]
    datastore_root: str
    split_index: int | None = None
    max_user_code_retries: int = 0
    origin_run_id: str | None = None
    user: str = "unknown"
    tags: tuple[str, ...] = ()
    namespace: str | None = None
    num_parallel: int | None = None
    #: ``--max-num-splits``: a foreach is checked against it before it is materialised
    max_num_splits: int | None = None
    #: unbounded foreach: ``"ubf_control"`` (decide the width) or ``"ubf_task"`` (a mapper)
    ubf_context: str | None = None
    #: the code package the task runs from (``flow step --package KEY``), recorded for
    #: ``Task.code``; None: the flow file was imported in place
    code_package: str | None = None


def parse_input_path(path: str) -> tuple[str, str, int]:
    step, task_id, attempt = path.split("/")
    return step, task_id, int(attempt)


def run_task(
    flow_cls: type[FlowSpec],
    graph: FlowGraph,
    store: FlowStore,
    spec: TaskSpec,
    input_records: Sequence[TaskRecord | TaskRef] | None = None,
    durable: bool = True,
    *,
    skip_decorators: bool = False,
    artifacts: Mapping[str, str] | None = None,
) -> int:
    """Run one attempt; returns 0 when the task is done (succeeded or caught), else 1.

    :param input_records: the records of ``spec.input_paths`` if the caller has them already
        (a forked worker shares the controller's); else they are read from the store, as are
        the records of inputs given as :class:`TaskRef` (a runtime keeps its memory flat so).
    :param durable: fsync the record before returning. ``False`` only for a runtime that makes
        the record durable itself before any successor reads it (a group commit).
    :param skip_decorators: run the step's code without its decorators (``flow spin``).
    :param artifacts: name -> content hash of stored values that replace what the task reads
        from its inputs under those names (``flow spin --artifacts-module``).
    """
    started = time.time()
    node = graph[spec.step]
    given: Sequence[TaskRecord | TaskRef | None] = (
        input_records if input_records is not None else [None] * len(spec.input_paths)
    )
    records = [
        r if isinstance(r, TaskRecord) else _read_input(store, spec, path)
        for r, path in zip(given, spec.input_paths, strict=True)
    ]
    for record in records:  # records handed over in memory (fork, pool): their inline values
        remember_inline(record.inline)
    flow = object.__new__(flow_cls)
    state = flow.__dict__
    state.update(_fk_store=store, _fk_loaded={}, _fk_node=node, _fk_shas={})
    state["_fk_max_splits"] = spec.max_num_splits
    control = spec.ubf_context == UBF_CONTROL  # runs no user code: no decorator applies
    skip = control or skip_decorators
    decos = {} if skip else step_decorators(getattr(flow_cls, spec.step))
    exception: BaseException | None = None
    caught = False
    stacktrace = ""
    inputs: Inputs | None = None
    try:
        inputs = _bind_inputs(flow, flow_cls, graph, node, store, spec, records)
        state["_fk_shas"].update(artifacts or {})
        _set_current(flow_cls, graph, spec, store)
        if "environment" in decos:
            os.environ.update({k: str(v) for k, v in decos["environment"]["vars"].items()})
        state.update(_transition=None, _success=False, _task_ok=None, _exception=None)
        if control:
            _run_control(flow, node, spec, records[0])
        else:
            if spec.num_parallel and not spec.split_index:  # a gang's node 0: its control task
                _record_gang(flow, spec)
            _run_user_code(flow, node, spec, decos, inputs)
        _check_transition(node, flow._transition)
        if state.get("_unbounded_foreach"):
            _check_unbounded(graph, node)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        exception, stacktrace = exc, user_traceback(exc)
        if "catch" in decos and spec.attempt >= spec.max_user_code_retries:
            caught = _catch(flow, node, spec, decos["catch"], exc, stacktrace)
    ok = exception is None or caught
    if exception is None and "catch" in decos and decos["catch"]["var"]:
        setattr(flow, decos["catch"]["var"], None)
    try:
        record = _persist(
            flow, flow_cls, node, store, spec, started, ok, exception, caught, inputs, durable
        )
    except StorageError as err:  # the record itself could not be written (disk full, ...)
        _report_failure(spec, err, "")
        current._clear()
        return 1
    if record.persist_error:
        exception = exception or RuntimeError(record.persist_error)
        stacktrace = stacktrace or record.persist_error + "\n"
        ok = False
    if not ok:
        _report_failure(spec, exception, stacktrace)
    current._clear()
    return 0 if ok else 1


def preload_flow(flow_cls: Any) -> None:
    """Fill the caches of ``flow_cls`` that every task reads (its read-only names, its
    parameter names): a process that forks tasks calls it before the fork (the local fork
    server, once per run), so that no task computes them after its fork. Never raises."""
    try:
        flow_cls._fk_readonly()
        flow_cls._fk_parameter_names()
    except Exception:
        pass


def preload_input(
    store: FlowStore, inputs: Sequence[TaskRecord | TaskRef] | None, split_index: int | None
) -> range:
    """What a process about to fork a task can do for it, once for many tasks (the local fork
    server, before each fork): load (and verify) the foreach chunk that the task's
    ``self.input`` reads, so that the task, which inherits it, neither opens, hashes nor
    unpickles it. ``split_index``: the task's foreach index (None outside a foreach and for an
    unbounded foreach's control task). Returns the foreach indexes of the tasks with the same
    inputs for which there is nothing more to load (the caller need not call it for them).
    Never raises: whatever fails here, the task meets again and reports."""
    first = inputs[0] if inputs else None
    chunks = getattr(first, "foreach_chunks", None)
    if chunks is None or split_index is None:
        return range(sys.maxsize)
    if split_index >= len(chunks.shas) * chunks.size:
        return range(split_index, split_index + 1)
    start = split_index - split_index % chunks.size
    try:
        remember_inline(first.inline)  # type: ignore[union-attr]  # (a small chunk is inline)
        load_chunk(store, chunks, split_index)
    except Exception:
        return range(split_index, split_index + 1)
    return range(start, start + chunks.size)


def user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without the executor's own frames at its top."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    if tb is None:  # raised by the executor itself (a bad transition, ...): the message says it
        return "" if isinstance(exc, FlowkernelError) else "".join(traceback.format_exception(exc))
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _read_input(store: FlowStore, spec: TaskSpec, path: str) -> TaskRecord:
    step, task_id, attempt = parse_input_path(path)
    record = TaskRecord.read(store, spec.run_id, step, task_id, attempt)
    if record is None:
        raise FlowkernelError(f"input {spec.run_id}/{path} has no record")
    return record


def _bind_inputs(
    flow, flow_cls, graph, node, store, spec, records: Sequence[TaskRecord]
) -> Inputs | None:
    """Set up lazy artifacts, foreach and iteration stacks; return the join's inputs."""
    state = flow.__dict__
    first = records[0]
    parent_stack = list(first.foreach_stack)
    iter_stack = list(first.iteration_stack)
    inputs = None
    if node.type == "join":
        inputs = Inputs([_input_view(flow_cls, store, r) for r in records])
        state["_fk_shas"] = _passdown(flow_cls, first.artifacts)
        split = graph[node.split_parents[-1]] if node.split_parents else None
        if split is not None and split.type == "foreach" and parent_stack:
            _check_foreach_join(spec, records, parent_stack[-1])
            parent_stack = parent_stack[:-1]
    else:
        state["_fk_shas"] = dict(first.artifacts)
        parent = graph[first.step] if first.step in graph else None  # noqa: SIM401
        if parent is not None and parent.type == "foreach" and spec.ubf_context == UBF_CONTROL:
            parent_stack.append(ForeachFrame(spec.step, first.foreach_var, None, None, None))
        elif parent is not None and parent.type == "foreach" and spec.split_index is not None:
            # the frame's display value is not loaded: that would unpickle the whole list of
            # values in every one of the N tasks (the `_foreach_values` artifact has them)
            parent_stack.append(
                ForeachFrame(
                    spec.step,
                    first.foreach_var,
                    first.foreach_num_splits,
                    spec.split_index,
                    None,
                )
            )
            state["_fk_chunks"] = first.foreach_chunks  # self.input reads one chunk
        if node.is_recursive_switch:
            if first.step == node.name:
                iter_stack[-1] += 1
            else:
                iter_stack.append(0)
        elif parent is not None and parent.is_recursive_switch and iter_stack:
            iter_stack.pop()
    state["_fk_where"] = f"{spec.flow_name}/{first.run_id}/{first.step}/{first.task_id}"
    state["_current_step"] = spec.step
    state["_foreach_stack"] = tuple(parent_stack)
    state["_iteration_stack"] = tuple(iter_stack)
    return inputs


def _check_foreach_join(spec: TaskSpec, records: Sequence[TaskRecord], top: ForeachFrame) -> None:
    # an unbounded foreach's width (num_splits None) was counted by the scheduler
    if top.num_splits is not None and len(records) != top.num_splits:
        raise InternalError(
            f"join step '{spec.step}' expected {top.num_splits} inputs from the foreach "
            f"but received {len(records)}"
        )
    lineages = {r.foreach_stack[:-1] for r in records}
    if len(lineages) > 1:
        raise InternalError(f"join step '{spec.step}' joins branches whose lineages differ")


def _passdown(flow_cls: type, artifacts: Mapping[str, str]) -> dict[str, str]:
    """What a join starts with: parameters, constants, ``name`` and the graph info."""
    keep = set(flow_cls._fk_readonly()) | {"_graph_info"}
    return {k: v for k, v in artifacts.items() if k in keep}


def _input_view(flow_cls: type, store: FlowStore, record: TaskRecord) -> FlowSpec:
    view = object.__new__(flow_cls)
    view.__dict__.update(
        _fk_store=store,
        _fk_loaded={},
        _fk_shas=dict(record.artifacts),
        _current_step=record.step,
        _foreach_stack=record.foreach_stack,
        _task_pathspec=f"{record.run_id}/{record.step}/{record.task_id}",
    )
    view.__dict__["_fk_where"] = f"{record.flow or '?'}/{view._task_pathspec}"
    return view


def _set_current(flow_cls: type, graph: FlowGraph, spec: TaskSpec, store: FlowStore) -> None:
    """Set ``current`` for this task: built on first use (most steps never read it), from
    values fixed now (the ``@project`` fields are read now: a failure fails the task here)."""
    project_fields = None
    if getattr(flow_cls, "_fk_project", None) is not None:
        run = RunRecord.read(store, spec.run_id)
        project = run.project if run else None
        project_fields = _project_fields(project) if project else None
    current._set_lazy(lambda: _current_values(flow_cls, graph, spec, project_fields))


def _current_values(
    flow_cls: Any, graph: FlowGraph, spec: TaskSpec, project_fields: dict[str, Any] | None
) -> dict[str, Any]:
    parallel = None
    if spec.num_parallel:
        control = spec.task_id.split("_node_")[0]
        parallel = ParallelInfo("127.0.0.1", spec.num_parallel, spec.split_index or 0, control)
    return dict(
        flow_name=spec.flow_name,
        run_id=spec.run_id,
        step_name=spec.step,
        task_id=spec.task_id,
        retry_count=spec.attempt,
        origin_run_id=spec.origin_run_id,
        namespace=spec.namespace if spec.namespace is not None else f"user:{spec.user}",
        username=spec.user,
        tags=list(spec.tags),
        graph=graph,
        parameter_names=list(flow_cls._fk_parameter_names()),
        datastore_root=spec.datastore_root,
        parallel=parallel,
        is_parallel=parallel is not None,
        **(project_fields or {}),
    )


def _project_fields(project: dict[str, Any]) -> dict[str, Any]:
    from flowkernel.flow.project import ProjectInfo

    return ProjectInfo.from_dict(project).to_current()


def _run_user_code(flow, node: Node, spec: TaskSpec, decos, inputs) -> None:
    func = getattr(flow, spec.step)
    if "catch" in decos and spec.attempt > spec.max_user_code_retries:
        raise FailureHandledByCatch(
            f"Task {spec.step}/{spec.task_id} failed in an earlier attempt without a Python "
            "exception (the process died); @catch handles it."
        )
    seconds = timeout_seconds(decos["timeout"].attributes) if "timeout" in decos else 0
    if seconds > 0:
        _arm_timeout(spec.step, seconds)
    try:
        if node.type == "join":
            func(inputs)
        else:
            func()
    finally:
        if seconds > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _run_control(flow, node: Node, spec: TaskSpec, split: TaskRecord) -> None:
    """The control task of an unbounded foreach: ask the input for the width, here, and name
    the mapper tasks (``<task id>_node_<i>``) that the runtime starts next."""
    var = split.foreach_var or ""
    width = foreach_width(getattr(flow, var), spec.max_num_splits)
    limit = spec.max_num_splits
    if limit is not None and width > limit:
        raise TooManySplitsError(
            f"Foreach in step '{split.step}' over self.{var} yielded {width} child steps, more "
            f"than the maximum of {limit}; raise it with --max-num-splits"
        )
    if width == 0:
        raise InvalidNextError(f"foreach over self.{var} produced zero splits", step=split.step)
    state = flow.__dict__
    state["_control_mapper_tasks"] = [
        f"{spec.run_id}/{spec.step}/{spec.task_id}_node_{i}" for i in range(width)
    ]
    state["_control_task_is_mapper_zero"] = False
    state["_foreach_num_splits"] = width  # recorded: the scheduler starts this many mappers
    state["_transition"] = (list(node.out_funcs), None)


def _record_gang(flow, spec: TaskSpec) -> None:
    """What Metaflow's ``@parallel`` control task records: every node's pathspec, itself first."""
    ids = [spec.task_id, *(f"{spec.task_id}_node_{i}" for i in range(1, spec.num_parallel or 1))]
    flow.__dict__["_control_mapper_tasks"] = [f"{spec.run_id}/{spec.step}/{i}" for i in ids]
    flow.__dict__["_control_task_is_mapper_zero"] = True


def _check_unbounded(graph: FlowGraph, node: Node) -> None:
    """An unbounded foreach's body is one step followed by its join (as in Metaflow)."""
    child = graph[node.out_funcs[0]]
    if len(child.out_funcs) != 1 or graph[child.out_funcs[0]].type != "join":
        raise InvalidNextError(
            f"a foreach over an UnboundedForeachInput must split into a single step followed "
            f"by a join; step '{child.name}' continues with {list(child.out_funcs)}",
            step=node.name,
            file=node.source_file,
            line=node.next_lineno or node.func_lineno,
        )


def _arm_timeout(step: str, seconds: float) -> None:
    def expire(_signum, _frame):
        h, rest = divmod(int(seconds), 3600)
        m, s = divmod(rest, 60)
        raise TimeoutException(f"Step {step} timed out after {h} hours, {m} minutes, {s} seconds")

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _check_transition(node: Node, transition: Any) -> None:
    def mismatch(msg: str) -> TransitionMismatchError:
        line = node.next_lineno or node.func_lineno
        return TransitionMismatchError(msg, step=node.name, file=node.source_file, line=line)

    if node.type == "end":
        if transition is not None:
            raise mismatch("the end step must not call self.next()")
        return
    if transition is None:
        raise mismatch(
            "the step finished without calling self.next(); it must be the last statement of "
            f"the step (expected a transition to {', '.join(node.out_funcs)})"
        )
    targets = list(transition[0])
    if node.type == "split-switch":
        if len(targets) != 1 or targets[0] not in node.out_funcs:
            raise mismatch(f"the switch chose an unknown step {targets}")
    elif targets != list(node.out_funcs):
        raise mismatch(
            f"self.next() was called with {targets} but the flow's graph expects "
            f"{list(node.out_funcs)}; make sure there is one unconditional self.next() at the "
            "end of the step"
        )


def _catch(flow, node: Node, spec: TaskSpec, deco, exc, stacktrace) -> bool:
    """Swallow ``exc`` per ``@catch``: fake the static transition, store the exception."""
    wrapper = ExceptionWrapper(exc, stacktrace)
    if deco["print_exception"]:
        print(f"@catch caught an exception from step {spec.step}:")
        for line in stacktrace.rstrip().splitlines():
            print(">  " + line)
        sys.stdout.flush()
    state = flow.__dict__
    foreach = node.foreach_param if node.type == "foreach" else None
    state["_transition"] = (list(node.out_funcs), foreach)
    state["_catch_exception"] = wrapper
    if deco["var"]:
        state[deco["var"]] = wrapper
    return True


def _persist(
    flow, flow_cls, node, store, spec, started, ok, exception, caught, inputs, durable=True
) -> TaskRecord:
    """Store every artifact of ``flow`` and write the attempt's record (always, even on failure)."""
    state = flow.__dict__
    readonly = flow_cls._fk_readonly()
    artifacts = dict(state["_fk_shas"])
    loaded = state["_fk_loaded"]
    info: dict[str, Any] = {}
    persist_error: str | None = None
    persist_type = "UnpicklableArtifactError"
    if exception is not None and not caught:
        state["_exception"] = ExceptionWrapper(exception)
    for name, value in list(state.items()):
        if name.startswith("__") or name.startswith("_fk_") or name in INTERNAL:
            continue
        if name in EPHEMERAL or name in readonly or name == "_task_pathspec":
            continue
        if name in loaded and loaded[name] is value and type(value) in _IMMUTABLE:
            continue  # read but not reassigned: the inherited sha stands
        try:  # a value equal to the inherited one (`_exception = None`...) costs no file I/O
            sha, size = store.save(name, value, artifacts.get(name), hold=True)
        except (UnpicklableArtifactError, StorageError) as err:
            if persist_error is None:
                persist_error, persist_type = str(err), type(err).__name__
            continue
        artifacts[name] = sha
        info[name] = {"size": size, "type": type(value).__qualname__}
    transition = state.get("_transition")
    chunks = None
    if ok and not caught and not persist_error and state.get("_foreach_var"):
        chunks = chunks_for(flow, store, artifacts)
    failure = _failure(exception) if exception is not None else None
    if persist_error:
        failure = TaskFailure(persist_type, persist_error)
    record = TaskRecord(
        flow=spec.flow_name,
        run_id=spec.run_id,
        step=spec.step,
        task_id=spec.task_id,
        attempt=spec.attempt,
        success=ok and not caught and persist_error is None,
        task_ok=ok and persist_error is None,
        artifacts=artifacts,
        info=info,
        input_paths=spec.input_paths,
        split_index=spec.split_index,
        foreach_stack=state["_foreach_stack"],
        iteration_stack=state["_iteration_stack"],
        transition=Transition(tuple(transition[0]), transition[1]) if transition else None,
        foreach_var=state.get("_foreach_var"),
        foreach_num_splits=state.get("_foreach_num_splits"),
        foreach_chunks=chunks,
        exception=failure,
        caught=caught,
        origin_run_id=spec.origin_run_id,
        started_at=started,
        finished_at=time.time(),
        pid=os.getpid(),
        persist_error=persist_error,
        ubf_context=spec.ubf_context,
        code_package=spec.code_package,
    )
    record.write(store, durable)
    return record


def _failure(exc: BaseException) -> TaskFailure:
    klass = type(exc)
    return TaskFailure(f"{klass.__module__}.{klass.__qualname__}", str(exc))


def _report_failure(spec: TaskSpec, exc: BaseException | None, stacktrace: str) -> None:
    """Print the traceback to the task's stderr (the user's own log)."""
    where = f"{spec.flow_name}/{spec.run_id}/{spec.step}/{spec.task_id}"
    if isinstance(exc, FlowkernelError) and not stacktrace:
        print(f"Task {where} failed: {exc}", file=sys.stderr)
    else:
        sys.stderr.write(stacktrace)
        print(f"Task {where} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.stderr.flush()
