"""The client API: read flows, runs, steps, tasks and artifacts back from the datastore.

``Flow("HelloFlow").latest_run["end"].task.data.loudest``. Nothing needs a server: objects read
the datastore directly (``FLOWKERNEL_DATASTORE_ROOT``, ``./.flowkernel``, or inside a running
task the run's own root). Children iterate newest first. Objects outside the current namespace
(default ``user:<you>``; ``namespace(None)`` sees everything) raise NamespaceMismatchError.
"""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from flowkernel.datastore import FlowStore, check_name, default_root, iter_flow_names
from flowkernel.engine.records import PARAMS_STEP, PARAMS_TASK, RunRecord, TaskRecord
from flowkernel.errors import (
    CorruptRecordError,
    ExceptionWrapper,
    InvalidPathspecError,
    NamespaceMismatchError,
    NotFoundError,
)
from flowkernel.flow.current import current
from flowkernel.storage import is_local_root, normalize_root
from flowkernel.unbounded_foreach import CONTROL_TASK_TAG, UBF_CONTROL

#: One metadata entry of a task (Metaflow's shape): ``created_at`` is in epoch milliseconds.
Metadata = namedtuple("Metadata", ["name", "value", "created_at", "type", "task"])

_UNSET = object()
_namespace: Any = _UNSET
_root: str | None = None


# -- namespace and datastore ----------------------------------------------------------------------


def default_namespace() -> str:
    """``user:<name>`` for the current user (resets the namespace to it)."""
    from flowkernel.engine.runs import current_user

    global _namespace
    _namespace = f"user:{current_user()}"
    return _namespace


def namespace(ns: str | None) -> str | None:
    """Switch namespace: a tag such as ``user:alice``, or None for every run."""
    global _namespace
    _namespace = ns
    return ns


def get_namespace() -> str | None:
    if _namespace is _UNSET:
        if current.is_running_flow and current.namespace is not None:
            return current.namespace or None  # run --namespace '': every run
        return default_namespace()
    return _namespace


def metadata(spec: str) -> str:
    """Read from another datastore root: ``local@/path``, a path, or a URL a storage backend
    serves (``s3://bucket/prefix``); returns the root."""
    global _root
    _root = normalize_root(spec.split("@", 1)[1] if spec.startswith("local@") else spec)
    return _root


def default_metadata() -> str:
    """Read from the default datastore root again (undoes :func:`metadata`); returns it as
    :func:`get_metadata` does."""
    global _root
    _root = None
    return get_metadata()


def get_metadata() -> str:
    root = _datastore_root()
    return f"local@{root}" if is_local_root(root) else root


def _datastore_root() -> str:
    if _root is not None:
        return _root
    if current.is_running_flow and current.datastore_root:
        return current.datastore_root
    return default_root()


def _datetime(epoch: float | None) -> datetime | None:
    """A naive local datetime, as Metaflow's client returns them (None stays None)."""
    return None if epoch is None else datetime.fromtimestamp(epoch)


# -- objects --------------------------------------------------------------------------------------


_KINDS = ("flow", "run id", "step", "task id", "artifact")


