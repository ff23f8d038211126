"""The datastore layout: content-addressed artifacts, write-once records, logs, run pointers.

Keys under the root (``./.flowkernel`` by default, or any URL a storage backend serves)::

    <Flow>/latest_run                          run id of the newest `flow run` (overwritten)
    <Flow>/data/<sha[:2]>/<sha>                one pickled artifact (content-addressed)
    <Flow>/<run>/_id                           reserves the run id (written once)
    <Flow>/<run>/_run.json                     the run record (user, tags, created, origin)
    <Flow>/<run>/<step>/<task>/<k>.started     attempt k was launched (written by the controller)
    <Flow>/<run>/<step>/<task>/<k>.record.json attempt k's record (written once, atomically)
    <Flow>/<run>/<step>/<task>/<k>.stdout.log  attempt k's output, written live by the controller
    <Flow>/<run>/<step>/<task>/<k>.stderr.log

:class:`FlowStore` is the only code that knows this layout. It reads and writes through a
:class:`flowkernel.storage.StorageBackend` chosen by the root's URL scheme: every object except
logs and the latest-run pointer is written once (a record cannot be overwritten, of two racing
writers exactly one wins), and every object appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import uuid
from collections.abc import Iterator
from typing import Any

from flowkernel.errors import UnpicklableArtifactError
from flowkernel.storage import open_backend
from flowkernel.storage.backend import normalize_root

PICKLE_PROTOCOL = 5
#: Artifacts whose pickle is smaller than this are hashed in memory; larger ones stream to disk.
_STREAM_THRESHOLD = 1 << 20
MAX_ATTEMPTS = 6
DEFAULT_ROOT_NAME = ".flowkernel"


def default_root() -> str:
    """``FLOWKERNEL_DATASTORE_ROOT``, else ``./.flowkernel`` (absolute; URLs as they are)."""
    return normalize_root(os.environ.get("FLOWKERNEL_DATASTORE_ROOT") or DEFAULT_ROOT_NAME)


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename (never a partial file)."""
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)


def write_json_atomic(path: str, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, separators=(",", ":")).encode())


def read_json(path: str) -> Any:
    with open(path, "rb") as fh:
        return json.loads(fh.read())


class _SpillWriter:
    """Where an artifact is pickled to: hashes everything, keeps small pickles in memory and
    spills to a temporary file in the backend's staging directory once past ``limit`` bytes
    (a large value is never copied)."""

    def __init__(self, backend: Any, limit: int):
        self.backend = backend
        self.limit = limit
        self.sha = hashlib.sha1()
        self.size = 0
        self.chunks: list[bytes] = []
        self.file: Any = None
        self.tmp: str | None = None

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.sha.update(data)
        if self.file is None and self.size + n > self.limit:
            self.tmp = os.path.join(self.backend.staging_dir(), f"{uuid.uuid4().hex}.tmp")
            self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish()/discard()
            for chunk in self.chunks:
                self.file.write(chunk)
            self.chunks.clear()
        if self.file is None:
            self.chunks.append(bytes(data))
        else:
            self.file.write(data)
        self.size += n
        return n

    def finish(self, key: str) -> None:
        """Store the pickle at ``key`` unless a blob with the same content is there already."""
        if self.file is None:
            self.backend.put_once(key, b"".join(self.chunks))
            return
        self.file.close()
        self.backend.put_file(key, self.tmp)

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


class _FlowUnpickler(pickle.Unpickler):
    """Finds classes defined in a flow file even when it was pickled as ``__main__``."""

    flow_file: str | None = None

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (AttributeError, ModuleNotFoundError):
            if not self.flow_file:
                raise
            from flowkernel.flow.loader import load_module

            return getattr(load_module(self.flow_file), name)


#: Names under ``<Flow>/`` that are not runs.
_NOT_RUNS = frozenset({"data", "code"})


