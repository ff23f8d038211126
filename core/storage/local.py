"""The built-in ``local`` backend: one file per key under a directory (the default root).

Every object is written to a temporary name beside its final path and moved into place, so a
crash leaves a complete file or none. Write-once puts move with ``os.link`` (fails if the key
exists: racing writers cannot both win); overwrite puts with ``os.replace``.
"""

from __future__ import annotations

import os
import uuid
from typing import IO


class LocalBackend:
    """Keys are paths relative to ``root`` (an absolute directory, created on first write)."""

    def __init__(self, root: str):
        self.root = root
        self._prefix = os.path.join(root, "")

    def path(self, key: str) -> str:
        """The file that holds ``key`` (the local fast paths use it directly: log appends)."""
        return self._prefix + key

    # -- writes --------------------------------------------------------------------------------

    def _write_tmp(self, path: str, data: bytes) -> str:
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        try:
            fh = open(tmp, "wb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fh = open(tmp, "wb")  # noqa: SIM115
        with fh:
            fh.write(data)
        return tmp

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        os.replace(self._write_tmp(path, data), path)

    def put_once(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        if not data:  # an empty marker is whole as soon as it exists: one exclusive create
            return _create_empty(path)
        if os.path.exists(path):  # a stat is cheaper than writing a blob twice
            return False
        return _link_once(self._write_tmp(path, data), path)

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
        try:
            with open(self._prefix + key, "rb") as fh:
                return fh.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

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
                if not e.name.endswith(".tmp")
            ]

    def staging_dir(self) -> str:
        path = os.path.join(self.root, ".staging")
        os.makedirs(path, exist_ok=True)
        return path


def _create_empty(path: str) -> bool:
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        return False
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            return False
    os.close(fd)
    return True


def _link_once(tmp: str, path: str) -> bool:
    """Move ``tmp`` to ``path`` unless ``path`` exists (``tmp`` is gone either way)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        os.unlink(tmp)
        return False
    except FileNotFoundError:
        raise
    except OSError:  # a filesystem without hard links: exists-check, then rename
        if os.path.exists(path):
            os.unlink(tmp)
            return False
        os.replace(tmp, path)
        return True
    os.unlink(tmp)
    return True
