"""Local storage: content-addressed artifacts, write-once task records, logs.

Layout under the root (``./.flowkernel`` by default)::

    <Flow>/latest_run                          run id of the newest `flow run`
    <Flow>/data/<sha[:2]>/<sha>                one pickled artifact (content-addressed)
    <Flow>/<run>/_run.json                     the run record (user, tags, created, origin)
    <Flow>/<run>/_tags.<ns>.<uuid>.json        one change of the run's user tags (write-once)
    <Flow>/<run>/<step>/<task>/<k>.started     attempt k was launched (written by the controller)
    <Flow>/<run>/<step>/<task>/<k>.record.json attempt k's record (written once, atomically)
    <Flow>/<run>/<step>/<task>/<k>.stdout.log  attempt k's output, appended live by the controller
    <Flow>/<run>/<step>/<task>/<k>.stderr.log
    <Flow>/<run>/<step>/<task>/<k>.<stream>.times  when each line arrived (float64 per line)

Every file other than logs is written to a temporary name and renamed into place, so a crash
leaves a complete file or none. :class:`FlowStore` is the only code that knows this layout; an
object-store backend would implement the same methods.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

from flowkernel.errors import (
    CorruptArtifactError,
    CorruptRecordError,
    StorageError,
    UnpicklableArtifactError,
)

PICKLE_PROTOCOL = 5
#: Artifacts whose pickle is smaller than this are hashed in memory; larger ones stream to disk.
_STREAM_THRESHOLD = 1 << 20
MAX_ATTEMPTS = 6
DEFAULT_ROOT_NAME = ".flowkernel"


def default_root() -> str:
    """``FLOWKERNEL_DATASTORE_ROOT``, else ``./.flowkernel`` (absolute)."""
    return os.path.abspath(os.environ.get("FLOWKERNEL_DATASTORE_ROOT") or DEFAULT_ROOT_NAME)


def storage_error(exc: OSError, path: str) -> StorageError:
    """A one-line :class:`StorageError` for an OS error while writing or reading ``path``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"no space left on device at {path}")
    if exc.errno == errno.EROFS:
        return StorageError(f"read-only file system: cannot write {path}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StorageError(f"permission denied: cannot write {path}")
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")


def fsync_dir(path: str) -> None:
    """Make the entries of directory ``path`` durable (a rename into it survives power loss)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the file itself is synced
    finally:
        os.close(fd)


def _write_file(path: str, data: bytes, durable: bool) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())


def write_atomic(path: str, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename (never a partial file).

    ``durable``: the file is fsync'd before the rename and its directory after it, so after a
    power loss the path holds the complete new content or the old one, never an empty file.

    :raises StorageError: one line naming the path (disk full, read-only, permission).
    """
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        try:
            _write_file(tmp, data, durable)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _write_file(tmp, data, durable)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise storage_error(exc, path) from None
    if durable:
        fsync_dir(os.path.dirname(path))


def _touch(path: str) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_json_atomic(path: str, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, separators=(",", ":")).encode())


def read_json(path: str) -> Any:
    """Parse the JSON file at ``path``.

    :raises FileNotFoundError: no such file.
    :raises CorruptRecordError: the file is empty, truncated or not JSON (names the file).
    """
    with open(path, "rb") as fh:
        data = fh.read()
    if not data.strip():
        raise CorruptRecordError(path, "the file is empty")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise CorruptRecordError(path, f"not valid JSON ({exc})") from None


def file_sha1(path: str) -> str:
    """The sha1 of the file at ``path``, read in 1 MB chunks."""
    digest = hashlib.sha1()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def _blob_intact(path: str, sha: str, size: int) -> bool:
    """True if the blob at ``path`` exists with the content hash ``sha`` (False: absent/damaged)."""
    try:
        return os.path.getsize(path) == size and file_sha1(path) == sha
    except OSError:
        return False


