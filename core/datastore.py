"""The datastore layout: content-addressed artifacts, write-once records, logs, run pointers.

Keys under the root (``./.flowkernel`` by default, or any URL a storage backend serves)::

    <Flow>/latest_run                          run id of the newest `flow run` (overwritten)
    <Flow>/data/<sha[:2]>/<sha>                one pickled artifact (content-addressed; one of at
                                               most INLINE_MAX bytes is in its records instead)
    <Flow>/code/<sha256>.tar.gz                one code package (``flow package``)
    <Flow>/<run>/_id                           reserves the run id (written once)
    <Flow>/<run>/_run.json                     the run record (user, tags, created, origin)
    <Flow>/<run>/_tags.<ns>.<uuid>.json        one change of the run's user tags (write-once)
    <Flow>/<run>/<step>/<task>/                made empty when attempt 0 is launched (local roots)
    <Flow>/<run>/<step>/<task>/<k>.started     attempt k was launched (k > 0; any k on object store)
    <Flow>/<run>/<step>/<task>/<k>.record.json attempt k's record (written once, atomically)
    <Flow>/<run>/<step>/<task>/<k>.stdout.log  attempt k's output, written live by the controller
    <Flow>/<run>/<step>/<task>/<k>.stderr.log
    <Flow>/<run>/<step>/<task>/<k>.<stream>.times  when each line arrived (float64 per line)

:class:`FlowStore` is the only code that knows this layout. It reads and writes through a
:class:`flowkernel.storage.StorageBackend` chosen by the root's URL scheme: every object except
logs and the latest-run pointer is written once (a record cannot be overwritten, of two racing
writers exactly one wins), every object appears whole or not at all, records are durable, and
every artifact is verified against its hash as it is read, whatever the backend.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import os
import pickle
import re
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from flowkernel.errors import (
    CorruptArtifactError,
    CorruptRecordError,
    InvalidPathspecError,
    StorageError,
    UnpicklableArtifactError,
)
from flowkernel.storage import LocalBackend, open_backend
from flowkernel.storage.backend import normalize_root
from flowkernel.storage.largeio import (
    PARALLEL_HASH,
    hash_while,
    readinto_hashing,
    write_sliced,
)
from flowkernel.storage.local import fsync_dir, storage_error

__all__ = ["FlowStore", "default_root", "fsync_dir", "storage_error", "write_atomic"]

PICKLE_PROTOCOL = 5
#: Artifacts whose pickle is smaller than this are hashed in memory; larger ones stream to disk.
_STREAM_THRESHOLD = 1 << 20
MAX_ATTEMPTS = 6
DEFAULT_ROOT_NAME = ".flowkernel"
#: An artifact whose pickle is at most this many bytes is kept inline, in the record of every
#: task that holds it (``inline``: hash -> base64 of the pickle), not in a blob file: storing
#: ``self.y = 1`` creates no file (a new inode costs a task more than all its system calls on
#: a busy ext4), and reading it opens none. Verified against its hash on every load, like a blob.
INLINE_MAX = 128
#: The inline artifacts this process has seen (in records it read or saves it made): content
#: hash -> pickle (bytes) or its base64 (str, decoded on first load). Content-addressed, so
#: the same for every root and flow.
_INLINE: dict[str, bytes | str] = {}


#: Types whose values :meth:`FlowStore.save` pickles in one call (the common ``self.x = 1``):
#: those of at most INLINE_MAX bytes go inline without the streaming writer.
_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
try:  # the interpreter's own sha1: for a few bytes, cheaper to start than OpenSSL's
    from _sha1 import sha1 as _small_sha1
except ImportError:  # pragma: no cover - a build without it
    _small_sha1 = hashlib.sha1


def remember_inline(inline: Any) -> None:
    """Know the inline artifacts ``inline`` (hash -> base64, a record's ``inline``)."""
    for sha, text in inline.items():
        _INLINE.setdefault(sha, text)


def _inline_bytes(sha: str) -> bytes | None:
    data = _INLINE.get(sha)
    if isinstance(data, str):
        data = _INLINE[sha] = base64.b64decode(data)
    return data


def inline_of(shas: Any) -> dict[str, str]:
    """The ``inline`` entry of a record holding ``shas``: base64 of each inline one."""
    out = {}
    for sha in shas:
        data = _INLINE.get(sha)
        if data is not None:
            out[sha] = (
                data if isinstance(data, str) else binascii.b2a_base64(data, newline=False).decode()
            )
    return out


def default_root() -> str:
    """``FLOWKERNEL_DATASTORE_ROOT``, else ``./.flowkernel`` (absolute; URLs as they are)."""
    return normalize_root(os.environ.get("FLOWKERNEL_DATASTORE_ROOT") or DEFAULT_ROOT_NAME)


#: What the engine creates as a flow, run, step or task name: no separators, no dot-names.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}")
_SHA = re.compile(r"[0-9a-f]{40,128}")


def check_name(kind: str, name: str) -> str:
    """``name`` if it is a valid ``kind`` (flow, run id, step, task id) component of a key.

    Letters, digits, ``_ . -``, not starting with a dot and without ``..``: a pathspec
    component can never leave the datastore root (``..``, ``/``, an absolute path).

    :raises InvalidPathspecError: naming the kind and the value.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidPathspecError(
            f"invalid {kind} {name!r}: names are letters, digits, '_', '.' and '-' "
            "(no path separators, no '..')"
        )
    return name


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
    """The sha1 of the file at ``path``, read in chunks of at most 1 MB.

    The buffer is no larger than the file: most blobs are a few bytes, and a zeroed 1 MB
    buffer is 256 pages to fault in, in every task that stores an artifact it already has.
    """
    digest = hashlib.sha1()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(min(os.fstat(fh.fileno()).st_size + 1, 1 << 20))
        view = memoryview(buf)
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def _blob_state(backend: Any, key: str, sha: str, size: int) -> str:
    """``"absent"``, ``"intact"`` (the blob at ``key`` has the content hash ``sha``) or
    ``"damaged"``. A local blob is hashed; a remote object is taken at its size (object stores
    write objects whole and do not rot in place)."""
    found = backend.size(key)
    if found is None:
        return "absent"
    if found != size:
        return "damaged"
    if isinstance(backend, LocalBackend):
        try:
            return "intact" if file_sha1(backend.path(key)) == sha else "damaged"
        except OSError:
            return "damaged"
    return "intact"


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
        if (self.file is None and self.size + n <= self.limit) or n < PARALLEL_HASH:
            self.sha.update(data)
        try:
            if self.file is None and self.size + n > self.limit:
                self.tmp = os.path.join(self.backend.staging_dir(), f"{uuid.uuid4().hex}.tmp")
                self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in finish()/discard()
                for chunk in self.chunks:
                    self.file.write(chunk)
                self.chunks.clear()
            if self.file is None:
                self.chunks.append(bytes(data))
            elif n >= PARALLEL_HASH:
                hash_while(self.sha, data, lambda big: write_sliced(self.file.write, big))
            else:
                self.file.write(data)
        except OSError as exc:
            raise storage_error(exc, self.tmp or self.backend.staging_dir()) from None
        self.size += n
        return n

    def finish(self, key: str) -> None:
        """Store the pickle at ``key`` unless an intact blob with the same content is there.

        A blob that exists but fails verification (damaged bytes) is replaced.
        """
        sha = self.sha.hexdigest()
        if self.file is not None:
            self.file.close()
        state = _blob_state(self.backend, key, sha, self.size)
        if state == "intact":
            self.discard()
        elif state == "absent" and self.file is None:
            self.backend.put_once(key, b"".join(self.chunks), durable=False)
        elif state == "absent":
            self.backend.put_file(key, self.tmp)
        elif self.file is None:
            self.backend.put(key, b"".join(self.chunks), durable=False)  # repair a damaged blob
        elif isinstance(self.backend, LocalBackend):  # repair a damaged large blob (rare) ...
            try:  # ... with the new file itself: the pickle is never held in memory
                os.replace(self.tmp, self.backend.path(key))
            except OSError as exc:
                raise storage_error(exc, self.backend.path(key)) from None
        else:
            with open(self.tmp, "rb") as fh:
                self.backend.put(key, fh.read(), durable=False)
            self.discard()

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
        view = memoryview(buf).cast("B")
        if view.nbytes < PARALLEL_HASH:
            n = self.raw.readinto(view)
            self._seen(view[:n])
            return n
        # a large value (the unpickler reads it straight into the object it builds)
        n = readinto_hashing(self.raw.readinto, view, self.sha)
        self.size += n
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


#: Names under ``<Flow>/`` that are not runs.
_NOT_RUNS = frozenset({"data", "code"})


class FlowStore:
    """All storage of one flow under one root (a path or a URL a backend serves)."""

    def __init__(self, root: str, flow_name: str, flow_file: str | None = None):
        self.backend = open_backend(root)
        self.root = self.backend.root
        self.flow_name = check_name("flow", flow_name)
        self.flow_file = flow_file
        self._flow = flow_name + "/"

    # -- artifacts -----------------------------------------------------------------------------

    def blob_key(self, sha: str) -> str:
        if not isinstance(sha, str) or not _SHA.fullmatch(sha):
            raise InvalidPathspecError(f"invalid artifact hash {sha!r}: expected hex digits")
        return f"{self._flow}data/{sha[:2]}/{sha}"

    def blob_path(self, sha: str) -> str:
        """The file of an artifact (local roots only)."""
        return self.backend.path(self.blob_key(sha))

    def _where(self, key: str) -> str:
        """Where ``key`` lives, for messages: a file under a local root, else a URL."""
        if isinstance(self.backend, LocalBackend):
            return self.backend.path(key)
        return f"{self.root}/{key}"

    def save(self, name: str, value: Any, verified: str | None = None) -> tuple[str, int]:
        """Pickle ``value`` into the store; returns ``(sha1, size)``. Dedups by content.

        One pass: the pickle is hashed as it is produced; a large one streams to a temporary
        file that the backend moves or uploads under its hash, so memory stays at about the
        value's own size.

        :param verified: the hash of a blob known to be stored: one this process has read and
            verified, or one an input task recorded under the same name (the executor passes
            the inherited hash). If ``value`` pickles to that hash, the blob is neither checked
            nor written again (its readers verify it as always).

        :raises UnpicklableArtifactError: naming the artifact ``name``.
        :raises StorageError: the blob could not be written (disk full, ...), naming the path.
        """
        kind = type(value)
        if kind in _SCALARS and (kind not in (str, bytes) or len(value) <= INLINE_MAX):
            # small: pickled in one call, no streaming writer, no file
            data = pickle.dumps(value, PICKLE_PROTOCOL)  # (the same bytes as pickle.dump)
            if len(data) <= INLINE_MAX:
                sha = _small_sha1(data).hexdigest()
                if sha != verified:
                    _INLINE.setdefault(sha, data)
                return sha, len(data)
        writer = _SpillWriter(self.backend, _STREAM_THRESHOLD)
        try:
            try:
                pickle.dump(value, writer, protocol=PICKLE_PROTOCOL)
            except StorageError:  # disk full while spilling: not the value's fault
                raise
            except Exception as exc:
                raise UnpicklableArtifactError(name, f"{type(exc).__name__}: {exc}") from None
            sha = writer.sha.hexdigest()
            if sha == verified:
                writer.discard()
            elif writer.file is None and writer.size <= INLINE_MAX:
                _INLINE.setdefault(sha, b"".join(writer.chunks))  # in the records, no file
            else:
                writer.finish(self.blob_key(sha))
        except BaseException:
            writer.discard()
            raise
        return sha, writer.size

    def load(self, sha: str, name: str | None = None, task: str | None = None) -> Any:
        """Unpickle the artifact with content hash ``sha``, verifying the hash as it reads.

        The bytes stream from the backend and are hashed while the unpickler consumes them
        (one pass, no extra copy); a value whose bytes do not match ``sha`` is never returned.

        :param name: the artifact's name, and ``task`` the pathspec of the task it belongs to,
            for the error message.
        :raises CorruptArtifactError: the blob is missing, truncated or damaged (names the
            artifact, the task and the file).
        """
        key = self.blob_key(sha)
        path = self._where(key)
        what = f"artifact '{name}'" if name else f"artifact {sha}"
        if task:
            what += f" of task {task}"
        inline = _inline_bytes(sha)
        if inline is not None:
            return self._load_inline(sha, inline, what, name)
        try:
            fh = self.backend.open(key)
        except FileNotFoundError:
            raise CorruptArtifactError(
                f"{what} is missing: its data file {path} does not exist", name, path
            ) from None
        with fh:
            reader = _HashingReader(fh)
            unpickler = _FlowUnpickler(reader)
            unpickler.flow_file = self.flow_file
            error: Exception | None = None
            try:
                value = unpickler.load()
            except StorageError:
                raise
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

    def _load_inline(self, sha: str, data: bytes, what: str, name: str | None) -> Any:
        found = hashlib.sha1(data).hexdigest()
        if found != sha:
            where = "its task record"
            raise CorruptArtifactError(
                f"{what} is corrupt: the copy inline in {where} has the sha1 {found}, not {sha}",
                name,
                where,
            )
        unpickler = _FlowUnpickler(io.BytesIO(data))
        unpickler.flow_file = self.flow_file
        return unpickler.load()

    def inline_blob(self, sha: str) -> bytes | None:
        """The pickle of an inline artifact this process knows (see :data:`INLINE_MAX`)."""
        return _inline_bytes(sha)

    def damaged_blob(self, shas: Any, checked: dict[str, bool]) -> str | None:
        """Where the first of ``shas`` whose blob is missing or damaged is, or None.

        A local blob is hashed, a remote object checked for existence (object stores write
        whole objects). ``checked`` caches verdicts by sha across calls (each blob read once).
        """
        for sha in shas:
            key = self.blob_key(sha)
            if sha not in checked:
                inline = _inline_bytes(sha)
                if inline is not None:
                    checked[sha] = hashlib.sha1(inline).hexdigest() == sha
                elif isinstance(self.backend, LocalBackend):
                    try:
                        checked[sha] = file_sha1(self.backend.path(key)) == sha
                    except OSError:
                        checked[sha] = False
                else:
                    checked[sha] = self.backend.size(key) is not None
            if not checked[sha]:
                return self._where(key)
        return None

    def blob_size(self, sha: str) -> int:
        inline = _inline_bytes(sha)
        if inline is not None:
            return len(inline)
        key = self.blob_key(sha)
        size = self.backend.size(key)
        if size is None:
            path = self._where(key)
            raise CorruptArtifactError(f"data file {path} does not exist", None, path)
        return size

    # -- runs ----------------------------------------------------------------------------------

    def _run(self, run_id: str) -> str:
        return f"{self._flow}{check_name('run id', run_id)}/"

    def run_dir(self, run_id: str) -> str:
        """The run's directory (local roots only)."""
        return self.backend.path(self._run(run_id)[:-1])

    def has_flow(self) -> bool:
        """True once the flow has a run (or a run being created) under this root."""
        return self.backend.exists(f"{self._flow}latest_run") or bool(self.run_ids())

    def create_run_dir(self, run_id: str, holder: str | None = None) -> bool:
        """Reserve ``run_id``; False if it is taken (run ids never collide, across hosts too).

        ``holder``: a scheduler's unique name for the one run it started under ``run_id``
        (Argo's workflow uid), for a start that may be retried after it died past the
        reservation: the reservation records it, and reserving again with the same holder is
        True. Another holder, or none, still gets False.

        :raises StorageError: the root is not writable (one line naming the root and why).
        """
        key = self._run(run_id) + "_id"
        content = (run_id if not holder else f"{run_id}\n{holder}").encode()
        try:
            if self.backend.put_once(key, content):
                return True
            return bool(holder) and self.backend.get(key) == content
        except StorageError as exc:
            raise StorageError(f"the datastore root {self.root} is not writable: {exc}") from None

    def write_run_record(self, run_id: str, record: dict[str, Any]) -> bool:
        """Store the run record (once: False if the run already had one)."""
        return self.backend.put_once(self._run(run_id) + "_run.json", _dump_json(record))

    def read_run_record(self, run_id: str) -> dict[str, Any] | None:
        return self._read_record(self._run(run_id) + "_run.json")

    def write_run_note(self, run_id: str, name: str, record: dict[str, Any]) -> bool:
        """Store the run's write-once record ``_<name>.json`` (its controller, its ending; see
        :mod:`flowkernel.engine.run_state`); False if the run already had one."""
        return self.backend.put_once(f"{self._run(run_id)}_{name}.json", _dump_json(record))

    def read_run_note(self, run_id: str, name: str) -> dict[str, Any] | None:
        return self._read_record(f"{self._run(run_id)}_{name}.json")

    def write_tag_change(self, run_id: str, remove: list[str], add: list[str]) -> None:
        """Record one change of the run's user tags: ``remove`` then ``add``, as one step.

        Each change is its own write-once object named by time, so concurrent changes never
        overwrite each other: readers apply them all, oldest first.
        """
        name = f"_tags.{time.time_ns():020d}.{uuid.uuid4().hex}.json"
        self.backend.put_once(self._run(run_id) + name, _dump_json({"remove": remove, "add": add}))

    def user_tags(self, run_id: str, initial: list[str]) -> list[str]:
        """The run's user tags now: ``initial`` (its ``--tag`` values) with every change applied."""
        names = sorted(
            n
            for n in self.backend.list(self._run(run_id))
            if n.startswith("_tags.") and n.endswith(".json")
        )
        tags = dict.fromkeys(initial)
        for name in names:
            change = self._read_json(self._run(run_id) + name)
            if change is None:
                continue
            for tag in change.get("remove", ()):
                tags.pop(tag, None)
            tags.update(dict.fromkeys(change.get("add", ())))
        return list(tags)

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
        check_name("step", step)
        return f"{self._run(run_id)}{step}/{check_name('task id', task_id)}/"

    def task_dir(self, run_id: str, step: str, task_id: str) -> str:
        """The task's directory (local roots only)."""
        return self.backend.path(self._task(run_id, step, task_id)[:-1])

    def step_names(self, run_id: str) -> list[str]:
        return [n[:-1] for n in self.backend.list(self._run(run_id)) if n.endswith("/")]

    def task_ids(self, run_id: str, step: str) -> list[str]:
        prefix = f"{self._run(run_id)}{check_name('step', step)}/"
        if getattr(self.backend, "list_all", None) is not None:
            return self._snapshot_step(prefix)
        return [n[:-1] for n in self.backend.list(prefix) if n.endswith("/")]

    def _snapshot_step(self, prefix: str) -> list[str]:
        """A remote step in a few requests: one recursive listing gives every task and its
        latest attempt, and the records of those attempts are fetched concurrently. The
        attempts are reused for :data:`SNAPSHOT_SECONDS` (a client iterating a step sees the
        step as it was listed); records are write-once, so they stay cached."""
        attempts: dict[str, int] = {}
        recorded: set[str] = set()
        for key in self.backend.list_all(prefix):
            task_id, _, name = key.partition("/")
            if "/" in name or not name[:1].isdigit():
                continue
            attempt = int(name.split(".", 1)[0])
            if attempt >= attempts.get(task_id, -1):
                attempts[task_id] = attempt
            if name.endswith(".record.json"):
                recorded.add(f"{task_id}/{name}")
        _ATTEMPTS[(self.root, prefix)] = (time.monotonic(), attempts)
        wanted = [
            f"{prefix}{t}/{a}.record.json"
            for t, a in attempts.items()
            if f"{t}/{a}.record.json" in recorded
            and (self.root, f"{prefix}{t}/{a}.record.json") not in _RECORDS
        ]
        get_many = getattr(self.backend, "get_many", None)
        if get_many is not None and wanted:
            for key, data in zip(wanted, get_many(wanted), strict=True):
                if data is not None:
                    _remember(self.root, key, self._parse_json(key, data))
        return list(attempts)

    def mark_started(self, run_id: str, step: str, task_id: str, attempt: int) -> None:
        """Record that attempt ``attempt`` was launched.

        On a backend with directories (the local one) the first attempt's start is the task
        directory appearing, empty: one ``mkdir``, no file (a task costs its controller one
        inode fewer). Later attempts, and every attempt on object stores, leave an empty
        ``<k>.started`` object. Readers treat both alike (:meth:`latest_attempt`).
        """
        key = self._task(run_id, step, task_id)
        create_dir = getattr(self.backend, "create_dir", None)
        if attempt == 0 and create_dir is not None:
            create_dir(key)
            return
        self.backend.put_once(f"{key}{attempt}.started", b"")

    def start_mark_is_a_directory(self, attempt: int) -> bool:
        """Whether :meth:`mark_started` of ``attempt`` makes the task's directory (the first
        attempt, on a backend with directories): the task's own writes go into it, so a
        runtime makes it before the task runs, and :meth:`unmark_started` can take it back."""
        return attempt == 0 and getattr(self.backend, "create_dir", None) is not None

    def unmark_started(self, run_id: str, step: str, task_id: str, attempt: int) -> bool:
        """Take back :meth:`mark_started` of an attempt that never ran (a runtime withdrew it
        from its queue): where the mark is the task's directory
        (:meth:`start_mark_is_a_directory`), the directory is removed if it is still empty.
        True if nothing of the attempt is left; False where the mark cannot be taken back
        (a ``<k>.started`` object: write-once, so a runtime that may withdraw attempts writes
        it only once the attempt started: :meth:`Dispatcher.started
        <flowkernel.engine.dispatch.Dispatcher.started>`) or something was written meanwhile."""
        remove_dir = getattr(self.backend, "remove_dir", None)
        if not self.start_mark_is_a_directory(attempt) or remove_dir is None:
            return False
        return remove_dir(self._task(run_id, step, task_id))

    def claim_attempt(self, run_id: str, step: str, task_id: str, attempt: int) -> bool:
        """Claim the execution of attempt ``attempt``, once: False if it was claimed before.

        For runtimes that may execute the same attempt twice (Dask runs a task again when its
        worker died): the second execution finds the claim and does not run the step under
        the first one's attempt (its record and logs stay as the first left them).
        """
        return self.backend.put_once(f"{self._task(run_id, step, task_id)}{attempt}.claimed", b"")

    def write_task_record(self, record: dict[str, Any], durable: bool = True) -> bool:
        """Store an attempt's record, once: False (nothing written) if that attempt already has
        one, so of two racing writers of the same attempt exactly one wins.

        ``durable=False``: not fsync'd here; the caller makes it durable before anything reads
        it that must survive a crash of the machine (the local runtime's group commit).
        """
        key = self._task(record["run_id"], record["step"], record["task_id"])
        remember_inline(record.get("inline") or {})  # a clone carries its origin's
        chunks = record.get("foreach_chunks")
        shas = [*(record.get("artifacts") or {}).values(), *(chunks[3] if chunks else ())]
        inline = inline_of(shas)
        if inline:
            record = {**record, "inline": inline}
        data = _dump_json(record)
        return self.backend.put_once(f"{key}{record['attempt']}.record.json", data, durable)

    def record_path(self, run_id: str, step: str, task_id: str, attempt: int) -> str:
        """The file of an attempt's record (local roots only)."""
        return self.backend.path(f"{self._task(run_id, step, task_id)}{attempt}.record.json")

    def read_task_record(
        self, run_id: str, step: str, task_id: str, attempt: int
    ) -> dict[str, Any] | None:
        """An attempt's record (None if it has none); its inline artifacts become loadable."""
        raw = self._read_record(f"{self._task(run_id, step, task_id)}{attempt}.record.json")
        if raw is not None and raw.get("inline"):
            remember_inline(raw["inline"])
        return raw

    def latest_attempt(self, run_id: str, step: str, task_id: str) -> int | None:
        """The highest attempt that was started (or recorded), or None."""
        snapshot = _ATTEMPTS.get((self.root, f"{self._flow}{run_id}/{step}/"))
        fresh = snapshot is not None and time.monotonic() - snapshot[0] < SNAPSHOT_SECONDS
        if fresh and task_id in snapshot[1]:
            return snapshot[1][task_id]
        key = self._task(run_id, step, task_id)
        names = self.backend.list(key)
        attempts = [int(n.split(".", 1)[0]) for n in names if n[0].isdigit()]
        if attempts:
            return max(attempts)
        if getattr(self.backend, "create_dir", None) is not None and self.backend.exists(key):
            return 0  # an empty task directory: the first attempt was launched (mark_started)
        return None

    def latest_record(self, run_id: str, step: str, task_id: str) -> dict[str, Any] | None:
        """The record of the latest started attempt (None while it runs: no fallback)."""
        attempt = self.latest_attempt(run_id, step, task_id)
        if attempt is None:
            return None
        return self.read_task_record(run_id, step, task_id, attempt)

    def _read_record(self, key: str) -> Any:
        """A write-once record: remote ones are cached once read (they never change)."""
        cached = _RECORDS.get((self.root, key))
        if cached is not None:
            return cached
        record = self._read_json(key)
        if record is not None and getattr(self.backend, "get_many", None) is not None:
            _remember(self.root, key, record)
        return record

    def _read_json(self, key: str) -> Any:
        """The JSON object at ``key``, None if there is none.

        :raises CorruptRecordError: the object is empty or not JSON (names where it is).
        """
        data = self.backend.get(key)
        if data is None:
            return None
        return self._parse_json(key, data)

    def _parse_json(self, key: str, data: bytes) -> Any:
        if not data or data.isspace():  # (no stripped copy of every record)
            raise CorruptRecordError(self._where(key), "the file is empty")
        try:
            return json.loads(data)
        except ValueError as exc:
            raise CorruptRecordError(self._where(key), f"not valid JSON ({exc})") from None

    def log_path(self, run_id: str, step: str, task_id: str, attempt: int, stream: str) -> str:
        """The file of an attempt's log (local roots only)."""
        return self.backend.path(self.log_key(run_id, step, task_id, attempt, stream))

    # -- code packages -------------------------------------------------------------------------

    def put_package(self, sha: str, data: bytes) -> bool:
        """Store a code package (gzip of the tar whose sha256 is ``sha``), once."""
        return self.backend.put_once(f"{self._flow}code/{sha}.tar.gz", data)

    def get_package(self, sha: str) -> bytes | None:
        return self.backend.get(f"{self._flow}code/{sha}.tar.gz")

    def log_key(self, run_id: str, step: str, task_id: str, attempt: int, stream: str) -> str:
        return f"{self._task(run_id, step, task_id)}{attempt}.{stream}.log"

    def read_log_times(
        self, run_id: str, step: str, task_id: str, attempt: int, stream: str
    ) -> list[float]:
        """When each line of the log arrived (epoch seconds), as far as recorded (local roots
        record them; remote ones do not yet)."""
        import array

        key = self.log_key(run_id, step, task_id, attempt, stream)[: -len("log")] + "times"
        stamps = array.array("d")
        data = self.backend.get(key)
        if data is None:
            return []
        stamps.frombytes(data[: len(data) - len(data) % stamps.itemsize])
        if sys.byteorder != "little":
            stamps.byteswap()
        return stamps.tolist()

    def read_log(self, run_id: str, step: str, task_id: str, attempt: int, stream: str) -> bytes:
        return self.backend.get(self.log_key(run_id, step, task_id, attempt, stream)) or b""


#: How long a step listing's attempts answer ``latest_attempt`` (remote backends only).
SNAPSHOT_SECONDS = 2.0
_ATTEMPTS: dict[tuple[str, str], tuple[float, dict[str, int]]] = {}
#: Records read from remote backends, by (root, key): write-once, so never stale.
_RECORDS: OrderedDict[tuple[str, str], Any] = OrderedDict()
_RECORDS_MAX = 20_000


def _remember(root: str, key: str, record: Any) -> None:
    _RECORDS[(root, key)] = record
    if len(_RECORDS) > _RECORDS_MAX:
        _RECORDS.popitem(last=False)


def _json_encoder() -> Any:
    """``json.dumps(obj, separators=(",", ":"))`` as one C call: the encoder is made once,
    here (at import, before any fork), not on every call by ``JSONEncoder`` code that a forked
    task would run for the first time (its one record write). Same output for every value a
    record holds (they have no reference cycles, which it does not look for)."""
    from json import encoder

    make = encoder.c_make_encoder
    if make is None:  # no C accelerator
        return None
    default = json.JSONEncoder().default
    return make(None, default, encoder.encode_basestring_ascii, None, ":", ",", False, False, True)


_ENCODE = _json_encoder()


def _dump_json(obj: Any) -> bytes:
    if _ENCODE is None:
        return json.dumps(obj, separators=(",", ":")).encode()
    return "".join(_ENCODE(obj, 0)).encode()


def _run_sort_key(run_id: str) -> tuple[int, Any]:
    return (0, int(run_id)) if run_id.isdigit() else (1, run_id)


def iter_flow_names(root: str) -> Iterator[str]:
    """The flows stored under ``root``."""
    for name in open_backend(root).list(""):
        if name.endswith("/") and not name.startswith("."):
            yield name[:-1]