class _ClientObject:
    _NAME = "object"
    _DEPTH = 0

    def __init__(self, pathspec: str, _namespace_check: bool = True, _root: str | None = None):
        parts = [p for p in str(pathspec).split("/") if p]
        if len(parts) != self._DEPTH:
            raise InvalidPathspecError(
                f"{type(self).__name__} needs a pathspec with {self._DEPTH} component(s), "
                f"got {pathspec!r}"
            )
        # nothing may lead outside the datastore root
        for kind, part in zip(_KINDS, parts, strict=False):
            check_name(kind, part)
        self.path_components = parts
        self.pathspec = "/".join(parts)
        self.id = parts[-1]
        self._check = _namespace_check
        self._root = _root or _datastore_root()
        self._store = FlowStore(self._root, parts[0])
        self._load()
        if _namespace_check:
            self._check_namespace()

    def _load(self) -> None:
        pass

    def _run_record(self) -> RunRecord:
        return _NO_RUN

    @property
    def user_tags(self) -> frozenset[str]:
        """The run's user tags (``--tag`` values and every change made since)."""
        cached = self.__dict__.get("_user_tags")
        if cached is None:
            if self._DEPTH < 2:
                return frozenset()
            initial = list(self._run_record().tags)
            cached = frozenset(self._store.user_tags(self.path_components[1], initial))
            self._user_tags = cached
        return cached

    @property
    def system_tags(self) -> frozenset[str]:
        return frozenset(self._run_record().system_tags)

    @property
    def tags(self) -> frozenset[str]:
        return self.user_tags | self.system_tags

    @property
    def origin_pathspec(self) -> str | None:
        """The pathspec of the same object in the run this one resumed; None if not resumed."""
        return None

    @property
    def parent(self) -> Any:
        """The object one level up (a Task's Step, a Step's Run, ...); None for a Flow."""
        classes = {2: Flow, 3: Run, 4: Step, 5: Task}
        cls = classes.get(self._DEPTH)
        if cls is None:
            return None
        path = "/".join(self.path_components[:-1])
        return cls(path, _namespace_check=False, _root=self._root)

    def _check_namespace(self) -> None:
        ns = get_namespace()
        if ns is not None and self._DEPTH > 1 and ns not in self.tags:
            raise NamespaceMismatchError(
                f"{self.pathspec} is not in namespace '{ns}'; use namespace(None) to see all"
            )

    def _child(self, cls: type, child_id: str) -> Any:
        path = f"{self.pathspec}/{child_id}"
        if self._DEPTH < 2:
            return cls(path, _namespace_check=self._check, _root=self._root)
        # below a run: same run, same tags; this object already passed the namespace check
        child = cls(path, _namespace_check=False, _root=self._root)
        child._check = self._check
        child._user_tags = self.user_tags
        return child

    def __getitem__(self, child_id: str) -> Any:
        raise KeyError(child_id)

    def __contains__(self, child_id: object) -> bool:
        try:
            self[child_id]  # type: ignore[index]
            return True
        except KeyError:
            return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.pathspec}')"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.pathspec == self.pathspec  # type: ignore

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.pathspec))


class Metaflow:
    """Every flow with at least one run visible in the current namespace."""

    @property
    def flows(self) -> list[Flow]:
        return list(self)

    def __iter__(self) -> Iterator[Flow]:
        for name in sorted(iter_flow_names(_datastore_root())):
            try:
                yield Flow(name)
            except (NotFoundError, NamespaceMismatchError):
                continue

    def __getitem__(self, name: str) -> Flow:
        return Flow(name)


class Flow(_ClientObject):
    """A flow: ``Flow("HelloFlow")``."""

    _DEPTH = 1

    def _load(self) -> None:
        if not self._store.has_flow():
            raise NotFoundError(f"Flow {self.id} does not exist under {self._store.root}")

    def _check_namespace(self) -> None:
        ns = get_namespace()
        if ns is not None and next(iter(self.runs()), None) is None:
            raise NamespaceMismatchError(f"Flow {self.id} has no run in namespace '{ns}'")

    def runs(self, *tags: str) -> Iterator[Run]:
        """Runs in the namespace having every given tag, newest first.

        A run whose record is damaged (empty, truncated) is skipped; ``flow[run_id]`` on it
        raises :class:`CorruptRecordError` naming the file.
        """
        for run_id in self._store.run_ids():
            try:
                run = self._child(Run, run_id)
            except (
                NotFoundError,
                NamespaceMismatchError,
                CorruptRecordError,
                InvalidPathspecError,
            ):
                continue
            if all(t in run.tags for t in tags):
                yield run

    def __iter__(self) -> Iterator[Run]:
        return self.runs()

    def __getitem__(self, run_id: str) -> Run:
        try:
            return self._child(Run, run_id)
        except NotFoundError:
            raise KeyError(run_id) from None

    @property
    def created_at(self) -> datetime | None:
        """When the flow's first run was created."""
        ids = self._store.run_ids()
        record = RunRecord.read(self._store, ids[-1]) if ids else None
        return _datetime(record.created_at) if record else None

    @property
    def latest_run(self) -> Run | None:
        """The newest run in the namespace (the latest ``flow run``, resumes included)."""
        return next(iter(self.runs()), None)

    @property
    def latest_successful_run(self) -> Run | None:
        return next((r for r in self.runs() if r.successful), None)


