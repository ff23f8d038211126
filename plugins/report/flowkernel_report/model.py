"""Everything the report shows about one run, read from the datastore (no artifact is unpickled).

Artifact types are read from the pickle's opcodes (the first class it names, or the built-in
type its first opcode builds), so a report never runs code from the flow or its libraries.
"""

from __future__ import annotations

import os
import pickletools
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from flowkernel.datastore import FlowStore

#: Bytes of a pickle read to find its type.
_TYPE_PROBE = 1 << 16


@attrs.frozen
class Attempt:
    """One attempt of one task."""

    number: int
    started_at: float | None
    finished_at: float | None
    #: "ok", "caught" (@catch handled it), "failed", "retried" (failed, a later attempt followed),
    #: "running" (no record: still running, or its process died unrecorded)
    status: str
    exception: str | None = None  #: "Type: message" of a failed attempt
    stdout: str = ""
    stderr: str = ""


@attrs.frozen
class Artifact:
    name: str
    type: str
    size: int | None


@attrs.frozen
class TaskView:
    step: str
    task_id: str
    attempts: tuple[Attempt, ...]
    artifacts: tuple[Artifact, ...]
    cloned: bool = False

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]


@attrs.frozen
class RunView:
    flow: str
    run_id: str
    status: str
    started_at: float
    finished_at: float | None
    tags: tuple[str, ...]
    user: str | None
    origin_run_id: str | None
    graph: dict[str, Any]  #: ``FlowGraph.to_dict()`` as stored with the run (may be empty)
    tasks: tuple[TaskView, ...]  #: in launch order

    def steps(self) -> list[str]:
        """Step names: the graph's order, then any step only the tasks know."""
        names = list(self.graph.get("steps", {}))
        return names + sorted({t.step for t in self.tasks} - set(names))


def _task_order(task_id: str) -> tuple[int, str]:
    head = task_id.split("_", 1)[0]
    return (int(head) if head.isdigit() else 1 << 62, task_id)


_SIMPLE = {
    "EMPTY_LIST": "list", "EMPTY_DICT": "dict", "EMPTY_TUPLE": "tuple", "TUPLE": "tuple",
    "TUPLE1": "tuple", "TUPLE2": "tuple", "TUPLE3": "tuple", "EMPTY_SET": "set",
    "ADDITEMS": "set", "FROZENSET": "frozenset", "NONE": "NoneType", "NEWTRUE": "bool",
    "NEWFALSE": "bool", "BININT": "int", "BININT1": "int", "BININT2": "int", "INT": "int",
    "LONG": "int", "LONG1": "int", "LONG4": "int", "BINFLOAT": "float", "FLOAT": "float",
    "BINUNICODE": "str", "SHORT_BINUNICODE": "str", "BINUNICODE8": "str", "UNICODE": "str",
    "BINBYTES": "bytes", "SHORT_BINBYTES": "bytes", "BINBYTES8": "bytes",
    "BYTEARRAY8": "bytearray",
}  # fmt: skip
#: Functions pickles call to rebuild an object; the class named after them is the type.
_RECONSTRUCTORS = {
    "copyreg._reconstructor",
    "copyreg.__newobj__",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
}
_NOISE = {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "MARK"}
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"}


