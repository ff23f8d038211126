"""``Task.code`` / ``Run.code``: the code package a task ran from, as Metaflow's ``MetaflowCode``.

A task records the key of the package it ran from when it was started with
``flow step --package KEY`` (Argo deployments, and runtimes that ship code to other machines);
a local ``flow run`` imports the flow file in place and records none, so its ``code`` is None,
as for Metaflow's local runs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tempfile
from typing import TYPE_CHECKING, Any

from flowkernel.errors import NotFoundError, StorageError

if TYPE_CHECKING:
    from flowkernel.datastore import FlowStore


class MetaflowCode:
    """A stored code package: ``path``, ``info``, ``flowspec``, ``script_name``, ``tarball``,
    ``extract()``. The archive is fetched from the datastore on first use, and checked against
    its key."""

    def __init__(self, key: str, store: FlowStore):
        from flowkernel.engine.packages import parse_key

        self.key = key
        self.flow_name, self.sha = parse_key(key)
        self._store = store
        self._tar: bytes | None = None

    def __repr__(self) -> str:
        return f"MetaflowCode({self.key!r})"

    @property
    def path(self) -> str:
        """Where the package is stored (``<root>/<Flow>/code/<sha256>.tar.gz``)."""
        return f"{self._store.root.rstrip('/')}/{self.flow_name}/code/{self.sha}.tar.gz"

    def _bytes(self) -> bytes:
        if self._tar is None:
            data = self._store.get_package(self.sha)
            if data is None:
                raise NotFoundError(f"code package {self.key} is not in {self._store.root}")
            tar = gzip.decompress(data)
            if hashlib.sha256(tar).hexdigest() != self.sha:
                raise StorageError(f"code package {self.path} is damaged (its hash differs)")
            self._tar = tar
        return self._tar

    @property
    def tarball(self) -> tarfile.TarFile:
        """The package as an open ``tarfile.TarFile`` (read-only, in memory)."""
        return tarfile.open(fileobj=io.BytesIO(self._bytes()))

    @property
    def info(self) -> dict[str, Any]:
        """What the package says about itself: ``flow_name``, ``flow_file`` (its path inside
        the package) and ``key``."""
        from flowkernel.engine.packages import MANIFEST

        with self.tarball as tar:
            member = tar.extractfile(MANIFEST)
            manifest = json.load(member) if member is not None else {}
        return {**manifest, "key": self.key}

    @property
    def script_name(self) -> str:
        """The flow file's name."""
        return self.info.get("flow_file", "").rsplit("/", 1)[-1]

    @property
    def flowspec(self) -> str:
        """The source text of the flow file."""
        with self.tarball as tar:
            member = tar.extractfile(self.info["flow_file"])
            return member.read().decode("utf-8") if member is not None else ""

    def extract(self) -> tempfile.TemporaryDirectory:
        """Unpack the package into a new temporary directory (removed when the returned object
        is cleaned up or garbage-collected); its ``.name`` is the path."""
        target = tempfile.TemporaryDirectory(prefix="flowkernel-code-")
        with self.tarball as tar:
            for member in tar.getmembers():  # what flowkernel writes has no links, no ../
                if not member.isfile() or member.name.startswith("/") or ".." in member.name:
                    raise StorageError(f"code package {self.path} holds an unsafe entry")
            tar.extractall(target.name)
        return target