class Run(_ClientObject):
    """One run: ``Run("HelloFlow/1700000000000000")``."""

    _DEPTH = 2

    def _load(self) -> None:
        record = RunRecord.read(self._store, self.id)
        if record is None:
            raise NotFoundError(f"Run {self.pathspec} does not exist")
        self._record = record
        self._store.flow_file = record.flow_file

    def _run_record(self) -> RunRecord:
        return self._record

    @property
    def created_at(self) -> datetime:
        return _datetime(self._record.created_at)

    # -- tags ----------------------------------------------------------------------------------

    def add_tag(self, tag: str) -> None:
        """Add a user tag (a system tag given here is ignored)."""
        self.replace_tags([], [tag])

    def add_tags(self, tags: Iterable[str]) -> None:
        """Add user tags (an empty list changes nothing)."""
        tags = tags if isinstance(tags, (str, bytes)) else list(tags)
        if tags:
            self.replace_tags([], tags)

    def remove_tag(self, tag: str) -> None:
        """Remove a user tag; removing a system tag is an error and changes nothing."""
        self.replace_tags([tag], [])

    def remove_tags(self, tags: Iterable[str]) -> None:
        """Remove user tags (an empty list changes nothing)."""
        tags = tags if isinstance(tags, (str, bytes)) else list(tags)
        if tags:
            self.replace_tags(tags, [])

    def replace_tag(self, tag_to_remove: str, tag_to_add: str) -> None:
        self.replace_tags([tag_to_remove], [tag_to_add])

    def replace_tags(self, tags_to_remove: Iterable[str], tags_to_add: Iterable[str]) -> None:
        """Remove then add user tags, as one change (concurrent changes never lose each other).

        :raises TaggingError: a tag that is not a non-empty string of at most 500 characters,
            a system tag to remove, more than 50 user tags, or nothing to do; nothing changes.
        """
        from flowkernel.client.tags import checked_change

        remove, add = checked_change(self, tags_to_remove, tags_to_add)
        if remove or add:
            self._store.write_tag_change(self.id, remove, add)
        self._user_tags = None

    @property
    def code(self) -> Any:
        """The code package the run's start task ran from (a :class:`MetaflowCode`), as in
        Metaflow; None for a run started from local files (``flow run``: the flow file is at
        ``run.flow_file``)."""
        start = self._record.start_step
        task = self[start].task if start in self else None
        return task.code if task is not None else None

    @property
    def flow_file(self) -> str | None:
        """Absolute path of the flow file the run was started from."""
        return self._record.flow_file

    @property
    def trigger(self) -> Any:
        """What triggered the run: None for a run started by hand (deployed runs only)."""
        return None

    @property
    def origin_pathspec(self) -> str | None:
        origin = self._record.origin_run_id
        return f"{self.path_components[0]}/{origin}" if origin else None

    def steps(self, *tags: str) -> Iterator[Step]:
        """Steps that ran (newest first); ``_parameters`` is hidden."""
        names = [s for s in self._store.step_names(self.id) if not s.startswith("_")]
        steps = [self._child(Step, s) for s in names]
        steps.sort(key=lambda s: s._first_started(), reverse=True)
        return iter(steps)

    def __iter__(self) -> Iterator[Step]:
        return self.steps()

    def __getitem__(self, step: str) -> Step:
        if step not in self._store.step_names(self.id):
            raise KeyError(step)
        return self._child(Step, step)

    @property
    def end_task(self) -> Task | None:
        end = self._record.end_step
        try:
            return self[end].task
        except KeyError:
            return None

    @property
    def data(self) -> Any:
        """The end task's data (None if the end step has not run)."""
        task = self.end_task
        return task.data if task is not None else None

    @property
    def successful(self) -> bool:
        task = self.end_task
        return bool(task is not None and task.successful)

    @property
    def finished(self) -> bool:
        task = self.end_task
        return bool(task is not None and task.finished)

    @property
    def finished_at(self) -> datetime | None:
        task = self.end_task
        return task.finished_at if task is not None else None

    @property
    def parameters(self) -> dict[str, Any]:
        """The run's parameter values by attribute name."""
        from flowkernel.flow.loader import load_flow
        from flowkernel.flow.parameters import flow_parameters

        task = Task(
            f"{self.pathspec}/{PARAMS_STEP}/{PARAMS_TASK}", _namespace_check=False, _root=self._root
        )
        names = None
        flow_file = self._record.flow_file
        if flow_file and os.path.exists(flow_file):
            names = list(flow_parameters(load_flow(flow_file)))
        arts = task._record_or_raise().artifacts
        keep = names if names is not None else [n for n in arts if not n.startswith("_")]
        return {n: task[n].data for n in keep if n in arts}