class FlowStore:
    """All storage of one flow under one root (a path or a URL a backend serves)."""

    def __init__(self, root: str, flow_name: str, flow_file: str | None = None):
        self.backend = open_backend(root)
        self.root = self.backend.root
        self.flow_name = flow_name
        self.flow_file = flow_file
        self._flow = flow_name + "/"

    # -- artifacts -----------------------------------------------------------------------------

    def blob_key(self, sha: str) -> str:
        return f"{self._flow}data/{sha[:2]}/{sha}"

    def blob_path(self, sha: str) -> str:
        """The file of an artifact (local roots only)."""
        return self.backend.path(self.blob_key(sha))

    def save(self, name: str, value: Any) -> tuple[str, int]:
        """Pickle ``value`` into the store; returns ``(sha1, size)``. Dedups by content.

        One pass: the pickle is hashed as it is produced; a large one streams to a temporary
        file that the backend moves or uploads under its hash, so memory stays at about the
        value's own size.

        :raises UnpicklableArtifactError: naming the artifact ``name``.
        """
        writer = _SpillWriter(self.backend, _STREAM_THRESHOLD)
        try:
            try:
                pickle.dump(value, writer, protocol=PICKLE_PROTOCOL)
            except Exception as exc:
                raise UnpicklableArtifactError(name, f"{type(exc).__name__}: {exc}") from None
            sha = writer.sha.hexdigest()
            writer.finish(self.blob_key(sha))
        except BaseException:
            writer.discard()
            raise
        return sha, writer.size

    def load(self, sha: str) -> Any:
        """Unpickle the artifact with content hash ``sha`` (streamed from the backend)."""
        with self.backend.open(self.blob_key(sha)) as fh:
            unpickler = _FlowUnpickler(fh)
            unpickler.flow_file = self.flow_file
            return unpickler.load()

    def blob_size(self, sha: str) -> int:
        size = self.backend.size(self.blob_key(sha))
        if size is None:
            raise FileNotFoundError(f"artifact {sha} of {self.flow_name} is not in {self.root}")
        return size

    # -- runs ----------------------------------------------------------------------------------

    def _run(self, run_id: str) -> str:
        return f"{self._flow}{run_id}/"

    def has_flow(self) -> bool:
        """True once the flow has a run (or a run being created) under this root."""
        return self.backend.exists(f"{self._flow}latest_run") or bool(self.run_ids())

    def create_run_dir(self, run_id: str) -> bool:
        """Reserve ``run_id``; False if it is taken (run ids never collide, across hosts too)."""
        return self.backend.put_once(self._run(run_id) + "_id", run_id.encode())

    def write_run_record(self, run_id: str, record: dict[str, Any]) -> bool:
        """Store the run record (once: False if the run already had one)."""
        return self.backend.put_once(self._run(run_id) + "_run.json", _dump_json(record))

    def read_run_record(self, run_id: str) -> dict[str, Any] | None:
        return _load_json(self.backend.get(self._run(run_id) + "_run.json"))

    def run_ids(self) -> list[str]:
        """Every run id of the flow, newest first."""
        names = [n[:-1] for n in self.backend.list(self._flow) if n.endswith("/")]
        return sorted((n for n in names if n not in _NOT_RUNS), key=_run_sort_key, reverse=True)

    def set_latest_run(self, run_id: str) -> None:
        self.backend.put(f"{self._flow}latest_run", run_id.encode())

    def latest_run(self) -> str | None:
        data = self.backend.get(f"{self._flow}latest_run")
        return (data.decode().strip() or None) if data else None

    # -- steps and tasks -----------------------------------------------------------------------

    def _task(self, run_id: str, step: str, task_id: str) -> str:
        return f"{self._flow}{run_id}/{step}/{task_id}/"

    def task_dir(self, run_id: str, step: str, task_id: str) -> str:
        """The task's directory (local roots only)."""
        return self.backend.path(self._task(run_id, step, task_id))

    def step_names(self, run_id: str) -> list[str]:
        return [n[:-1] for n in self.backend.list(self._run(run_id)) if n.endswith("/")]

    def task_ids(self, run_id: str, step: str) -> list[str]:
        names = self.backend.list(f"{self._flow}{run_id}/{step}/")
        return [n[:-1] for n in names if n.endswith("/")]

    def mark_started(self, run_id: str, step: str, task_id: str, attempt: int) -> None:
        """Record that attempt ``attempt`` was launched."""
        self.backend.put_once(f"{self._task(run_id, step, task_id)}{attempt}.started", b"")

    def write_task_record(self, record: dict[str, Any]) -> bool:
        """Store an attempt's record, once: False (nothing written) if that attempt already has
        one, so of two racing writers of the same attempt exactly one wins."""
        key = self._task(record["run_id"], record["step"], record["task_id"])
        return self.backend.put_once(f"{key}{record['attempt']}.record.json", _dump_json(record))

    def read_task_record(
        self, run_id: str, step: str, task_id: str, attempt: int
    ) -> dict[str, Any] | None:
        key = f"{self._task(run_id, step, task_id)}{attempt}.record.json"
        return _load_json(self.backend.get(key))

    def latest_attempt(self, run_id: str, step: str, task_id: str) -> int | None:
        """The highest attempt that was started (or recorded), or None."""
        names = self.backend.list(self._task(run_id, step, task_id))
        attempts = [int(n.split(".", 1)[0]) for n in names if n[0].isdigit()]
        return max(attempts) if attempts else None

    def latest_record(self, run_id: str, step: str, task_id: str) -> dict[str, Any] | None:
        """The record of the latest started attempt (None while it runs: no fallback)."""
        attempt = self.latest_attempt(run_id, step, task_id)
        if attempt is None:
            return None
        return self.read_task_record(run_id, step, task_id, attempt)

    def log_key(self, run_id: str, step: str, task_id: str, attempt: int, stream: str) -> str:
        return f"{self._task(run_id, step, task_id)}{attempt}.{stream}.log"

    def read_log(self, run_id: str, step: str, task_id: str, attempt: int, stream: str) -> bytes:
        return self.backend.get(self.log_key(run_id, step, task_id, attempt, stream)) or b""


def _dump_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _load_json(data: bytes | None) -> Any:
    return None if data is None else json.loads(data)


def _run_sort_key(run_id: str) -> tuple[int, Any]:
    return (0, int(run_id)) if run_id.isdigit() else (1, run_id)


def iter_flow_names(root: str) -> Iterator[str]:
    """The flows stored under ``root``."""
    for name in open_backend(root).list(""):
        if name.endswith("/") and not name.startswith("."):
            yield name[:-1]
