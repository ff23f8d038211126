"""Starting a run or a resume: ids, the run record, the parameters task, the resume plan.

Shared by every runtime, so a run looks the same in the datastore whichever engine ran it.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import platform
import time
from typing import TYPE_CHECKING, Any

import attrs

from flowkernel.datastore import FlowStore
from flowkernel.engine.executor import TaskSpec
from flowkernel.engine.records import PARAMS_STEP, PARAMS_TASK, RunRecord, TaskKey, TaskRecord
from flowkernel.errors import StorageError, UsageError
from flowkernel.unbounded_foreach import UBF_CONTROL

if TYPE_CHECKING:
    from flowkernel.graph.model import FlowGraph
    from flowkernel.kernel import Kernel
    from flowkernel.specs import RunResult


def current_user() -> str:
    """``FLOWKERNEL_USER``, else the login name from the environment."""
    for var in ("FLOWKERNEL_USER", "SUDO_USER", "USERNAME", "USER"):
        value = os.environ.get(var)
        if value:
            return value
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


@attrs.frozen
class RunOptions:
    """How to run: what ``flow run`` / ``flow resume``, ``Runner`` and ``Kernel.run`` pass to a
    runtime. The defaults live here only; the command line and the in-process API take theirs
    from these fields (see :meth:`default`)."""

    datastore_root: str
    #: the runtime that executes the run (a name from the ``flowkernel_runtimes`` registry)
    runtime: str = "local"
    #: at most this many tasks running at once (a ``@parallel`` gang starts whole)
    max_workers: int = 16
    #: at most this many tasks one foreach may create
    max_num_splits: int = 100
    tags: tuple[str, ...] = ()
    run_id_file: str | None = None
    quiet: bool = False
    decospecs: tuple[str, ...] = ()  #: ``--with`` decorators (spawned tasks attach them too)
    branch: str | None = None  #: ``@project`` flows: ``--branch`` (None: from the environment)
    production: bool | None = None  #: ``@project`` flows: ``--production``
    #: most megabytes of each stream of each attempt kept in its log (the rest is dropped)
    max_log_size: int = 10
    #: the namespace the client sees inside the run's steps (None: ``user:<user>``; "": all)
    namespace: str | None = None
    #: the runtime's own options (declared in its ``RuntimeSpec.options``), by parameter name
    extra: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field ``name`` (what an option left out means)."""
        return getattr(attrs.fields(cls), name).default

    @classmethod
    def given(cls, datastore_root: str, **values: Any) -> RunOptions:
        """Options from keyword values where ``None`` means "the default"."""
        return cls(datastore_root, **{k: v for k, v in values.items() if v is not None})


@attrs.frozen
class RunContext:
    """A run whose id, record and parameters task exist; what a runtime executes."""

    flow_cls: type
    flow_file: str | None
    graph: FlowGraph
    store: FlowStore
    run_id: str
    user: str
    options: RunOptions
    params_record: TaskRecord = attrs.field(eq=False)
    origin_run_id: str | None = None
    #: resume only: origin task records by key, that may be cloned instead of run
    clones: dict[TaskKey, TaskRecord] = attrs.field(factory=dict, eq=False)
    #: resume only: steps of which some origin tasks failed or never finished
    unfinished_steps: frozenset[str] = frozenset()


def execute(kernel: Kernel, ctx: RunContext) -> RunResult:
    """Run a prepared run (or resume) with the runtime its options name; returns its result.

    The one place every way of starting a run hands over to a runtime. It records this process
    as the run's controller first, and how the run ended last (see
    :mod:`flowkernel.engine.run_state`): a runtime that raises (it cannot reach its cluster,
    a bug) leaves a failed run, and its error is raised on unchanged.
    """
    from flowkernel.engine.run_state import RunController, RunEnding

    try:
        RunController.this_process().write(ctx.store, ctx.run_id)
        result = kernel.runtime(ctx.options.runtime).factory(kernel).run(ctx)
    except BaseException as exc:
        with contextlib.suppress(Exception):  # the runtime's error is the one to report
            RunEnding.raised(exc).write(ctx.store, ctx.run_id)
        raise
    # the datastore failing now (the run may have failed of that already) costs only the
    # ending: the task records still tell the run's status
    with contextlib.suppress(StorageError):
        RunEnding.of(result).write(ctx.store, ctx.run_id)
    return result