class Step(_ClientObject):
    """One step of a run: ``Run(...)["start"]``."""

    _DEPTH = 3

    def _load(self) -> None:
        _, run_id, step = self.path_components
        self._record = _run_record(self._store, run_id)
        self._store.flow_file = self._record.flow_file
        if step not in self._store.step_names(run_id):
            raise NotFoundError(f"Step {self.pathspec} does not exist")

    def _run_record(self) -> RunRecord:
        return self._record

    def _first_started(self) -> tuple[int, int, str]:
        # task ids count up across the run as tasks launch: the smallest is the step's first
        ids = self._store.task_ids(self.path_components[1], self.id)
        return min((_task_order(t) for t in ids), default=(-1, -1, ""))

    def tasks(self, *tags: str) -> Iterator[Task]:
        """Every task of the step, newest first (by launch order)."""
        ids = self._store.task_ids(self.path_components[1], self.id)
        for task_id in sorted(ids, key=_task_order, reverse=True):
            yield self._child(Task, task_id)

    def __iter__(self) -> Iterator[Task]:
        return self.tasks()

    def __getitem__(self, task_id: str) -> Task:
        try:
            return self._child(Task, task_id)
        except NotFoundError:
            raise KeyError(task_id) from None

    @property
    def task(self) -> Task | None:
        """The newest task of the step (the only one for a non-foreach step)."""
        return next(self.tasks(), None)

    @property
    def finished_at(self) -> datetime | None:
        times = [t.finished_at for t in self.tasks()]
        return max((t for t in times if t), default=None)

    @property
    def created_at(self) -> datetime | None:
        """When the step's first task started."""
        times = [t.created_at for t in self.tasks()]
        return min((t for t in times if t), default=None)

    @property
    def origin_pathspec(self) -> str | None:
        """The same step in the run this one resumed (None for a fresh run)."""
        origin = self._record.origin_run_id
        return f"{self.path_components[0]}/{origin}/{self.id}" if origin else None

    def control_tasks(self, *tags: str) -> Iterator[Task]:
        """The control tasks of an ``@parallel`` step (the gang's first task) or of the step an
        unbounded foreach runs (the task that decided the width); none otherwise."""
        ids = self._store.task_ids(self.path_components[1], self.id)
        if not any("_node_" in i for i in ids) and not self._is_parallel_step():
            return
        for task_id in sorted(ids, key=_task_order, reverse=True):
            if "_node_" not in task_id:
                task = self._child(Task, task_id)
                if all(t in task.tags for t in tags):
                    yield task

    @property
    def control_task(self) -> Task | None:
        return next(self.control_tasks(), None)

    def _is_parallel_step(self) -> bool:
        info = _graph_info(self._store, self.path_components[1])
        step = (info or {}).get("steps", {}).get(self.id, {})
        return "parallel" in step.get("decorators", ())

    @property
    def parent_steps(self) -> list[Step]:
        """The steps whose tasks fed this step's tasks."""
        names = {t.parent.id for task in self.tasks() for t in task.parent_tasks}
        return [self.parent[name] for name in sorted(names)]

    @property
    def child_steps(self) -> list[Step]:
        """The steps that ran after this one."""
        names = {t.parent.id for task in self.tasks() for t in task.child_tasks}
        return [self.parent[name] for name in sorted(names)]


_RUN_RECORDS: dict[tuple[str, str, str], RunRecord] = {}
#: what a Step or Task of a run without a record sees (empty tags, default steps)
_NO_RUN = RunRecord(flow="", run_id="", user="")


def _run_record(store: FlowStore, run_id: str) -> RunRecord:
    """The run's record, read once per process: it is written once (tag changes live in their
    own files), and a step's 10,000 tasks would otherwise read it 10,000 times."""
    key = (store.root, store.flow_name, run_id)
    record = _RUN_RECORDS.get(key)
    if record is None:
        record = RunRecord.read(store, run_id)
        if record is None:
            return _NO_RUN
        if len(_RUN_RECORDS) >= 4096:
            _RUN_RECORDS.clear()
        _RUN_RECORDS[key] = record
    return record


def _graph_info(store: FlowStore, run_id: str) -> dict[str, Any] | None:
    """The run's ``_graph_info`` (stored with its parameters), or None."""
    record = TaskRecord.read_latest(store, run_id, PARAMS_STEP, PARAMS_TASK)
    sha = record.artifacts.get("_graph_info") if record else None
    return store.load(sha) if sha else None


