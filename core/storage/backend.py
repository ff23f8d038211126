"""The storage backend contract, and how a datastore root picks its backend.

A backend stores opaque bytes under ``/``-separated keys relative to its root (no leading
``/``, never ``..``). :class:`flowkernel.datastore.FlowStore` builds every key; a backend never
interprets them. Plugins register backends by URL scheme with the ``flowkernel_storage_backends``
hook (:class:`flowkernel.specs.StorageBackendSpec`); plain paths and ``file://`` URLs are the
built-in local backend.
"""

from __future__ import annotations

import os
import re
from typing import IO, TYPE_CHECKING, Protocol

from flowkernel.errors import StorageBackendMissingError

if TYPE_CHECKING:
    from flowkernel.kernel import Kernel

#: ``scheme://rest``; a scheme of one letter is a Windows drive, not a URL.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://(.*)$")

#: What to install for a scheme no loaded plugin serves (the rest get a generic hint).
INSTALL_HINTS = {"s3": "flowkernel-storage-s3"}


class StorageBackend(Protocol):
    """What the kernel needs from a place to keep bytes. Every method may raise
    :class:`flowkernel.errors.StorageError` (one line naming the endpoint, bucket, credential
    or path at fault) when the storage itself fails; a missing key is not a failure.
    """

    #: the normalized root the backend was opened for (what runs record and pass on)
    root: str

    def put_once(self, key: str, data: bytes, durable: bool = True) -> bool:
        """Write-once: store ``data`` at ``key`` unless ``key`` exists. Atomic: a reader sees
        the whole object or nothing.

        Returns True if the object at ``key`` is this call's: it wrote it, including when a
        remote store kept the write but its answer was lost and a retry of the same call found
        the object there (the call must still answer True). False if the key held another
        writer's object before (its content is unchanged). Of any number of writers, racing
        or not, exactly one gets True, even when they write the same bytes (two claims of one
        attempt are both empty; two runs may reserve one id with one content): a backend
        tells its own write from another's by something unique to the call (S3: a token in
        the object's metadata), never by comparing the bytes.

        ``durable=False`` allows a write that a power loss may undo (content-addressed blobs,
        which are verified on every read); a backend that is always durable ignores it."""

    def put_file(self, key: str, path: str) -> bool:
        """Write-once from the local file ``path`` (a large artifact), streamed or multipart,
        never read whole into memory. The file is consumed (moved into place or deleted).
        Returns like :meth:`put_once`."""

    def put(self, key: str, data: bytes, durable: bool = True) -> None:
        """Overwrite ``key`` atomically. Used only for the latest-run pointer, logs, and to
        replace a damaged artifact blob."""

    def get(self, key: str) -> bytes | None:
        """The whole object, or None if ``key`` does not exist."""

    def open(self, key: str) -> IO[bytes]:
        """A binary reader streaming the object (``read``/``readinto``/``close``).

        :raises FileNotFoundError: if ``key`` does not exist.
        """

    def exists(self, key: str) -> bool:
        """True if an object is stored at ``key``."""

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if ``key`` does not exist."""

    def list(self, prefix: str) -> list[str]:
        """The immediate children of ``prefix`` (a key ending with ``/``, or ``""`` for the
        root), in no particular order: object names as they are, sub-prefixes with a trailing
        ``/`` (``["latest_run", "data/", "1700000000/"]``). Empty if nothing is there. Names
        starting with ``.`` are the backend's own (never a key) and are not listed."""

    # Optional, for remote stores where a request costs a round trip (FlowStore uses them when
    # present, to list a step of N tasks in a few requests instead of 3N):
    #   list_all(prefix) -> list[str]: every key under prefix, relative to it, recursively;
    #   get_many(keys) -> list[bytes | None]: several objects, fetched concurrently.
    # Optional, for stores with real directories (the local one): FlowStore then records the
    # start of a task's first attempt as its directory appearing, with no marker object:
    #   create_dir(prefix) -> bool: create the empty directory ``prefix`` (parents as needed);
    #   False if it existed. ``exists(prefix)`` must then be True for it, while ``list`` is [].

    def staging_dir(self) -> str:
        """A local directory for the temporary files :meth:`put_file` will consume (for the
        local backend it is on the same filesystem, so ``put_file`` is a rename)."""


def root_scheme(root: str) -> str:
    """The URL scheme of ``root`` (``"s3"``), or ``"file"`` for a plain path."""
    match = _URL.match(root)
    return match.group(1).lower() if match else "file"


def is_local_root(root: str) -> bool:
    return root_scheme(root) == "file"


def normalize_root(root: str, cwd: str | None = None) -> str:
    """A root in the form runs record: an absolute path for local roots (``file://`` stripped,
    relative paths resolved against ``cwd``), a URL without a trailing ``/`` otherwise."""
    match = _URL.match(root)
    if match is None or match.group(1).lower() == "file":
        path = match.group(2) if match else root
        return os.path.abspath(os.path.join(cwd, path) if cwd else path)
    return root.rstrip("/")


_backends: dict[str, StorageBackend] = {}
_kernel: Kernel | None = None
_may_fork = True


def declare_no_fork() -> None:
    """Declare that this process will not fork children that use storage (``flow step`` runs
    one task and exits). Backends whose client cannot cross a ``fork()`` may then use it
    directly instead of keeping it out of the process."""
    global _may_fork
    _may_fork = False


def may_fork() -> bool:
    """False once :func:`declare_no_fork` was called in this process."""
    return _may_fork


def open_backend(root: str, kernel: Kernel | None = None) -> StorageBackend:
    """The backend for ``root`` (cached per process and root).

    Local roots never need the plugin machinery; any other scheme is looked up in ``kernel``'s
    ``flowkernel_storage_backends`` registry (a kernel is discovered once if none is given).

    :raises StorageBackendMissingError: (a usage error, exit 2) naming the plugin to install.
    """
    root = normalize_root(root)
    backend = _backends.get(root)
    if backend is not None:
        return backend
    scheme = root_scheme(root)
    if scheme == "file":
        from flowkernel.storage.local import LocalBackend

        backend = LocalBackend(root)
    else:
        specs = _kernel_for(kernel).storage_backends()
        if scheme not in specs:
            hint = INSTALL_HINTS.get(scheme, f"a flowkernel plugin for {scheme}:// storage")
            served = ", ".join(f"{s}://" for s in specs if s != "file") or "none"
            raise StorageBackendMissingError(
                f"no storage backend for {scheme}:// roots ({root}); install {hint} "
                f"(installed remote backends: {served})"
            )
        backend = specs[scheme].factory(root)
    _backends[root] = backend
    return backend


def _kernel_for(kernel: Kernel | None) -> Kernel:
    global _kernel
    if kernel is not None:
        return kernel
    if _kernel is None:
        from flowkernel.kernel import Kernel

        _kernel = Kernel.discover()
    return _kernel


def use_kernel(kernel: Kernel | None) -> None:
    """Look remote schemes up in ``kernel`` from now on (the CLI passes its own)."""
    global _kernel
    if kernel is not _kernel:
        _kernel = kernel
        for root in [r for r in _backends if not is_local_root(r)]:
            del _backends[root]


def forget_backends() -> None:
    """Close and drop the cached backends and the kernel (tests that change plugins or
    servers)."""
    global _kernel
    for backend in _backends.values():
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    _backends.clear()
    _kernel = None