def _validate_tags(tags: tuple[str, ...]) -> None:
    for tag in tags:
        if not isinstance(tag, str) or not tag or len(tag) > 500:
            raise UsageError(f"invalid tag {tag!r}: tags are non-empty strings of <= 500 chars")
    if len(tags) > 50:
        raise UsageError("at most 50 tags per run")


def allocate_run(store: FlowStore) -> str:
    """A new run id (microseconds since the epoch), unique even for concurrent runs."""
    run_id = time.time_ns() // 1000
    while not store.create_run_dir(str(run_id)):
        run_id += 1
    return str(run_id)


def _register_run(
    store, graph, flow_file, options, user, origin, flow_cls=None, run_id=None, holder=None
) -> str:
    from flowkernel.flow.project import resolve_project

    _validate_tags(options.tags)
    project = resolve_project(flow_cls, user, options.branch, options.production)
    if run_id is None:
        run_id = allocate_run(store)
    elif not store.create_run_dir(run_id, holder):
        raise UsageError(f"run {run_id} of {store.flow_name} exists already")
    RunRecord(
        flow=store.flow_name,
        run_id=run_id,
        user=user,
        tags=options.tags,
        system_tags=(
            f"user:{user}",
            "runtime:dev",
            f"python_version:{platform.python_version()}",
            *(project.system_tags if project else ()),
        ),
        project=project.to_dict() if project else None,
        created_at=time.time(),
        origin_run_id=origin,
        flow_file=flow_file,
        start_step=graph.start,
        end_step=graph.end,
    ).write(store)
    if options.run_id_file:
        with open(options.run_id_file, "w") as fh:
            fh.write(run_id)
    return run_id


def start_run(
    flow_cls: type,
    graph: FlowGraph,
    flow_file: str | None,
    params: dict[str, Any],
    options: RunOptions,
    run_id: str | None = None,
    user: str | None = None,
    holder: str | None = None,
) -> RunContext:
    """Allocate the run, store its parameters and constants (the ``_parameters`` task).

    :param run_id: the run's id when a scheduler names runs (``argo-<workflow>``); else a new
        one is allocated. A given id that exists already is a :class:`UsageError`.
    :param user: whose run it is (a deployed flow's runs are its deployer's); default
        :func:`current_user`.
    :param holder: with ``run_id``, the scheduler's unique name for this run (Argo's workflow
        uid): a start retried with the same holder (its pod died part way) completes the run
        instead of failing, keeping what the first start stored (every record is write-once).
        See :meth:`FlowStore.create_run_dir`.
    """
    store = FlowStore(options.datastore_root, flow_cls.__name__, flow_file)
    user = user or current_user()
    run_id = _register_run(store, graph, flow_file, options, user, None, flow_cls, run_id, holder)
    store.set_latest_run(run_id)
    from flowkernel.flow.config import flow_configs, thaw

    configs = {attr: thaw(cfg.value) for attr, cfg in flow_configs(flow_cls).items()}
    values = {**flow_cls._fk_constants(), **configs, **params, "name": flow_cls.__name__}
    values["_graph_info"] = graph.to_dict()
    artifacts = {name: store.save(name, value)[0] for name, value in values.items()}
    record = TaskRecord.parameters(store.flow_name, run_id, artifacts)
    store.mark_started(run_id, PARAMS_STEP, PARAMS_TASK, 0)
    record.write(store)
    return RunContext(flow_cls, flow_file, graph, store, run_id, user, options, record)


