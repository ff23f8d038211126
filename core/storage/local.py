"""The built-in ``local`` backend: one file per key under a directory (the default root).

Every object is written to a temporary name beside its final path and moved into place, so a
crash leaves a complete file or none. Write-once puts move with ``os.link`` (fails if the key
exists: racing writers cannot both win); overwrite puts with ``os.replace``. Durable writes (the
default: records, the latest-run pointer) fsync the file before the move and its directory
after it, so a power loss leaves the old object or the new one, never an empty file.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable
from typing import IO

from flowkernel.errors import StorageError


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


#: bytes per read of :meth:`LocalBackend.get` (a task record is a few KiB)
_READ_CHUNK = 1 << 16
#: A write-once put of more bytes than this first checks that the key is absent; a smaller one
#: just tries (the link fails if the key exists): a record never exists yet, and FlowStore
#: has checked an artifact's blob before storing it.
_CHECK_FIRST = 1 << 16


class LocalBackend:
    """Keys are paths relative to ``root`` (an absolute directory, created on first write)."""

    def __init__(self, root: str):
        self.root = root
        self._prefix = os.path.join(root, "")

    def path(self, key: str) -> str:
        """The file that holds ``key`` (the local fast paths use it directly: log appends)."""
        return self._prefix + key

    # -- writes --------------------------------------------------------------------------------

    def _write_tmp(self, path: str, data: bytes, durable: bool) -> str:
        # os.open/os.write: no file object, no fstat/ioctl/lseek (every task writes a record)
        tmp = f"{path}.{os.urandom(16).hex()}.tmp"  # (as unique as a uuid4, and cheaper)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            try:
                fd = os.open(tmp, flags, 0o644)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = os.open(tmp, flags, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise storage_error(exc, path) from None
        return tmp

    def put(self, key: str, data: bytes, durable: bool = True) -> None:
        path = self.path(key)
        tmp = self._write_tmp(path, data, durable)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise storage_error(exc, path) from None
        if durable:
            fsync_dir(os.path.dirname(path))

    def put_once(self, key: str, data: bytes, durable: bool = True) -> bool:
        path = self.path(key)
        if not data:  # an empty marker is whole as soon as it exists: one exclusive create
            return _create_empty(path, self.staging_dir)
        if len(data) > _CHECK_FIRST and os.path.exists(path):  # cheaper than writing it twice
            return False
        written = _link_once(self._write_tmp(path, data, durable), path)
        if written and durable:
            fsync_dir(os.path.dirname(path))
        return written

    def create_dir(self, key: str) -> bool:
        """Create the empty directory ``key`` (a prefix ending with ``/``): one ``mkdir`` when
        its parent exists (the parents are made otherwise). False if it existed already."""
        path = self._prefix + key.rstrip("/")
        try:
            try:
                os.mkdir(path)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.mkdir(path)
        except FileExistsError:
            return False
        except OSError as exc:
            raise storage_error(exc, path) from None
        return True

    def remove_dir(self, key: str) -> bool:
        """Remove the directory ``key`` if it is empty (a task directory made for an attempt
        that never ran); False if it is not empty or not there."""
        try:
            os.rmdir(self._prefix + key.rstrip("/"))
        except OSError:
            return False
        return True

    def put_file(self, key: str, path: str) -> bool:
        final = self.path(key)
        try:
            return _link_once(path, final)
        except FileNotFoundError:
            if not os.path.exists(path):
                raise
            os.makedirs(os.path.dirname(final), exist_ok=True)
            return _link_once(path, final)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        # os.read, not open().read(): no isatty/fstat/lseek calls and no file objects, for the
        # record the controller reads back after every task
        try:
            fd = os.open(self._prefix + key, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            chunks = []
            while chunk := os.read(fd, _READ_CHUNK):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def open(self, key: str) -> IO[bytes]:
        return open(self._prefix + key, "rb", buffering=1 << 20)

    def exists(self, key: str) -> bool:
        return os.path.exists(self._prefix + key)

    def size(self, key: str) -> int | None:
        try:
            return os.path.getsize(self._prefix + key)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def list(self, prefix: str) -> list[str]:
        try:
            entries = os.scandir(self._prefix + prefix)
        except (FileNotFoundError, NotADirectoryError):
            return []
        with entries:
            return [
                e.name + "/" if e.is_dir() else e.name
                for e in entries
                if not e.name.endswith(".tmp") and not e.name.startswith(".")
            ]

    def staging_dir(self) -> str:
        path = os.path.join(self.root, ".staging")
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, path) from None
        return path


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _create_empty(path: str, staging: Callable[[], str]) -> bool:
    """Create an empty file exclusively. A missing directory appears with the file already in
    it (built in the staging directory, then renamed into place), so a crash never leaves a
    task directory without its start marker, and no listing ever sees a half-made one."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    try:
        try:
            os.close(os.open(path, flags, 0o644))
            return True
        except FileNotFoundError:
            pass
        folder = os.path.dirname(path)
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        tmp = os.path.join(staging(), f"dir.{uuid.uuid4().hex}")
        os.mkdir(tmp)
        os.close(os.open(os.path.join(tmp, os.path.basename(path)), flags, 0o644))
        try:
            os.rename(tmp, folder)
            return True
        except OSError:  # the directory was created meanwhile: use it
            shutil.rmtree(tmp, ignore_errors=True)
            os.close(os.open(path, flags, 0o644))
            return True
    except FileExistsError:
        return False
    except OSError as exc:
        raise storage_error(exc, path) from None


def _link_once(tmp: str, path: str) -> bool:
    """Move ``tmp`` to ``path`` unless ``path`` exists (``tmp`` is gone either way)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        os.unlink(tmp)
        return False
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            _unlink_quietly(tmp)
            raise storage_error(exc, path) from None
        # a filesystem without hard links: exists-check, then rename
        if os.path.exists(path):
            os.unlink(tmp)
            return False
        os.replace(tmp, path)
        return True
    os.unlink(tmp)
    return True