class _SpillWriter:
    """Where an artifact is pickled to: hashes everything, keeps small pickles in memory and
    spills to a temporary file once past ``limit`` bytes (a large value is never copied)."""

    def __init__(self, data_dir: str, limit: int):
        self.data_dir = data_dir
        self.limit = limit
        self.sha = hashlib.sha1()
        self.size = 0
        self.chunks: list[bytes] = []
        self.file: Any = None
        self.tmp: str | None = None

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.sha.update(data)
        try:
            if self.file is None and self.size + n > self.limit:
                os.makedirs(self.data_dir, exist_ok=True)
                self.tmp = os.path.join(self.data_dir, f"incoming.{uuid.uuid4().hex}.tmp")
                self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish()/discard()
                for chunk in self.chunks:
                    self.file.write(chunk)
                self.chunks.clear()
            if self.file is None:
                self.chunks.append(bytes(data))
            else:
                self.file.write(data)
        except OSError as exc:
            raise storage_error(exc, self.tmp or self.data_dir) from None
        self.size += n
        return n

    def finish(self, path: str) -> None:
        """Put the pickle at ``path`` unless an intact blob with the same content is there.

        A blob that exists but fails verification (damaged bytes) is replaced.
        """
        sha = self.sha.hexdigest()
        if self.file is None:
            if not _blob_intact(path, sha, self.size):
                write_atomic(path, b"".join(self.chunks), durable=False)
            return
        try:
            self.file.close()
            if _blob_intact(path, sha, self.size):
                os.unlink(self.tmp)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(self.tmp, path)
        except OSError as exc:
            raise storage_error(exc, path) from None

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            _unlink_quietly(self.tmp)


class _HashingReader:
    """A read-only file object that hashes every byte the unpickler reads through it."""

    def __init__(self, raw: io.BufferedReader):
        self.raw = raw
        self.sha = hashlib.sha1()
        self.size = 0

    def _seen(self, data: Any) -> None:
        self.sha.update(data)
        self.size += len(data)

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self._seen(data)
        return data

    def readinto(self, buf: Any) -> int:
        n = self.raw.readinto(buf)
        self._seen(memoryview(buf).cast("B")[:n])
        return n

    def readline(self, size: int = -1) -> bytes:
        data = self.raw.readline(size)
        self._seen(data)
        return data

    def drain(self) -> None:
        """Hash whatever the unpickler left unread (nothing, for an intact pickle)."""
        while self.read(1 << 20):
            pass


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


