"""``current``: what the running task knows about itself (a process-wide singleton)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class ParallelInfo(NamedTuple):
    """``current.parallel`` inside an ``@parallel`` gang task (a named tuple, as in Metaflow)."""

    main_ip: str
    num_nodes: int
    node_index: int
    control_task_id: str


class Current:
    """Attribute bag set by the task executor; ``is_running_flow`` is False outside a task."""

    _FIELDS = (
        "flow_name",
        "run_id",
        "step_name",
        "task_id",
        "retry_count",
        "origin_run_id",
        "namespace",
        "username",
        "tags",
        "tempdir",
        "graph",
        "parameter_names",
        "datastore_root",
        "parallel",
        "is_parallel",
        # @project flows only (None otherwise)
        "project_name",
        "branch_name",
        "is_user_branch",
        "is_production",
        "project_flow_name",
    )

    def __init__(self) -> None:
        self._data: dict[str, Any] | None = {}
        self._source: Callable[[], dict[str, Any]] | None = None

    def _set(self, **values: Any) -> None:
        """Replace the whole context."""
        self._source = None
        self._data = dict(values)

    def _set_lazy(self, source: Callable[[], dict[str, Any]]) -> None:
        """Replace the whole context with what ``source()`` returns, called on first use (the
        executor, once per task: a task that never reads ``current`` never builds it, and the
        pages of what it would have touched stay shared with the process it was forked from).
        ``source`` must not fail and must give the same values whenever it is called."""
        self._data = None
        self._source = source

    def _clear(self) -> None:
        self._source = None
        self._data = {}

    @property
    def _values(self) -> dict[str, Any]:
        data = self._data
        if data is None:
            assert self._source is not None
            data = self._data = self._source()
            self._source = None
        return data

    @property
    def is_running_flow(self) -> bool:
        return bool(self._values)

    @property
    def graph(self) -> dict[str, Any] | None:
        """The flow's graph as a dict (as stored in the ``_graph_info`` artifact)."""
        graph = self._values.get("graph")
        return graph.to_dict() if graph is not None else None

    @property
    def tempdir(self) -> str | None:
        """A directory for temporary files (computed on first use: it probes the disk)."""
        if not self._values:
            return None
        import tempfile

        return tempfile.gettempdir()

    @property
    def pathspec(self) -> str | None:
        v = self._values
        if not v:
            return None
        return f"{v['flow_name']}/{v['run_id']}/{v['step_name']}/{v['task_id']}"

    @property
    def run(self) -> Any:
        """The client :class:`~flowkernel.client.Run` of this task (no namespace check)."""
        from flowkernel.client import Run

        v = self._values
        return Run(f"{v['flow_name']}/{v['run_id']}", _namespace_check=False)

    @property
    def task(self) -> Any:
        """The client :class:`~flowkernel.client.Task` of this task (no namespace check)."""
        from flowkernel.client import Task

        return Task(self.pathspec, _namespace_check=False)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name.startswith("_"):  # (no field is: and _data, _source are set in __init__)
            raise AttributeError(f"current has no attribute '{name}'")
        values = self._values
        if name in values:
            return values[name]
        if name in Current._FIELDS:
            return None
        raise AttributeError(f"current has no attribute '{name}'")

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __repr__(self) -> str:
        return f"<current {self.pathspec or '(not running a flow)'}>"


current = Current()
