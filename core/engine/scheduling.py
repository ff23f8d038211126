"""Which tasks become runnable when a task finishes: the runtime-independent part of scheduling.

A runtime feeds every finished task's record to :meth:`Frontier.task_finished` and launches the
:class:`ReadyTask` values it returns. Task identity for deduplication and resume is the *key*
``(step, foreach indices, iteration counters)``, e.g. ``("inner", (0, 2), ())``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from flowkernel.engine.records import TaskKey, TaskRecord, TaskRef
from flowkernel.errors import TooManySplitsError
from flowkernel.unbounded_foreach import UBF_CONTROL, UBF_TASK

if TYPE_CHECKING:
    from flowkernel.graph.model import FlowGraph

__all__ = ["Frontier", "ReadyTask", "TaskKey", "TooManySplitsError"]

#: A finished input: the full record, or (a join's waiting inputs) only its identity.
Input = TaskRecord | TaskRef


@attrs.frozen
class ReadyTask:
    """A task whose inputs are all done.

    ``inputs`` are its input tasks: full records, or refs (a join's inputs waited in memory
    without their artifacts; the executor reads those records from the store).
    """

    step: str
    inputs: tuple[Input, ...] = attrs.field(eq=False)
    key: TaskKey
    split_index: int | None = None
    #: ``@parallel``: the size of the gang this task belongs to
    num_parallel: int | None = None
    #: unbounded foreach: ``"ubf_control"`` (the task deciding the width) or ``"ubf_task"``
    ubf_context: str | None = None
    #: the task id, when it is decided here (the mappers of an unbounded foreach are named
    #: after their control task); None: the dispatcher allocates one
    task_id: str | None = None

    @property
    def input_paths(self) -> tuple[str, ...]:
        return tuple(r.path for r in self.inputs)


class Frontier:
    """Tracks finished tasks and yields the tasks that become runnable (each exactly once)."""

    def __init__(self, graph: FlowGraph, max_num_splits: int = 100):
        self.graph = graph
        self.max_num_splits = max_num_splits
        self._scheduled: set[TaskKey] = set()
        self._waiting: dict[TaskKey, dict[tuple, TaskRef]] = {}
        self._closes = {n.matching_join: n.name for n in graph if n.matching_join}
        #: unbounded foreach: control task key -> the split's record (the mappers' input)
        self._ubf_splits: dict[TaskKey, TaskRecord] = {}
        #: unbounded foreach: join key -> the width its control task decided
        self._ubf_widths: dict[TaskKey, int] = {}

    def start(self, params_record: TaskRecord) -> list[ReadyTask]:
        """The start task, fed by the parameters task."""
        return self._emit(ReadyTask(self.graph.start, (params_record,), (self.graph.start, (), ())))

    def task_finished(self, record: TaskRecord) -> list[ReadyTask]:
        """Successors of a done task (its transition was validated by the executor).

        :raises TooManySplitsError: a foreach split into more than ``max_num_splits`` tasks.
        """
        node = self.graph[record.step]
        if record.ubf_context == UBF_CONTROL:
            return self._mappers(record)
        if node.type == "end" or record.transition is None:
            return []
        _, indices, iters = record.key
        ready: list[ReadyTask] = []
        if node.type == "foreach" and "_unbounded_foreach" in record.artifacts:
            child = node.out_funcs[0]
            key = (child, (*indices, None), iters)
            self._ubf_splits[key] = record
            return self._emit(ReadyTask(child, (record,), key, ubf_context=UBF_CONTROL))
        if node.type == "foreach":
            n = record.foreach_num_splits or 0
            if n > self.max_num_splits:
                raise TooManySplitsError(
                    f"Foreach in step '{node.name}' yielded {n} child steps, more than the "
                    f"maximum of {self.max_num_splits}; raise it with --max-num-splits"
                )
            child = node.out_funcs[0]
            parallel = node.num_parallel if node.num_parallel is not None else None
            for i in range(n):
                key = (child, (*indices, i), iters)
                ready += self._emit(ReadyTask(child, (record,), key, i, parallel and n))
            return ready
        for target in record.transition.targets:
            tnode = self.graph[target]
            if tnode.type == "join":
                ready += self._arrive_at_join(target, record, indices, iters)
                continue
            if tnode.is_recursive_switch:
                next_iters = (*iters[:-1], iters[-1] + 1) if target == node.name else (*iters, 0)
            elif node.is_recursive_switch and iters:
                next_iters = iters[:-1]
            else:
                next_iters = iters
            ready += self._emit(ReadyTask(target, (record,), (target, indices, next_iters)))
        return ready

    def _mappers(self, control: TaskRecord) -> list[ReadyTask]:
        """The mapper tasks of an unbounded foreach, as wide as its control task decided."""
        step, indices, iters = control.key
        split = self._ubf_splits.pop(control.key)
        width = control.foreach_num_splits or 0
        self._ubf_widths[(self.graph[step].out_funcs[0], indices[:-1], iters)] = width
        ready: list[ReadyTask] = []
        for i in range(width):
            key = (step, (*indices[:-1], i), iters)
            task_id = f"{control.task_id}_node_{i}"
            ready += self._emit(ReadyTask(step, (split,), key, i, None, UBF_TASK, task_id))
        return ready

    def _arrive_at_join(self, join: str, record: TaskRecord, indices, iters) -> list[ReadyTask]:
        split = self.graph[self._closes[join]] if join in self._closes else None
        in_order = {name: i for i, name in enumerate(sorted(self.graph[join].in_funcs))}
        if split is not None and split.type == "foreach":
            key = (join, indices[:-1], iters)
            group = self._waiting.setdefault(key, {})
            group[(in_order.get(record.step, 0), indices[-1])] = record.ref()
            width = record.foreach_stack[-1].num_splits
            if len(group) < (width if width is not None else self._ubf_widths[key]):
                return []
        else:
            key = (join, indices, iters)
            group = self._waiting.setdefault(key, {})
            group[(record.step,)] = record.ref()
            needed = len(split.out_funcs) if split is not None else len(self.graph[join].in_funcs)
            if len(group) < needed:
                return []
        del self._waiting[key]
        self._ubf_widths.pop(key, None)
        inputs = tuple(group[k] for k in sorted(group))
        return self._emit(ReadyTask(join, inputs, key))

    def _emit(self, task: ReadyTask) -> list[ReadyTask]:
        if task.key in self._scheduled:
            return []
        self._scheduled.add(task.key)
        return [task]
