"""The S3 helper process: obstore requests on behalf of a process that forks.

obstore (Tokio inside) cannot be used in a child forked after the parent used it: the child
hangs. The local runtime forks every task from its controller, so a process that may fork keeps
obstore out of itself and sends its requests here, over a pipe; its forked children use obstore
directly, on a runtime of their own. Frames are ``4-byte length + pickle``; the helper exits
when its parent closes the pipe.

    python -m flowkernel_storage_s3.agent ROOT
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from typing import IO, Any

from flowkernel.errors import StorageError

_OPS = frozenset(
    {"put_once", "put", "put_file", "get", "exists", "size", "list", "download", "list_all",
     "get_many"}
)  # fmt: skip


def _send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=5)
    stream.write(len(data).to_bytes(4, "big") + data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    header = stream.read(4)
    if len(header) < 4:
        raise EOFError
    size = int.from_bytes(header, "big")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def serve(root: str) -> None:
    """Answer requests on stdin/stdout until stdin closes."""
    from flowkernel_storage_s3.direct import S3Direct

    backend = S3Direct(root)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            op, args = _recv(inp)
        except EOFError:
            return
        try:
            if op not in _OPS:
                raise ValueError(f"unknown operation {op!r}")
            reply = ("ok", getattr(backend, op)(*args))
        except FileNotFoundError as exc:
            reply = ("missing", str(exc))
        except StorageError as exc:
            reply = ("storage", str(exc))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _send(out, reply)


class AgentClient:
    """The parent's side: one helper process, started on first use, restarted if it died."""

    def __init__(self, root: str):
        self.root = root
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "flowkernel_storage_s3.agent", self.root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C stops the run, not its storage mid-request
        )

    def call(self, op: str, *args: Any) -> Any:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            try:
                _send(self._proc.stdin, (op, args))
                status, value = _recv(self._proc.stdout)
            except (EOFError, BrokenPipeError, OSError):
                self._proc = None
                raise StorageError(f"the S3 helper process for {self.root} exited") from None
        if status == "ok":
            return value
        if status == "missing":
            raise FileNotFoundError(value)
        if status == "storage":
            raise StorageError(value)
        raise StorageError(f"S3 helper for {self.root}: {value}")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    serve(sys.argv[1])