def pickle_type(head: bytes) -> str:
    """The type a pickle builds, from its first bytes, without unpickling (``?``: unknown).

    The opcode that ends the pickle says what was built (a tuple, a list filled by APPENDS, an
    object by BUILD / REDUCE); an object's type is the first class the pickle names. A probe
    cut short falls back to the first opcode.
    """
    ops: list[str] = []
    strings: list[str] = []
    classes: list[str] = []
    complete = False
    try:
        for op, arg, _pos in pickletools.genops(head):
            if op.name == "STOP":
                complete = True
                break
            if op.name in _NOISE:
                continue
            if op.name in _STRINGS:
                strings.append(arg)
            if op.name in ("GLOBAL", "STACK_GLOBAL"):
                found = arg.replace(" ", ".") if op.name == "GLOBAL" else ".".join(strings[-2:])
                if found not in _RECONSTRUCTORS:
                    classes.append(found.removeprefix("builtins."))
            ops.append(op.name)
    except Exception:
        pass  # a probe cut short ends mid-stream
    if not ops:
        return "?"
    first, last = ops[0], ops[-1]
    if not complete:
        if first in ("GLOBAL", "STACK_GLOBAL") or (first in _STRINGS and classes):
            return classes[0] if classes else "?"
        return _SIMPLE.get(first, "?") if first.startswith("EMPTY_") else "?"
    if last in ("APPENDS", "APPEND"):
        return "list" if first == "EMPTY_LIST" else (classes[0] if classes else "list")
    if last in ("SETITEMS", "SETITEM"):
        return "dict" if first == "EMPTY_DICT" else (classes[0] if classes else "dict")
    if last in ("BUILD", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST"):
        return classes[0] if classes else "?"
    return _SIMPLE.get(last, "?")


def _artifact(store: FlowStore, name: str, sha: str, types: dict[str, str]) -> Artifact:
    inline = store.inline_blob(sha)  # a small value kept in its task's record
    if inline is not None:
        types.setdefault(sha, pickle_type(inline[:_TYPE_PROBE]))
        return Artifact(name, types[sha], len(inline))
    path = store.blob_path(sha)
    try:
        size = os.path.getsize(path)
    except OSError:
        return Artifact(name, "?", None)
    if sha not in types:
        try:
            with open(path, "rb") as fh:
                types[sha] = pickle_type(fh.read(_TYPE_PROBE))
        except OSError:
            types[sha] = "?"
    return Artifact(name, types[sha], size)


def _attempts(store: FlowStore, run_id: str, step: str, task_id: str) -> list[Attempt]:
    from flowkernel.engine.records import TaskRecord

    latest = store.latest_attempt(run_id, step, task_id)
    attempts = []
    for k in range(0 if latest is None else latest + 1):
        record = TaskRecord.read(store, run_id, step, task_id, k)
        out = store.read_log(run_id, step, task_id, k, "stdout").decode("utf-8", "replace")
        err = store.read_log(run_id, step, task_id, k, "stderr").decode("utf-8", "replace")
        if record is None:
            folder = store.task_dir(run_id, step, task_id)
            started = os.path.join(folder, f"{k}.started")
            if k == 0 and not os.path.exists(started):
                started = folder  # a first attempt's start is its task directory appearing
            start = os.path.getmtime(started) if os.path.exists(started) else None
            attempts.append(Attempt(k, start, None, "running", None, out, err))
            continue
        exc = record.exception
        text = f"{exc.type}: {exc.message}" if exc is not None else None
        if record.task_ok:
            status = "ok" if record.success else "caught"
        else:
            status = "retried" if k < (latest or 0) else "failed"
        attempts.append(Attempt(k, record.started_at, record.finished_at, status, text, out, err))
    return attempts


def load_run(store: FlowStore, run_id: str) -> RunView:
    """Read run ``run_id`` of ``store``'s flow: its record, graph, every task and attempt."""
    from flowkernel.cli.runs_cmd import summarize_run
    from flowkernel.engine.records import PARAMS_STEP, PARAMS_TASK, RunRecord, TaskRecord
    from flowkernel.errors import NotFoundError

    summary = summarize_run(store, run_id)
    if summary is None:
        raise NotFoundError(f"no run {store.flow_name}/{run_id} under {store.root}")
    record = RunRecord.read(store, run_id)
    graph: dict[str, Any] = {}
    params = TaskRecord.read_latest(store, run_id, PARAMS_STEP, PARAMS_TASK)
    sha = params.artifacts.get("_graph_info") if params else None
    if sha:
        try:
            graph = store.load(sha)  # a plain dict of str/list: unpickling it runs no code
        except Exception:
            graph = {}
    types: dict[str, str] = {}
    tasks = []
    for step in store.step_names(run_id):
        if step.startswith("_"):
            continue
        for task_id in store.task_ids(run_id, step):
            attempts = _attempts(store, run_id, step, task_id)
            if not attempts:
                continue
            final = TaskRecord.read(store, run_id, step, task_id, attempts[-1].number)
            artifacts = sorted(
                (
                    _artifact(store, name, sha, types)
                    for name, sha in (final.artifacts if final else {}).items()
                    if not name.startswith("_")
                ),
                key=lambda a: a.name,
            )
            tasks.append(
                TaskView(
                    step, task_id, tuple(attempts), tuple(artifacts), bool(final and final.cloned)
                )
            )
    tasks.sort(key=lambda t: (t.attempts[0].started_at or 0.0, _task_order(t.task_id)))
    return RunView(
        flow=store.flow_name,
        run_id=run_id,
        status=summary.status,
        started_at=summary.started_at,
        finished_at=summary.finished_at,
        tags=summary.tags,
        user=record.user if record else None,
        origin_run_id=summary.origin_run_id,
        graph=graph if isinstance(graph, dict) else {},
        tasks=tuple(tasks),
    )