def _task_order(task_id: str) -> tuple[int, int, str]:
    head, _, node = task_id.partition("_node_")
    return (int(head) if head.isdigit() else -1, int(node) if node.isdigit() else -1, task_id)


class Task(_ClientObject):
    """One task: ``Task("Flow/run/step/task")``; ``attempt=`` picks an attempt (default latest)."""

    _DEPTH = 4

    def __init__(
        self,
        pathspec: str,
        attempt: int | None = None,
        _namespace_check: bool = True,
        _root: str | None = None,
    ):
        self._attempt_arg = attempt
        super().__init__(pathspec, _namespace_check=_namespace_check, _root=_root)

    def _load(self) -> None:
        _, run_id, step, task_id = self.path_components
        self._run = _run_record(self._store, run_id)
        self._store.flow_file = self._run.flow_file
        latest = self._store.latest_attempt(run_id, step, task_id)
        if latest is None:
            raise NotFoundError(f"Task {self.pathspec} does not exist")
        self.current_attempt = latest if self._attempt_arg is None else self._attempt_arg
        self._record = TaskRecord.read(self._store, run_id, step, task_id, self.current_attempt)

    def _run_record(self) -> RunRecord:
        return self._run

    def _record_or_raise(self) -> TaskRecord:
        if self._record is None:
            self._record = TaskRecord.read(
                self._store, *self.path_components[1:], self.current_attempt
            )
        if self._record is None:
            raise NotFoundError(f"Task {self.pathspec} has no completed attempt (still running?)")
        return self._record

    @property
    def finished(self) -> bool:
        """The task is done: it succeeded, or @catch handled its failure."""
        record = self._record_or_none()
        return bool(record and record.task_ok)

    @property
    def successful(self) -> bool:
        record = self._record_or_none()
        return bool(record and record.success)

    def _record_or_none(self) -> TaskRecord | None:
        try:
            return self._record_or_raise()
        except NotFoundError:
            return None

    @property
    def finished_at(self) -> datetime | None:
        record = self._record_or_none()
        return _datetime(record.finished_at) if record else None

    @property
    def created_at(self) -> datetime | None:
        record = self._record_or_none()
        return _datetime(record.started_at) if record else None

    @property
    def exception(self) -> ExceptionWrapper | None:
        """What made the task fail (None if it succeeded or @catch handled it)."""
        record = self._record_or_none()
        if not record or record.task_ok or record.exception is None:
            return None
        if "_exception" in record.artifacts:
            value = self._store.load(record.artifacts["_exception"], "_exception", self.pathspec)
            if value is not None:
                return value
        wrapper = ExceptionWrapper()
        wrapper.type = record.exception.type
        wrapper.exception = record.exception.message
        return wrapper

    @property
    def index(self) -> int | None:
        record = self._record_or_none()
        return record.foreach_index if record else None

    @property
    def origin_pathspec(self) -> str | None:
        record = self._record_or_none()
        if record is None or not record.cloned:
            return None
        flow, _, step, _ = self.path_components
        return f"{flow}/{record.origin_run_id}/{step}/{record.origin_task_id}"

    @property
    def parent_tasks(self) -> list[Task]:
        record = self._record_or_none()
        flow, run_id = self.path_components[:2]
        out = []
        for path in record.input_paths if record else ():
            step, task_id, _ = path.split("/")
            if step != PARAMS_STEP:
                pathspec = f"{flow}/{run_id}/{step}/{task_id}"
                out.append(Task(pathspec, _namespace_check=False, _root=self._root))
        return out

    @property
    def child_tasks(self) -> list[Task]:
        """The tasks that took this task as an input (the next step's tasks)."""
        flow, run_id, step, task_id = self.path_components
        info = _graph_info(self._store, run_id) or {}
        successors = info.get("steps", {}).get(step, {}).get("next")
        if successors is None:
            successors = [s for s in self._store.step_names(run_id) if s != PARAMS_STEP]
        prefix = f"{step}/{task_id}/"
        out = []
        for child_step in dict.fromkeys(successors):
            for child_id in sorted(self._store.task_ids(run_id, child_step), key=_task_order):
                record = TaskRecord.read_latest(self._store, run_id, child_step, child_id)
                if record and any(p.startswith(prefix) for p in record.input_paths):
                    pathspec = f"{flow}/{run_id}/{child_step}/{child_id}"
                    out.append(Task(pathspec, _namespace_check=False, _root=self._root))
        return out

    @property
    def metadata(self) -> list[Metadata]:
        """What was recorded about each attempt (newest first), as Metaflow's metadata entries:
        ``attempt``, ``attempt_ok``, ``origin-run-id``, ``origin-task-id`` (clones), ``runtime``,
        ``user``, ``python_version``, ``ds-type``, ``ds-root``, ``script-name``, ``pid``."""
        _, run_id, step, task_id = self.path_components
        latest = self._store.latest_attempt(run_id, step, task_id) or 0
        system = dict(t.split(":", 1) for t in self.system_tags if ":" in t)
        entries: list[Metadata] = []
        for attempt in range(latest, -1, -1):
            record = TaskRecord.read(self._store, run_id, step, task_id, attempt)
            if record is None:
                continue
            started = int(1000 * record.started_at)
            finished = int(1000 * record.finished_at)
            fields = {
                "attempt": str(attempt),
                "origin-run-id": str(record.origin_run_id),
                "ds-type": "local",
                "ds-root": self._root,
                "runtime": system.get("runtime", "dev"),
                "user": system.get("user", ""),
                "python_version": system.get("python_version", ""),
                "script-name": os.path.basename(self._run.flow_file or ""),
            }
            if record.pid is not None:
                fields["pid"] = str(record.pid)
            if record.cloned:
                fields["origin-task-id"] = str(record.origin_task_id)
            if record.ubf_context == UBF_CONTROL:
                fields["internal_task_type"] = CONTROL_TASK_TAG
            entries += [Metadata(k, v, started, k, self) for k, v in fields.items()]
            ok = "True" if record.task_ok else "False"
            entries.append(Metadata("attempt_ok", ok, finished, "internal_attempt_status", self))
            entries.append(Metadata("attempt-done", str(attempt), finished, "attempt-done", self))
        return entries

    @property
    def metadata_dict(self) -> dict[str, str]:
        """The latest value of every metadata field."""
        out: dict[str, str] = {}
        for entry in sorted(self.metadata, key=lambda m: m.created_at):
            out[entry.name] = entry.value
        return out

    @property
    def runtime_name(self) -> str:
        """``dev`` for a run started by hand (Metaflow's name), else the scheduler's name."""
        for tag in self.system_tags:
            if tag.startswith("runtime:"):
                return tag.split(":", 1)[1]
        return "dev"

    @property
    def environment_info(self) -> dict[str, Any]:
        """The environment the task ran in: ``type`` ("local"), ``python_version``."""
        version = next(
            (t.split(":", 1)[1] for t in self.system_tags if t.startswith("python_version:")),
            None,
        )
        return {"type": "local", "python_version": version, "python_version_code": version}

    @property
    def code(self) -> Any:
        """The code package this task ran from (``flow step --package KEY``), as a
        :class:`~flowkernel.client.code.MetaflowCode`: ``path``, ``info``, ``flowspec``,
        ``script_name``, ``tarball``, ``extract()``. None when it imported the flow file in
        place (every task of a local ``flow run``)."""
        from flowkernel.client.code import MetaflowCode

        record = self._record_or_none()
        key = record.code_package if record is not None else None
        return MetaflowCode(key, self._store) if key else None

    def loglines(
        self, stream: str, as_unicode: bool = True, meta_dict: dict | None = None
    ) -> Iterator[tuple[datetime, str | bytes]]:
        """``(timestamp, line)`` for each line the task wrote to ``stream`` ("stdout" or
        "stderr"): when the runtime read the line, as a timezone-aware UTC datetime (the
        attempt's start time where a runtime recorded no times)."""
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"stream must be 'stdout' or 'stderr', not {stream!r}")
        where = (*self.path_components[1:], self.current_attempt, stream)
        data = self._store.read_log(*where)
        times = self._store.read_log_times(*where)
        record = self._record_or_none()
        fallback = record.started_at if record else 0.0
        for i, raw in enumerate(data.splitlines()):
            stamp = times[i] if i < len(times) else fallback
            line = raw.decode("utf-8", "replace") if as_unicode else raw
            yield datetime.fromtimestamp(stamp, tz=timezone.utc), line

    @property
    def stdout_size(self) -> int:
        return len(self._store.read_log(*self.path_components[1:], self.current_attempt, "stdout"))

    @property
    def stderr_size(self) -> int:
        return len(self._store.read_log(*self.path_components[1:], self.current_attempt, "stderr"))

    def _log(self, stream: str) -> str:
        data = self._store.read_log(*self.path_components[1:], self.current_attempt, stream)
        return data.decode("utf-8", "replace")

    @property
    def stdout(self) -> str:
        """Everything the task printed to stdout (its latest attempt)."""
        return self._log("stdout")

    @property
    def stderr(self) -> str:
        return self._log("stderr")

    @property
    def data(self) -> ArtifactData:
        """Artifact values by attribute: ``task.data.x``; ``"x" in task.data``."""
        return ArtifactData(self)

    @property
    def artifacts(self) -> tuple[DataArtifact, ...]:
        """Every (non-underscore) artifact as a named tuple: ``task.artifacts.x.data``."""
        found = list(self)
        fields = namedtuple("MetaflowArtifacts", [a.id for a in found])  # type: ignore[misc]
        return fields(*found)

    def _artifact_names(self) -> list[str]:
        return [n for n in self._record_or_raise().artifacts if not n.startswith("_")]

    def __iter__(self) -> Iterator[DataArtifact]:
        for name in sorted(self._artifact_names()):
            yield self[name]

    def __getitem__(self, name: str) -> DataArtifact:
        if name not in self._record_or_raise().artifacts:
            raise KeyError(name)
        return DataArtifact._of(self, name)


