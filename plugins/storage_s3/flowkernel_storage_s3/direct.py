"""The storage contract on obstore, in the calling process.

Configuration comes from the standard variables: ``AWS_ENDPOINT_URL`` (an ``http://`` endpoint
works as is), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``.
``FLOWKERNEL_S3_RETRY_SECONDS`` (default 15) bounds how long a request is retried before the
operation fails with a :class:`~flowkernel.errors.StorageError`.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import obstore
from obstore.exceptions import AlreadyExistsError, NotFoundError
from obstore.store import S3Store

from flowkernel.errors import StorageError

#: obstore raises FileNotFoundError for a missing key (its NotFoundError is kept for safety)
_MISSING = (NotFoundError, FileNotFoundError)
#: Files above this are uploaded in parts of this size.
PART_SIZE = 16 << 20
#: The user metadata (``x-amz-meta-flowkernel-writer``) that tells a write-once put its own
#: object from another writer's: a random token per :meth:`S3Direct.put_once` call.
WRITER = "flowkernel-writer"


def parse_root(root: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b/")``; ``s3://bucket`` -> ``("bucket", "")``."""
    rest = root.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StorageError(f"{root}: an s3:// root needs a bucket (s3://BUCKET/PREFIX)")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


def endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def make_store(bucket: str) -> S3Store:
    """An obstore S3 store for ``bucket`` (no request is made: safe to create before a fork)."""
    url = endpoint()
    retry = timedelta(seconds=float(os.environ.get("FLOWKERNEL_S3_RETRY_SECONDS", "15")))
    options: dict[str, Any] = {"connect_timeout": timedelta(seconds=5)}
    kwargs: dict[str, Any] = {}
    if url:
        options["allow_http"] = url.startswith("http://")
        kwargs = {"endpoint": url, "virtual_hosted_style_request": False}
    if not os.environ.get("AWS_DEFAULT_REGION") and not os.environ.get("AWS_REGION"):
        kwargs["region"] = "us-east-1"
    return S3Store(
        bucket,
        client_options=options,
        retry_config={
            # the time bound is the one that applies: obstore also stops after max_retries,
            # so that cap is set past anything the back-off can fit into the bound
            "max_retries": _retries_within(retry),
            "retry_timeout": retry,
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=2),
                "base": 2.0,
            },
        },
        **kwargs,
    )


def _retries_within(bound: timedelta) -> int:
    """More retries than the back-off below fits into ``bound`` (>= 1 per 100 ms of it)."""
    return max(4, int(bound.total_seconds() * 10) + 1)


