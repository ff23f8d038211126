"""Which tasks become runnable when a task finishes: the runtime-independent part of scheduling.

A runtime feeds every finished task's record to :meth:`Frontier.task_finished` and launches the
:class:`ReadyTask` values it returns. Task identity for deduplication and resume is the *key*
``(step, foreach indices, iteration counters)``, e.g. ``("inner", (0, 2), ())``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from flowkernel.errors import TooManySplitsError

if TYPE_CHECKING:
    from flowkernel.graph.model import FlowGraph

TaskKey = tuple[str, tuple[int, ...], tuple[int, ...]]
__all__ = ["Frontier", "ReadyTask", "TaskKey", "TooManySplitsError", "record_key"]


@attrs.frozen
class ReadyTask:
    """A task whose inputs are all done. ``inputs`` are the records of its input tasks."""

    step: str
    inputs: tuple[dict[str, Any], ...] = attrs.field(eq=False)
    key: TaskKey
    split_index: int | None = None
    num_parallel: int | None = None

    @property
    def input_paths(self) -> tuple[str, ...]:
        return tuple(f"{r['step']}/{r['task_id']}/{r['attempt']}" for r in self.inputs)


def record_key(record: dict[str, Any]) -> TaskKey:
    """The key of a finished task, from its record."""
    return (
        record["step"],
        tuple(f[3] for f in record.get("foreach_stack", ())),
        tuple(record.get("iteration_stack", ())),
    )


_SLIM_KEYS = ("run_id", "step", "task_id", "attempt", "foreach_stack", "iteration_stack")


def _slim(record: dict[str, Any]) -> dict[str, Any]:
    """What a waiting join input keeps in memory (the executor reads the rest from the store)."""
    return {k: record[k] for k in _SLIM_KEYS if k in record}


class Frontier:
    """Tracks finished tasks and yields the tasks that become runnable (each exactly once)."""

    def __init__(self, graph: FlowGraph, max_num_splits: int = 100):
        self.graph = graph
        self.max_num_splits = max_num_splits
        self._scheduled: set[TaskKey] = set()
        self._waiting: dict[TaskKey, dict[Any, dict[str, Any]]] = {}
        self._closes = {n.matching_join: n.name for n in graph if n.matching_join}

    def start(self, params_record: dict[str, Any]) -> list[ReadyTask]:
        """The start task, fed by the parameters task."""
        return self._emit(ReadyTask(self.graph.start, (params_record,), (self.graph.start, (), ())))

    def task_finished(self, record: dict[str, Any]) -> list[ReadyTask]:
        """Successors of a done task (its transition was validated by the executor)."""
        node = self.graph[record["step"]]
        if node.type == "end" or not record.get("transition"):
            return []
        _, indices, iters = record_key(record)
        ready: list[ReadyTask] = []
        if node.type == "foreach":
            n = record["foreach_num_splits"] or 0
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
        for target in record["transition"][0]:
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

    def _arrive_at_join(self, join: str, record, indices, iters) -> list[ReadyTask]:
        split = self.graph[self._closes[join]] if join in self._closes else None
        in_order = {name: i for i, name in enumerate(sorted(self.graph[join].in_funcs))}
        if split is not None and split.type == "foreach":
            key = (join, indices[:-1], iters)
            group = self._waiting.setdefault(key, {})
            group[(in_order.get(record["step"], 0), indices[-1])] = _slim(record)
            if len(group) < record["foreach_stack"][-1][2]:
                return []
        else:
            key = (join, indices, iters)
            group = self._waiting.setdefault(key, {})
            group[(record["step"],)] = _slim(record)
            needed = len(split.out_funcs) if split is not None else len(self.graph[join].in_funcs)
            if len(group) < needed:
                return []
        del self._waiting[key]
        inputs = tuple(group[k] for k in sorted(group))
        return self._emit(ReadyTask(join, inputs, key))

    def _emit(self, task: ReadyTask) -> list[ReadyTask]:
        if task.key in self._scheduled:
            return []
        self._scheduled.add(task.key)
        return [task]