def start_resume(
    flow_cls: type,
    graph: FlowGraph,
    flow_file: str | None,
    options: RunOptions,
    origin_run_id: str | None = None,
    step: str | None = None,
) -> RunContext:
    """Start a resume of ``origin_run_id`` (default: the latest run) from ``step``.

    Successful tasks of the origin whose step is not ``step`` or downstream of it are offered
    for cloning (``RunContext.clones``); parameters come from the origin run.
    """
    store = FlowStore(options.datastore_root, flow_cls.__name__, flow_file)
    origin = origin_run_id or store.latest_run()
    if origin is None:
        raise UsageError(
            f"no previous run of {flow_cls.__name__} to resume under {store.root} "
            "(give the run's --datastore-root, or --origin-run-id)"
        )
    if store.read_run_record(origin) is None:
        raise UsageError(
            f"Resume could not find run id {origin} of {flow_cls.__name__} under {store.root}"
        )
    if step is not None and step not in graph:
        steps = ", ".join(n.name for n in graph)
        raise UsageError(f"Unknown step '{step}' to resume from; the flow's steps are: {steps}")
    origin_params = TaskRecord.read_latest(store, origin, PARAMS_STEP, PARAMS_TASK)
    if origin_params is None:
        raise UsageError(f"run {origin} has no parameters record; it cannot be resumed")
    checked: dict[str, bool] = {}  # blob verdicts: each blob is verified once
    damaged = store.damaged_blob(origin_params.artifacts.values(), checked)
    if damaged is not None:
        raise StorageError(
            f"run {origin} cannot be resumed: the data file {damaged} of its parameters is "
            "missing or damaged"
        )
    rerun = graph.downstream_of(step) if step else set()
    clones = {}
    unfinished = set()
    for step_name in store.step_names(origin):
        if step_name == PARAMS_STEP or step_name in rerun or step_name not in graph:
            continue
        for task_id in store.task_ids(origin, step_name):
            record = TaskRecord.read_latest(store, origin, step_name, task_id)
            # a task is cloned only if every artifact it hands on is intact: one whose blob
            # is missing or damaged runs again (and its save repairs the blob)
            if record is not None and record.ubf_context == UBF_CONTROL:
                continue  # runs again: it decides the width and names the mappers anew
            if (
                record is not None
                and record.task_ok
                and store.damaged_blob(record.blob_shas(), checked) is None
            ):
                clones[record.key] = record
            else:
                unfinished.add(step_name)
    user = current_user()
    run_id = _register_run(store, graph, flow_file, options, user, origin, flow_cls)
    record = TaskRecord.parameters(store.flow_name, run_id, origin_params.artifacts, origin)
    store.mark_started(run_id, PARAMS_STEP, PARAMS_TASK, 0)
    record.write(store)
    return RunContext(
        flow_cls,
        flow_file,
        graph,
        store,
        run_id,
        user,
        options,
        record,
        origin,
        clones,
        frozenset(unfinished),
    )


def clone_record(
    ctx: RunContext, origin: TaskRecord, task_id: str, input_paths: tuple[str, ...]
) -> TaskRecord:
    """Record a cloned task in the new run: same artifacts (by reference), new identity."""
    record = origin.cloned_as(ctx.run_id, task_id, input_paths, ctx.origin_run_id)
    ctx.store.mark_started(ctx.run_id, record.step, task_id, 0)
    record.write(store=ctx.store)
    return record


def resume_plan(ctx: RunContext) -> tuple[list[str], list[str]]:
    """(steps that will be cloned, steps that will run again), in topological order.

    A step with some tasks cloned and others to run (a foreach whose body failed for one item)
    is in both lists, marked "(unfinished tasks)" in the second.
    """
    cloned = {key[0] for key in ctx.clones}
    order = list(ctx.graph.sorted_nodes) or [n.name for n in ctx.graph]
    rerun = []
    for step in order:
        if step not in cloned:
            rerun.append(step)
        elif step in ctx.unfinished_steps:
            rerun.append(f"{step} (unfinished tasks)")
    return [s for s in order if s in cloned], rerun


