"""The records a run leaves in the datastore: one :class:`TaskRecord` per task attempt and one
:class:`RunRecord` per run.

Every writer builds these and every reader parses them; nothing else reads the JSON by key.
On disk they are plain JSON objects (``<step>/<task>/<k>.record.json``, ``_run.json``) with the
same keys as before these classes existed, so records written by either version read in both.
Keys a record does not know (written by a newer version, or a plugin) are kept in ``extra`` and
written back unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, final

import attrs

from flowkernel.flow.flowspec import ForeachChunks, ForeachFrame

if TYPE_CHECKING:
    from flowkernel.datastore import FlowStore

#: The pseudo-step whose one task holds a run's parameters, constants and configs.
PARAMS_STEP = "_parameters"
PARAMS_TASK = "0"

TaskKey = tuple[str, tuple[int | None, ...], tuple[int, ...]]
"""A task's identity for scheduling and resume: ``(step, foreach indices, iteration counters)``,
e.g. ``("inner", (0, 2), ())`` (the index is None for an unbounded foreach's control task)."""


def _frames(raw: Iterable[Any]) -> tuple[ForeachFrame, ...]:
    return tuple(ForeachFrame(*frame) for frame in raw or ())


@final
@attrs.frozen
class Transition:
    """What ``self.next(...)`` chose: the target steps, and the foreach variable if it split."""

    #: the steps the task continues with (one, for a switch)
    targets: tuple[str, ...]
    #: the artifact a foreach splits over (``None`` for a linear step, branch or switch)
    foreach: str | None = None

    @classmethod
    def from_json(cls, raw: Any) -> Transition | None:
        return None if raw is None else cls(tuple(raw[0]), raw[1])

    def to_json(self) -> list[Any]:
        return [list(self.targets), self.foreach]


@final
@attrs.frozen
class TaskFailure:
    """Why an attempt failed, as recorded (the exception itself is the ``_exception`` artifact)."""

    #: the exception's qualified class name, or ``TaskProcessDied`` when the process died
    type: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


@final
@attrs.frozen
class TaskRef:
    """A finished attempt without its artifacts: what a join's waiting inputs keep in memory.

    The executor reads the full :class:`TaskRecord` of a ref from the store.
    """

    run_id: str
    step: str
    task_id: str
    attempt: int
    foreach_stack: tuple[ForeachFrame, ...] = ()
    iteration_stack: tuple[int, ...] = ()

    @property
    def path(self) -> str:
        """``step/task_id/attempt``: how a task names its inputs."""
        return f"{self.step}/{self.task_id}/{self.attempt}"


def _tuple_of_str(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _chunks(raw: Any) -> ForeachChunks | None:
    if raw is None or isinstance(raw, ForeachChunks):
        return raw
    var, source, size, shas = raw
    return ForeachChunks(var, source, int(size), tuple(shas))


@final
@attrs.frozen(kw_only=True)
class TaskRecord:
    """One attempt of one task, written once (atomically) when the attempt ends.

    Build one with the executor (a finished attempt), :meth:`parameters`, :meth:`crashed` or
    :meth:`cloned`; change one with :func:`attrs.evolve`.
    """

    flow: str
    run_id: str
    step: str
    task_id: str
    attempt: int
    #: the step's code returned without an exception (a failure ``@catch`` handled is False)
    success: bool
    #: the task counts as done: it succeeded, or ``@catch`` handled its failure
    task_ok: bool
    #: artifact name -> content hash in the store
    artifacts: Mapping[str, str] = attrs.field(factory=dict)
    #: artifact name -> ``{"size": bytes, "type": qualified type name}`` for those it stored
    info: Mapping[str, Any] = attrs.field(factory=dict)
    #: ``step/task_id/attempt`` of each input task
    input_paths: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    #: this task's index in its foreach (or ``@parallel`` node number)
    split_index: int | None = None
    #: one frame per enclosing foreach, outermost first
    foreach_stack: tuple[ForeachFrame, ...] = attrs.field(default=(), converter=_frames)
    #: one counter per enclosing recursive switch, outermost first
    iteration_stack: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    #: the validated ``self.next`` call (``None`` for the end step and failed attempts)
    transition: Transition | None = None
    #: a foreach step: the artifact it splits over and into how many tasks
    foreach_var: str | None = None
    foreach_num_splits: int | None = None
    #: a foreach step whose items were also stored in chunks, for its children's
    #: ``self.input`` (:mod:`flowkernel.engine.foreach_chunks`); None: not chunked
    foreach_chunks: ForeachChunks | None = attrs.field(default=None, converter=_chunks)
    #: why the attempt failed (also set when ``@catch`` handled the failure)
    exception: TaskFailure | None = None
    #: ``@catch`` handled a failure of this attempt
    caught: bool = False
    #: resume: the run this one resumes
    origin_run_id: str | None = None
    #: resume: the task this one was cloned from (``cloned`` is then True)
    origin_task_id: str | None = None
    cloned: bool = False
    started_at: float = 0.0
    finished_at: float = 0.0
    #: the process that ran the attempt
    pid: int | None = None
    #: exit code of a process that died without writing its record (set by the runtime)
    returncode: int | None = None
    #: an artifact could not be stored (the attempt failed)
    persist_error: str | None = None
    #: an unbounded foreach's control task (``"ubf_control"``: its ``foreach_num_splits`` is
    #: the width it decided) or one of its mapper tasks (``"ubf_task"``); None otherwise
    ubf_context: str | None = None
    #: the code package the attempt ran from (``FLOW/SHA256``: ``Task.code``); None: none
    code_package: str | None = None
    #: artifacts (and foreach chunks) small enough to live in the record: content hash ->
    #: base64 of the pickle (:data:`flowkernel.datastore.INLINE_MAX`); filled when written
    inline: Mapping[str, str] = attrs.field(factory=dict)
    #: keys this version does not know, kept so that writing the record back loses nothing
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    _OPTIONAL: ClassVar[tuple[str, ...]] = (
        "origin_task_id",
        "cloned",
        "returncode",
        "persist_error",
        "ubf_context",
        "code_package",
    )

    # -- identity ------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """``step/task_id/attempt``: how a task names its inputs."""
        return f"{self.step}/{self.task_id}/{self.attempt}"

    @property
    def key(self) -> TaskKey:
        """The task's identity for scheduling and resume (see :data:`TaskKey`)."""
        return (self.step, tuple(f.index for f in self.foreach_stack), self.iteration_stack)

    @property
    def foreach_index(self) -> int | None:
        """The index of this task in its innermost foreach, if it is in one."""
        return self.foreach_stack[-1].index if self.foreach_stack else None

    def blob_shas(self) -> list[str]:
        """Every blob this record refers to: its artifacts and its foreach chunks."""
        chunks = self.foreach_chunks.shas if self.foreach_chunks is not None else ()
        return [*self.artifacts.values(), *chunks]

    def ref(self) -> TaskRef:
        """This attempt without its artifacts (see :class:`TaskRef`)."""
        return TaskRef(
            self.run_id,
            self.step,
            self.task_id,
            self.attempt,
            self.foreach_stack,
            self.iteration_stack,
        )

    # -- named constructors --------------------------------------------------------------------

    @classmethod
    def parameters(
        cls,
        flow: str,
        run_id: str,
        artifacts: Mapping[str, str],
        origin_run_id: str | None = None,
    ) -> TaskRecord:
        """The ``_parameters`` task of a run: parameters, constants, configs, graph info."""
        now = time.time()
        return cls(
            flow=flow,
            run_id=run_id,
            step=PARAMS_STEP,
            task_id=PARAMS_TASK,
            attempt=0,
            success=True,
            task_ok=True,
            artifacts=dict(artifacts),
            origin_run_id=origin_run_id,
            started_at=now,
            finished_at=now,
        )

    @classmethod
    def crashed(
        cls,
        *,
        flow: str,
        run_id: str,
        step: str,
        task_id: str,
        attempt: int,
        status: str,
        returncode: int | None,
        input_paths: Iterable[str] = (),
        split_index: int | None = None,
        started_at: float = 0.0,
        pid: int | None = None,
    ) -> TaskRecord:
        """A failed record for an attempt whose process died without writing one.

        :param status: how the process ended, e.g. ``"killed by SIGKILL"``.
        """
        return cls(
            flow=flow,
            run_id=run_id,
            step=step,
            task_id=task_id,
            attempt=attempt,
            success=False,
            task_ok=False,
            input_paths=tuple(input_paths),
            split_index=split_index,
            exception=TaskFailure("TaskProcessDied", f"the task process {status}"),
            returncode=returncode,
            started_at=started_at,
            finished_at=time.time(),
            pid=pid,
        )

    def cloned_as(
        self, run_id: str, task_id: str, input_paths: Iterable[str], origin_run_id: str | None
    ) -> TaskRecord:
        """This (origin) task recorded in a resumed run: same artifacts, new identity."""
        return attrs.evolve(
            self,
            run_id=run_id,
            task_id=task_id,
            attempt=0,
            input_paths=tuple(input_paths),
            origin_run_id=origin_run_id,
            origin_task_id=self.task_id,
            cloned=True,
        )

    # -- JSON ----------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TaskRecord:
        """Parse a record as stored (any version: missing keys take their defaults)."""
        known = _TASK_KEYS
        exception = raw.get("exception")
        return cls(
            flow=raw.get("flow", ""),
            run_id=raw["run_id"],
            step=raw["step"],
            task_id=raw["task_id"],
            attempt=raw["attempt"],
            success=bool(raw.get("success")),
            task_ok=bool(raw.get("task_ok")),
            artifacts=raw.get("artifacts") or {},
            info=raw.get("info") or {},
            input_paths=raw.get("input_paths") or (),
            split_index=raw.get("split_index"),
            foreach_stack=raw.get("foreach_stack") or (),
            iteration_stack=raw.get("iteration_stack") or (),
            transition=Transition.from_json(raw.get("transition")),
            foreach_var=raw.get("foreach_var"),
            foreach_num_splits=raw.get("foreach_num_splits"),
            exception=TaskFailure(exception["type"], exception["message"]) if exception else None,
            caught=bool(raw.get("caught")),
            origin_run_id=raw.get("origin_run_id"),
            origin_task_id=raw.get("origin_task_id"),
            cloned=bool(raw.get("cloned")),
            started_at=raw.get("started_at") or 0.0,
            finished_at=raw.get("finished_at") or 0.0,
            pid=raw.get("pid"),
            returncode=raw.get("returncode"),
            persist_error=raw.get("persist_error"),
            ubf_context=raw.get("ubf_context"),
            code_package=raw.get("code_package"),
            foreach_chunks=raw.get("foreach_chunks"),
            inline=raw.get("inline") or {},
            extra={k: v for k, v in raw.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        """The stored form (keys as every version writes them; unset optional keys left out)."""
        out: dict[str, Any] = {
            "flow": self.flow,
            "run_id": self.run_id,
            "step": self.step,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "success": self.success,
            "task_ok": self.task_ok,
            "artifacts": dict(self.artifacts),
            "info": dict(self.info),
            "input_paths": list(self.input_paths),
            "split_index": self.split_index,
            "foreach_stack": [list(frame) for frame in self.foreach_stack],
            "iteration_stack": list(self.iteration_stack),
            "transition": self.transition.to_json() if self.transition else None,
            "foreach_var": self.foreach_var,
            "foreach_num_splits": self.foreach_num_splits,
            "exception": self.exception.to_json() if self.exception else None,
            "caught": self.caught,
            "origin_run_id": self.origin_run_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "pid": self.pid,
        }
        for name in self._OPTIONAL:
            value = getattr(self, name)
            if value is not None and value is not False:
                out[name] = value
        if self.foreach_chunks is not None:
            var, source, size, shas = self.foreach_chunks
            out["foreach_chunks"] = [var, source, size, list(shas)]
        if self.inline:
            out["inline"] = dict(self.inline)
        out.update(self.extra)
        return out

    # -- storage -------------------------------------------------------------------------------

    @classmethod
    def read(
        cls, store: FlowStore, run_id: str, step: str, task_id: str, attempt: int
    ) -> TaskRecord | None:
        """The record of one attempt, or ``None`` if it has none (yet)."""
        raw = store.read_task_record(run_id, step, task_id, attempt)
        return None if raw is None else cls.from_json(raw)

    @classmethod
    def read_latest(
        cls, store: FlowStore, run_id: str, step: str, task_id: str
    ) -> TaskRecord | None:
        """The record of the latest started attempt (``None`` while it runs: no fallback)."""
        raw = store.latest_record(run_id, step, task_id)
        return None if raw is None else cls.from_json(raw)

    def write(self, store: FlowStore, durable: bool = True) -> None:
        """Store this record (once per attempt; atomically). ``durable=False``: not fsync'd,
        the runtime commits it (see :meth:`FlowStore.write_task_record`)."""
        store.write_task_record(self.to_json(), durable)


#: the keys :meth:`TaskRecord.from_json` reads (the others go to ``extra``)
_TASK_KEYS = frozenset(f.name for f in attrs.fields(TaskRecord)) - {"extra"}


@final
@attrs.frozen(kw_only=True)
class RunRecord:
    """One run (``_run.json``), written when the run starts."""

    flow: str
    run_id: str
    user: str
    #: the user's tags (``--tag``)
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    #: ``user:<u>``, ``runtime:dev``, ``python_version:<v>``
    system_tags: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    created_at: float = 0.0
    #: resume: the run this one resumes
    origin_run_id: str | None = None
    #: the flow file's absolute path (None for a flow class run in-process without a file)
    flow_file: str | None = None
    start_step: str = "start"
    end_step: str = "end"
    #: ``@project``: name, branch, ... (see :mod:`flowkernel.flow.project`); None without one
    project: Mapping[str, Any] | None = None
    #: keys this version does not know, kept so that writing the record back loses nothing
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RunRecord:
        known = {f.name for f in attrs.fields(cls)} - {"extra"}
        return cls(
            flow=raw.get("flow", ""),
            run_id=str(raw.get("run_id", "")),
            user=raw.get("user", "unknown"),
            tags=raw.get("tags") or (),
            system_tags=raw.get("system_tags") or (),
            created_at=raw.get("created_at") or 0.0,
            origin_run_id=raw.get("origin_run_id"),
            flow_file=raw.get("flow_file"),
            start_step=raw.get("start_step") or "start",
            end_step=raw.get("end_step") or "end",
            project=raw.get("project"),
            extra={k: v for k, v in raw.items() if k not in known},
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "flow": self.flow,
            "run_id": self.run_id,
            "user": self.user,
            "tags": list(self.tags),
            "system_tags": list(self.system_tags),
            "created_at": self.created_at,
            "origin_run_id": self.origin_run_id,
            "flow_file": self.flow_file,
            "start_step": self.start_step,
            "end_step": self.end_step,
        }
        if self.project is not None or "project" in self.extra:
            out["project"] = self.project
        out.update(self.extra)
        return out

    @classmethod
    def read(cls, store: FlowStore, run_id: str) -> RunRecord | None:
        raw = store.read_run_record(run_id)
        return None if raw is None else cls.from_json(raw)

    def write(self, store: FlowStore) -> None:
        store.write_run_record(self.run_id, self.to_json())
