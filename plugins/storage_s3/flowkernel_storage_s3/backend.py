"""``S3Backend``: the storage contract for ``s3://bucket/prefix`` roots.

Which client serves a call depends on the process (obstore cannot cross a ``fork()``):

* a process that may fork workers (the default: a ``flow run`` controller, a notebook) sends
  its requests to a helper process (:mod:`flowkernel_storage_s3.agent`) and never loads
  obstore's runtime itself;
* a forked child of it, and a process that declared it will not fork
  (:func:`flowkernel.storage.backend.declare_no_fork`, as ``flow step`` does), use obstore
  directly (:class:`~flowkernel_storage_s3.direct.S3Direct`).
"""

from __future__ import annotations

import os
import tempfile
from typing import IO, Any

from flowkernel.storage.backend import may_fork
from flowkernel_storage_s3.direct import S3Direct, make_store, parse_root


class S3Backend:
    def __init__(self, root: str):
        self.root = root
        self.bucket, self.prefix = parse_root(root)
        self._owner = os.getpid()
        self._store = make_store(self.bucket)  # no request yet: children may share it
        self._direct: S3Direct | None = None
        self._direct_pid = 0
        self._agent: Any = None

    def _client(self) -> Any:
        pid = os.getpid()
        if pid == self._owner and may_fork():
            if self._agent is None:
                from flowkernel_storage_s3.agent import AgentClient

                self._agent = AgentClient(self.root)
            return self._agent
        if self._direct is None or self._direct_pid != pid:
            self._direct = S3Direct(self.root, self._store)
            self._direct_pid = pid
        return self._direct

    def _call(self, op: str, *args: Any) -> Any:
        client = self._client()
        if client is self._agent:
            return client.call(op, *args)
        return getattr(client, op)(*args)

    def put_once(self, key: str, data: bytes, durable: bool = True) -> bool:
        return self._call("put_once", key, data)  # S3 objects are always durable

    def put(self, key: str, data: bytes, durable: bool = True) -> None:
        self._call("put", key, data)

    def put_file(self, key: str, path: str) -> bool:
        return self._call("put_file", key, path)

    def get(self, key: str) -> bytes | None:
        return self._call("get", key)

    def open(self, key: str) -> IO[bytes]:
        client = self._client()
        if client is not self._agent:
            return client.open(key)
        path = client.call("download", key)
        reader = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - the caller closes it
        os.unlink(path)  # the open file stays readable; nothing is left behind
        return reader

    def exists(self, key: str) -> bool:
        return self._call("exists", key)

    def size(self, key: str) -> int | None:
        return self._call("size", key)

    def list(self, prefix: str) -> list[str]:
        return self._call("list", prefix)

    def list_all(self, prefix: str) -> list[str]:
        """Optional fast path: every key under ``prefix`` (FlowStore lists a step with it)."""
        return self._call("list_all", prefix)

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Optional fast path: several objects fetched concurrently."""
        return self._call("get_many", keys)

    def staging_dir(self) -> str:
        return os.environ.get("FLOWKERNEL_S3_STAGING") or tempfile.gettempdir()

    def close(self) -> None:
        """Stop the helper process, if this process started one."""
        if self._agent is not None and os.getpid() == self._owner:
            self._agent.close()
            self._agent = None