def run_step(
    kernel: Kernel,
    flow_file: str,
    spec: TaskSpec,
    decospecs: tuple[str, ...] | list[str] = (),
    package: str | None = None,
) -> int:
    """What ``flow step`` does once its command line is parsed: import the flow (from code
    package ``package`` if given: ``flow_file`` is then the file's path inside it, or ``-``
    for the package's own flow file), attach the ``--with`` decorators, build its graph and
    run the attempt ``spec``; the task's exit code. Configs are registered beforehand
    (:func:`flowkernel.flow.config.set_sources`), as the command line does.

    For a runtime that runs attempts in a warm process without parsing a command line; the
    result is the same as :func:`step_command`'s.

    :raises UsageError: the flow has no step ``spec.step``; :raises FlowkernelError: the flow
        cannot be imported.
    """
    from flowkernel.engine.executor import run_task
    from flowkernel.flow.decorators import attach_decospecs
    from flowkernel.flow.loader import load_flow
    from flowkernel.storage.backend import declare_no_fork

    declare_no_fork()  # one task, no workers: storage clients may skip their fork guards
    if package:
        from flowkernel.engine.packages import fetch_package

        packaged = fetch_package(spec.datastore_root, package)
        if flow_file != "-":
            packaged = os.path.join(os.path.dirname(packaged), flow_file)
        flow_file = packaged
    flow_cls = load_flow(flow_file)
    attach_decospecs(flow_cls, decospecs)
    graph = kernel.build_graph(flow_cls)
    if spec.step not in graph:
        raise UsageError(f"flow {flow_cls.__name__} has no step '{spec.step}'")
    spec = attrs.evolve(spec, flow_name=flow_cls.__name__, code_package=package)
    store = FlowStore(spec.datastore_root, flow_cls.__name__, os.path.abspath(flow_file))
    return run_task(flow_cls, graph, store, spec)


def step_command(ctx: RunContext, spec: TaskSpec, package: str | None = None) -> list[str]:
    """The ``flow step`` command line that runs ``spec`` in a fresh interpreter.

    What ``--isolation spawn`` starts, and what a remote runtime or a deployer runs on another
    machine: the run's configs and ``--with`` decorators travel with it.

    :param package: a code package key (:func:`flowkernel.engine.packages.store_package`): the
        task then imports the flow from the package, fetched from the datastore, and needs no
        copy of the code where it runs.
    """
    import json
    import sys

    from flowkernel.flow.config import flow_configs, thaw

    argv = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", ctx.store.root]
    for cfg in flow_configs(ctx.flow_cls).values():
        argv += ["--config-value", cfg.name, json.dumps(thaw(cfg.value))]
    argv += [
        "step",
        "-" if package else ctx.flow_file or "",
        spec.step,
        "--run-id",
        spec.run_id,
        "--task-id",
        spec.task_id,
        "--attempt",
        str(spec.attempt),
        "--input-paths",
        ",".join(spec.input_paths),
        "--max-user-code-retries",
        str(spec.max_user_code_retries),
        "--user",
        spec.user,
    ]
    if spec.split_index is not None:
        argv += ["--split-index", str(spec.split_index)]
    if spec.origin_run_id:
        argv += ["--origin-run-id", spec.origin_run_id]
    if spec.num_parallel:
        argv += ["--num-parallel", str(spec.num_parallel)]
    if spec.ubf_context:
        argv += ["--ubf-context", spec.ubf_context]
    if spec.namespace is not None:
        argv += ["--namespace", spec.namespace]
    if spec.max_num_splits is not None:
        argv += ["--max-num-splits", str(spec.max_num_splits)]
    for tag in spec.tags:
        argv += ["--tag", tag]
    for decospec in ctx.options.decospecs:
        argv += ["--with", decospec]
    if package:
        argv += ["--package", package]
    return argv
