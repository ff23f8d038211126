"""Entry point of the ``storage_s3`` plugin: registers the ``s3`` storage backend.

Light on purpose: obstore is imported only when an ``s3://`` root is opened.
"""

from __future__ import annotations

from typing import Any

from flowkernel import hookimpl


def _make_backend(root: str) -> Any:
    from flowkernel_storage_s3.backend import S3Backend

    return S3Backend(root)


@hookimpl
def flowkernel_storage_backends() -> list[Any]:
    from flowkernel.specs import StorageBackendSpec

    return [StorageBackendSpec("s3", _make_backend, "S3-compatible object stores (obstore)")]