class FlowStore:
    """All storage of one flow under one root."""

    def __init__(self, root: str, flow_name: str, flow_file: str | None = None):
        self.root = os.path.abspath(root)
        self.flow_name = flow_name
        self.flow_dir = os.path.join(self.root, flow_name)
        self.data_dir = os.path.join(self.flow_dir, "data")
        self.flow_file = flow_file

    # -- artifacts -----------------------------------------------------------------------------

    def blob_path(self, sha: str) -> str:
        return os.path.join(self.data_dir, sha[:2], sha)

    def save(self, name: str, value: Any) -> tuple[str, int]:
        """Pickle ``value`` into the store; returns ``(sha1, size)``. Dedups by content.

        One pass: the pickle is hashed as it is produced; a large one streams to a temporary
        file that is renamed to its hash, so memory stays at about the value's own size.

        :raises UnpicklableArtifactError: naming the artifact ``name``.
        :raises StorageError: the blob could not be written (disk full, ...), naming the path.
        """
        writer = _SpillWriter(self.data_dir, _STREAM_THRESHOLD)
        try:
            try:
                pickle.dump(value, writer, protocol=PICKLE_PROTOCOL)
            except StorageError:
                raise
            except Exception as exc:
                raise UnpicklableArtifactError(name, f"{type(exc).__name__}: {exc}") from None
            sha = writer.sha.hexdigest()
            writer.finish(self.blob_path(sha))
        except BaseException:
            writer.discard()
            raise
        return sha, writer.size

    def load(self, sha: str, name: str | None = None, task: str | None = None) -> Any:
        """Unpickle the artifact with content hash ``sha``, verifying the hash as it reads.

        The bytes are hashed while the unpickler consumes them (one pass, no extra copy); a
        value whose bytes do not match ``sha`` is never returned.

        :param name: the artifact's name, and ``task`` the pathspec of the task it belongs to,
            for the error message.
        :raises CorruptArtifactError: the blob is missing, truncated or damaged (names the
            artifact, the task and the file).
        """
        path = self.blob_path(sha)
        what = f"artifact '{name}'" if name else f"artifact {sha}"
        if task:
            what += f" of task {task}"
        try:
            fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise CorruptArtifactError(
                f"{what} is missing: its data file {path} does not exist", name, path
            ) from None
        with fh:
            reader = _HashingReader(io.BufferedReader(fh, 1 << 20))
            unpickler = _FlowUnpickler(reader)
            unpickler.flow_file = self.flow_file
            error: Exception | None = None
            try:
                value = unpickler.load()
            except Exception as exc:
                value, error = None, exc
            reader.drain()
        if reader.sha.hexdigest() != sha:
            reason = f"{reader.size} bytes whose sha1 is {reader.sha.hexdigest()}"
            raise CorruptArtifactError(
                f"{what} is corrupt: {path} holds {reason}, not {sha} (truncated or damaged)",
                name,
                path,
            )
        if error is not None:
            raise error
        return value

    def blob_size(self, sha: str) -> int:
        path = self.blob_path(sha)
        try:
            return os.path.getsize(path)
        except FileNotFoundError:
            raise CorruptArtifactError(f"data file {path} does not exist", None, path) from None

    # -- runs ----------------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.flow_dir, run_id)

    def create_run_dir(self, run_id: str) -> bool:
        """Create the run's directory; False if it already exists (run ids never collide)."""
        os.makedirs(self.flow_dir, exist_ok=True)
        try:
            os.mkdir(self.run_dir(run_id))
            return True
        except FileExistsError:
            return False

    def write_run_record(self, run_id: str, record: dict[str, Any]) -> None:
        write_json_atomic(os.path.join(self.run_dir(run_id), "_run.json"), record)

    def read_run_record(self, run_id: str) -> dict[str, Any] | None:
        try:
            return read_json(os.path.join(self.run_dir(run_id), "_run.json"))
        except FileNotFoundError:
            return None

    def write_tag_change(self, run_id: str, remove: list[str], add: list[str]) -> None:
        """Record one change of the run's user tags: ``remove`` then ``add``, as one step.

        Each change is its own write-once file named by time, so concurrent changes never
        overwrite each other: readers apply them all, oldest first.
        """
        name = f"_tags.{time.time_ns():020d}.{uuid.uuid4().hex}.json"
        write_json_atomic(os.path.join(self.run_dir(run_id), name), {"remove": remove, "add": add})

    def user_tags(self, run_id: str, initial: list[str]) -> list[str]:
        """The run's user tags now: ``initial`` (its ``--tag`` values) with every change applied."""
        try:
            names = sorted(
                n
                for n in os.listdir(self.run_dir(run_id))
                if n.startswith("_tags.") and n.endswith(".json")
            )
        except FileNotFoundError:
            names = []
        tags = dict.fromkeys(initial)
        for name in names:
            try:
                change = read_json(os.path.join(self.run_dir(run_id), name))
            except FileNotFoundError:
                continue
            for tag in change.get("remove", ()):
                tags.pop(tag, None)
            tags.update(dict.fromkeys(change.get("add", ())))
        return list(tags)

    def run_ids(self) -> list[str]:
        """Every run id of the flow, newest first."""
        try:
            names = [e.name for e in os.scandir(self.flow_dir) if e.is_dir() and e.name != "data"]
        except FileNotFoundError:
            return []
        return sorted(names, key=_run_sort_key, reverse=True)

    def set_latest_run(self, run_id: str) -> None:
        write_atomic(os.path.join(self.flow_dir, "latest_run"), run_id.encode())

    def latest_run(self) -> str | None:
        try:
            with open(os.path.join(self.flow_dir, "latest_run")) as fh:
                return fh.read().strip() or None
        except FileNotFoundError:
            return None

    # -- steps and tasks -----------------------------------------------------------------------

    def task_dir(self, run_id: str, step: str, task_id: str) -> str:
        return os.path.join(self.flow_dir, run_id, step, task_id)

    def step_names(self, run_id: str) -> list[str]:
        try:
            entries = os.scandir(self.run_dir(run_id))
            return [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
        except FileNotFoundError:
            return []

    def task_ids(self, run_id: str, step: str) -> list[str]:
        try:
            return [e.name for e in os.scandir(os.path.join(self.flow_dir, run_id, step))]
        except FileNotFoundError:
            return []

    def mark_started(self, run_id: str, step: str, task_id: str, attempt: int) -> str:
        """Record that attempt ``attempt`` was launched; returns the task directory."""
        tdir = self.task_dir(run_id, step, task_id)
        name = f"{attempt}.started"
        try:
            try:
                _touch(os.path.join(tdir, name))
            except FileNotFoundError:
                # a new task directory appears with its marker inside (built under a temporary
                # name, then renamed), so a crash never leaves a task directory without attempts
                os.makedirs(os.path.dirname(tdir), exist_ok=True)
                tmp = os.path.join(self.run_dir(run_id), f".{step}.{task_id}.{uuid.uuid4().hex}")
                os.mkdir(tmp)
                _touch(os.path.join(tmp, name))
                try:
                    os.rename(tmp, tdir)
                except OSError:  # created meanwhile (another attempt): use it
                    shutil.rmtree(tmp, ignore_errors=True)
                    _touch(os.path.join(tdir, name))
        except OSError as exc:
            raise storage_error(exc, os.path.join(tdir, name)) from None
        return tdir

    def write_task_record(self, record: dict[str, Any]) -> None:
        tdir = self.task_dir(record["run_id"], record["step"], record["task_id"])
        write_json_atomic(os.path.join(tdir, f"{record['attempt']}.record.json"), record)

    def read_task_record(
        self, run_id: str, step: str, task_id: str, attempt: int
    ) -> dict[str, Any] | None:
        path = os.path.join(self.task_dir(run_id, step, task_id), f"{attempt}.record.json")
        try:
            return read_json(path)
        except FileNotFoundError:
            return None

    def latest_attempt(self, run_id: str, step: str, task_id: str) -> int | None:
        """The highest attempt that was started (or recorded), or None."""
        try:
            names = os.listdir(self.task_dir(run_id, step, task_id))
        except FileNotFoundError:
            return None
        attempts = [int(n.split(".", 1)[0]) for n in names if n[0].isdigit() and ".tmp" not in n]
        return max(attempts) if attempts else None

    def latest_record(self, run_id: str, step: str, task_id: str) -> dict[str, Any] | None:
        """The record of the latest started attempt (None while it runs: no fallback)."""
        attempt = self.latest_attempt(run_id, step, task_id)
        if attempt is None:
            return None
        return self.read_task_record(run_id, step, task_id, attempt)

    def log_path(self, run_id: str, step: str, task_id: str, attempt: int, stream: str) -> str:
        return os.path.join(self.task_dir(run_id, step, task_id), f"{attempt}.{stream}.log")

    def read_log_times(
        self, run_id: str, step: str, task_id: str, attempt: int, stream: str
    ) -> list[float]:
        """When each line of the log arrived (epoch seconds), as far as recorded."""
        import array

        path = self.log_path(run_id, step, task_id, attempt, stream)[: -len("log")] + "times"
        stamps = array.array("d")
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return []
        stamps.frombytes(data[: len(data) - len(data) % stamps.itemsize])
        if sys.byteorder != "little":
            stamps.byteswap()
        return stamps.tolist()

    def read_log(self, run_id: str, step: str, task_id: str, attempt: int, stream: str) -> bytes:
        try:
            with open(self.log_path(run_id, step, task_id, attempt, stream), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return b""


def _run_sort_key(run_id: str) -> tuple[int, Any]:
    return (0, int(run_id)) if run_id.isdigit() else (1, run_id)


def iter_flow_names(root: str) -> Iterator[str]:
    try:
        for entry in os.scandir(root):
            if entry.is_dir() and not entry.name.startswith("."):
                yield entry.name
    except FileNotFoundError:
        return