class ArtifactData:
    """Attribute access to a task's artifacts (loaded on first access).

    Artifacts named with a leading underscore are stored and passed on like any other but are
    hidden here, as in Metaflow: ``task["_name"]`` reads one, ``flow dump --private`` shows them.
    """

    def __init__(self, task: Task):
        self._task = task
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"{self._task.pathspec}: '{name}' is private; use task['{name}']")
        if name not in self._cache:
            try:
                self._cache[name] = self._task[name].data
            except KeyError:
                raise AttributeError(f"{self._task.pathspec} has no artifact '{name}'") from None
        return self._cache[name]

    def __contains__(self, name: object) -> bool:
        hidden = isinstance(name, str) and name.startswith("_")
        return not hidden and name in self._task._record_or_raise().artifacts

    def __iter__(self) -> Iterator[str]:
        return iter(self._task._artifact_names())

    def __repr__(self) -> str:
        return f"<data of {self._task.pathspec}: {', '.join(self._task._artifact_names())}>"


class DataArtifact(_ClientObject):
    """One artifact: ``DataArtifact("Flow/run/step/task/name")`` or ``task["name"]``;
    ``attempt=`` reads it from that attempt of the task (default: the latest)."""

    _DEPTH = 5

    def __init__(
        self,
        pathspec: str,
        attempt: int | None = None,
        _namespace_check: bool = True,
        _root: str | None = None,
    ):
        self._attempt_arg = attempt
        super().__init__(pathspec, _namespace_check=_namespace_check, _root=_root)

    @classmethod
    def _of(cls, task: Task, name: str) -> DataArtifact:
        obj = cls.__new__(cls)
        obj.path_components = [*task.path_components, name]
        obj.pathspec = f"{task.pathspec}/{name}"
        obj.id = name
        obj._check = False
        obj._root = task._root
        obj._store = task._store
        obj._task = task
        return obj

    def _load(self) -> None:
        task = Task(
            "/".join(self.path_components[:4]),
            self._attempt_arg,
            _namespace_check=self._check,
            _root=self._root,
        )
        if self.id not in task._record_or_raise().artifacts:
            raise NotFoundError(f"Artifact {self.pathspec} does not exist")
        self._task = task

    def _run_record(self) -> RunRecord:
        return self._task._run

    @property
    def sha(self) -> str:
        return self._task._record_or_raise().artifacts[self.id]

    @property
    def data(self) -> Any:
        """The value (unpickled; classes defined in the flow file are found)."""
        return self._store.load(self.sha, self.id, self._task.pathspec)

    @property
    def size(self) -> int:
        return self._store.blob_size(self.sha)

    @property
    def finished_at(self) -> datetime | None:
        return self._task.finished_at

    @property
    def created_at(self) -> datetime | None:
        return self._task.finished_at

    @property
    def origin_pathspec(self) -> str | None:
        """The same artifact in the task this one was cloned from (resume), else None."""
        origin = self._task.origin_pathspec
        return f"{origin}/{self.id}" if origin else None