class S3Direct:
    """One bucket and key prefix, through obstore in this process."""

    def __init__(self, root: str, store: S3Store | None = None):
        self.root = root
        self.bucket, self.prefix = parse_root(root)
        self.store = store or make_store(self.bucket)

    def _fault(self, exc: Exception, key: str) -> StorageError:
        return StorageError(describe_fault(exc, self.bucket, self.prefix + key))

    def put_once(self, key: str, data: bytes, durable: bool = True) -> bool:
        """A conditional PUT (``If-None-Match: *``) tagged with a token of this call's own
        (user metadata :data:`WRITER`). When the server answers that the key exists, the object
        is still this call's if it carries the token: the PUT stored it, its response was lost
        (a reset, a timeout) and obstore's retry found it there. Bytes are not compared: two
        writers may put the same bytes (empty markers, a run id) and only one of them wins."""
        token = os.urandom(16).hex()
        try:
            obstore.put(self.store, self.prefix + key, data, mode="create",
                        attributes={WRITER: token})  # fmt: skip
            return True
        except AlreadyExistsError:
            return self._written_by(key, token)
        except Exception as exc:
            raise self._fault(exc, key) from None

    def _written_by(self, key: str, token: str) -> bool:
        """True if the object at ``key`` was stored by the :meth:`put_once` call of ``token``."""
        try:
            found = obstore.get(self.store, self.prefix + key, options={"head": True})
        except _MISSING:
            return False  # (keys are never deleted; nothing of ours is there)
        except Exception as exc:
            raise self._fault(exc, key) from None
        return found.attributes.get(WRITER) == token

    def put(self, key: str, data: bytes, durable: bool = True) -> None:
        try:
            obstore.put(self.store, self.prefix + key, data)
        except Exception as exc:
            raise self._fault(exc, key) from None

    def put_file(self, key: str, path: str) -> bool:
        """Content-addressed blobs: one HEAD, and no upload at all if the blob is there."""
        try:
            if self.exists(key):
                return False
            size = os.path.getsize(path)
            obstore.put(self.store, self.prefix + key, Path(path),
                        use_multipart=size > PART_SIZE, chunk_size=PART_SIZE,
                        max_concurrency=4)  # fmt: skip
            return True
        except StorageError:
            raise
        except Exception as exc:
            raise self._fault(exc, key) from None
        finally:
            if os.path.exists(path):
                os.unlink(path)

    def get(self, key: str) -> bytes | None:
        try:
            return bytes(obstore.get(self.store, self.prefix + key).bytes())
        except _MISSING as exc:
            _raise_if_no_bucket(exc, self.bucket)
            return None
        except Exception as exc:
            raise self._fault(exc, key) from None

    def open(self, key: str) -> IO[bytes]:
        try:
            result = obstore.get(self.store, self.prefix + key)
        except _MISSING as exc:
            _raise_if_no_bucket(exc, self.bucket)
            raise FileNotFoundError(f"{self.root}/{key}") from None
        except Exception as exc:
            raise self._fault(exc, key) from None
        return io.BufferedReader(_StreamReader(result.stream(min_chunk_size=8 << 20), self, key),
                                 1 << 20)  # fmt: skip

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return obstore.head(self.store, self.prefix + key)
        except _MISSING as exc:
            _raise_if_no_bucket(exc, self.bucket)
            return None
        except Exception as exc:
            raise self._fault(exc, key) from None

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int | None:
        meta = self._head(key)
        return None if meta is None else int(meta["size"])

    def list(self, prefix: str) -> list[str]:
        full = (self.prefix + prefix).rstrip("/")
        try:
            found = obstore.list_with_delimiter(self.store, full or None)
        except _MISSING as exc:
            _raise_if_no_bucket(exc, self.bucket)
            return []
        except Exception as exc:
            raise self._fault(exc, prefix) from None
        names = [p.rstrip("/").rsplit("/", 1)[-1] + "/" for p in found["common_prefixes"]]
        names += [o["path"].rsplit("/", 1)[-1] for o in found["objects"]]
        return names

    def list_all(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, relative to it (one request per 1,000 keys)."""
        full = self.prefix + prefix
        try:
            return [
                obj["path"][len(full) :]
                for batch in obstore.list(self.store, full.rstrip("/") or None, chunk_size=1000)
                for obj in batch
            ]
        except _MISSING as exc:
            _raise_if_no_bucket(exc, self.bucket)
            return []
        except Exception as exc:
            raise self._fault(exc, prefix) from None

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Several objects at once (32 requests in flight); None for a missing one."""
        import asyncio

        async def one(key: str, limit: asyncio.Semaphore) -> bytes | None:
            async with limit:
                try:
                    result = await obstore.get_async(self.store, self.prefix + key)
                    return bytes(await result.bytes_async())
                except _MISSING:
                    return None

        async def all_of() -> list[bytes | None]:
            limit = asyncio.Semaphore(32)
            return list(await asyncio.gather(*(one(k, limit) for k in keys)))

        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop running here: run our own
            try:
                return asyncio.run(all_of())
            except Exception as exc:
                raise self._fault(exc, keys[0] if keys else "") from None
        return [self.get(k) for k in keys]

    def staging_dir(self) -> str:
        return os.environ.get("FLOWKERNEL_S3_STAGING") or tempfile.gettempdir()

    def download(self, key: str) -> str:
        """Stream the object into a temporary file in the staging directory; returns its path."""
        fd, path = tempfile.mkstemp(dir=self.staging_dir(), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, self.open(key) as reader:
                while chunk := reader.read(8 << 20):
                    out.write(chunk)
        except BaseException:
            os.unlink(path)
            raise
        return path


class _StreamReader(io.RawIOBase):
    """A raw reader over obstore's chunk stream (no copy of the whole object)."""

    def __init__(self, stream: Any, owner: S3Direct, key: str):
        self._stream = stream
        self._chunk = memoryview(b"")
        self._owner = owner
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if not self._chunk:
            try:
                self._chunk = memoryview(next(self._stream))
            except StopIteration:
                return 0
            except Exception as exc:
                raise self._owner._fault(exc, self._key) from None
        n = min(len(buf), len(self._chunk))
        buf[:n] = self._chunk[:n]
        self._chunk = self._chunk[n:]
        return n


_CODE = re.compile(r"<Code>([^<]+)</Code>")


def _raise_if_no_bucket(exc: Exception, bucket: str) -> None:
    if "NoSuchBucket" in str(exc):
        raise StorageError(f"S3 bucket '{bucket}' does not exist at {endpoint() or 'AWS'}")


def describe_fault(exc: Exception, bucket: str, key: str) -> str:
    """One line for an S3 failure: what is wrong and where (endpoint, bucket, credentials)."""
    text = str(exc)
    where = endpoint() or "AWS S3"
    code = _CODE.search(text)
    code = code.group(1) if code else ""
    if code == "NoSuchBucket":
        return f"S3 bucket '{bucket}' does not exist at {where}"
    if code in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied") or (
        type(exc).__name__ in ("PermissionDeniedError", "UnauthenticatedError")
    ):
        key_id = os.environ.get("AWS_ACCESS_KEY_ID") or "(none)"
        return (
            f"S3 at {where} refused the credentials for bucket '{bucket}' ({code or 'denied'}; "
            f"AWS_ACCESS_KEY_ID={key_id}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        )
    lowered = text.lower()
    if any(s in lowered for s in ("connection refused", "error sending request", "timed out",
                                  "connect error", "dns error", "connection reset")):  # fmt: skip
        return (
            f"cannot reach the S3 endpoint {where} (bucket '{bucket}', key {key}): {_first(text)}"
        )
    return f"S3 request for {bucket}/{key} at {where} failed: {code or _first(text)}"


def _first(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return line[:300]
