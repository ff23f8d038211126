"""Spin: run one task of a past run again, here, into a separate spin datastore.

``flow spin FILE RUN/STEP/TASK`` (``Runner(FILE).spin(pathspec)``) re-runs the step of that task
with the same inputs, using the flow file as it is now: the way to try a fix to one step
without running the flow again. The task's inputs (their records and the artifacts they hold)
and the run's record are copied into the spin datastore (``<root>/.spin`` by default: a
directory the client never lists as a flow), and the new attempt is written there under the
same run, step and task ids (attempt 0, then 1, ... for each spin of it). The original run is
never written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from flowkernel.datastore import FlowStore
from flowkernel.engine.executor import TaskSpec, parse_input_path, run_task
from flowkernel.engine.records import PARAMS_STEP, PARAMS_TASK, TaskRecord
from flowkernel.errors import UsageError

if TYPE_CHECKING:
    from flowkernel.graph.model import FlowGraph

#: The spin datastore's directory under the datastore root (dotted: never listed as a flow).
SPIN_DIR = ".spin"


def default_spin_root(root: str) -> str:
    """The spin datastore of the datastore at ``root``."""
    return f"{root.rstrip('/')}/{SPIN_DIR}"


@attrs.frozen
class SpinResult:
    """The spun attempt: where it is and how it ended (0: it succeeded)."""

    returncode: int
    flow_name: str
    run_id: str
    step: str
    task_id: str
    attempt: int
    datastore_root: str  #: the spin datastore's root

    @property
    def pathspec(self) -> str:
        return f"{self.flow_name}/{self.run_id}/{self.step}/{self.task_id}"


def parse_pathspec(flow_name: str, pathspec: str) -> tuple[str, str, str]:
    """``RUN/STEP/TASK`` or ``FLOW/RUN/STEP/TASK`` -> ``(run, step, task)``."""
    parts = pathspec.strip("/").split("/")
    if len(parts) == 4 and parts[0] == flow_name:
        parts = parts[1:]
    if len(parts) != 3 or not all(parts):
        raise UsageError(
            f"spin takes a task's pathspec, RUN/STEP/TASK or {flow_name}/RUN/STEP/TASK; "
            f"got {pathspec!r}"
        )
    return parts[0], parts[1], parts[2]


def spin_task(
    flow_cls: type,
    graph: FlowGraph,
    store: FlowStore,
    pathspec: str,
    *,
    spin_root: str | None = None,
    artifacts: Mapping[str, Any] | None = None,
    skip_decorators: bool = False,
    user: str = "unknown",
) -> SpinResult:
    """Run the task at ``pathspec`` of a run in ``store`` again, into the spin datastore.

    :param artifacts: values that replace the artifacts of the same names the task reads
        from its inputs (``--artifacts-module``).
    :param skip_decorators: run the step's code without its decorators (no ``@retry``,
        ``@catch``, ``@timeout``, ``@environment``).
    :raises UsageError: a malformed pathspec, a task the run does not have, a step the flow
        no longer has.
    """
    run_id, step, task_id = parse_pathspec(store.flow_name, pathspec)
    origin = TaskRecord.read_latest(store, run_id, step, task_id)
    if origin is None:
        raise UsageError(
            f"{store.flow_name}/{run_id}/{step}/{task_id} has no finished attempt under "
            f"{store.root} to spin"
        )
    if step not in graph:
        raise UsageError(f"flow {store.flow_name} has no step '{step}' any more")
    spin = FlowStore(spin_root or default_spin_root(store.root), store.flow_name, store.flow_file)
    spin.create_run_dir(run_id)
    run_record = store.read_run_record(run_id)
    if run_record is not None:
        spin.write_run_record(run_id, run_record)
    inputs = [TaskRecord.read(store, run_id, *parse_input_path(p)) for p in origin.input_paths]
    if any(r is None for r in inputs):
        raise UsageError(f"an input of {pathspec} has no record under {store.root}")
    params = TaskRecord.read_latest(store, run_id, PARAMS_STEP, PARAMS_TASK)
    for record in (params, *inputs):
        if record is not None:
            _copy_blobs(store, spin, record.blob_shas())
            spin.mark_started(run_id, record.step, record.task_id, record.attempt)
            record.write(spin)  # once: a later spin of a task with the same inputs keeps it
    overrides = {name: spin.save(name, value)[0] for name, value in (artifacts or {}).items()}
    latest = spin.latest_attempt(run_id, step, task_id)
    attempt = 0 if latest is None else latest + 1
    spec = TaskSpec(
        flow_name=store.flow_name,
        run_id=run_id,
        step=step,
        task_id=task_id,
        attempt=attempt,
        input_paths=origin.input_paths,
        datastore_root=spin.root,
        split_index=origin.split_index,
        user=user,
        ubf_context=origin.ubf_context,
    )
    spin.mark_started(run_id, step, task_id, attempt)
    code = run_task(
        flow_cls, graph, spin, spec, skip_decorators=skip_decorators, artifacts=overrides
    )
    return SpinResult(code, store.flow_name, run_id, step, task_id, attempt, spin.root)


def _copy_blobs(source: FlowStore, target: FlowStore, shas: Any) -> None:
    for sha in set(shas):
        key = target.blob_key(sha)
        if not target.backend.exists(key):
            data = source.backend.get(source.blob_key(sha))
            if data is not None:
                target.backend.put_once(key, data)
