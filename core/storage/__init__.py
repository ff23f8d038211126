"""Storage backends: where a datastore root's bytes live.

The kernel keeps the layout (:class:`flowkernel.datastore.FlowStore` decides which key holds an
artifact, a record or a log); a backend only stores bytes under keys. The root's URL scheme picks
the backend: a plain path (or ``file://``) is the built-in :class:`LocalBackend`; any other
scheme is looked up among the backends plugins register with ``flowkernel_storage_backends``.
See docs/storage.md for the contract and a tutorial.
"""

from __future__ import annotations

from flowkernel.storage.backend import (
    StorageBackend,
    is_local_root,
    normalize_root,
    open_backend,
    root_scheme,
)
from flowkernel.storage.local import LocalBackend

__all__ = [
    "LocalBackend",
    "StorageBackend",
    "is_local_root",
    "normalize_root",
    "open_backend",
    "root_scheme",
]
