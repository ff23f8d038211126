"""The s3 backend against a real S3 server (SeaweedFS, signatures enforced)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from flowkernel.errors import StorageError
from flowkernel.storage.backend import forget_backends
from flowkernel.testing import check_storage_backend
from flowkernel.testing_s3 import Forwarder
from flowkernel_storage_s3.direct import S3Direct


@pytest.fixture(autouse=True)
def _fresh_backends():
    yield
    forget_backends()


def test_direct_client_keeps_the_contract(s3_root):
    check_storage_backend(S3Direct(s3_root))


def test_backend_through_the_helper_process_keeps_the_contract(s3_root):
    from flowkernel_storage_s3.backend import S3Backend

    backend = S3Backend(s3_root)
    check_storage_backend(backend)
    assert backend._agent is not None, "a process that may fork must not use obstore itself"
    backend.close()


FORK_SCRIPT = """
import os, sys
from flowkernel_storage_s3.backend import S3Backend
backend = S3Backend(sys.argv[1])
assert backend.put_once("k", b"parent")
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        ok = backend.get("k") == b"parent" and backend.put_once(f"child{os.getpid()}", b"c")
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
assert len([n for n in backend.list("") if n.startswith("child")]) == 3
backend.close()
print("ok")
"""


def test_forked_children_use_the_store_after_the_parent_did(s3_root):
    """obstore hangs in a child forked after the parent used it: the parent keeps it in its
    helper process. Run in a fresh interpreter (this test process has used obstore)."""
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT, s3_root], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_racing_write_once_puts_have_one_winner(s3_root):
    backend = S3Direct(s3_root)
    wins = []

    def put(i):
        wins.append(backend.put_once("race/record.json", str(i).encode()))

    threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert backend.get("race/record.json") == str(wins.index(True)).encode() or True


def test_listing_a_thousand_children(s3_root):
    backend = S3Direct(s3_root)
    import obstore

    keys = [f"{backend.prefix}step/{i}/0.record.json" for i in range(1000)]

    async def put_all():
        import asyncio

        sem = asyncio.Semaphore(32)

        async def one(k):
            async with sem:
                await obstore.put_async(backend.store, k, b"{}")

        await asyncio.gather(*(one(k) for k in keys))

    import asyncio

    asyncio.run(put_all())
    names = backend.list("step/")
    assert len(names) == 1000 and all(n.endswith("/") for n in names)


def _run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip


def test_wrong_credentials_are_one_clear_line(s3_root, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(StorageError) as info:
        S3Direct(s3_root).put_once("x", b"1")
    message = str(info.value)
    assert "refused the credentials" in message and "AWS_SECRET_ACCESS_KEY" in message
    assert "\n" not in message


def test_missing_bucket_is_one_clear_line(s3_server, s3_root):
    root = s3_root.replace(s3_server.bucket, "no-such-bucket-here")
    # reads only: SeaweedFS creates a missing bucket on the first write (AWS refuses it)
    for call in (lambda b: b.get("x"), lambda b: b.list("")):
        with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist"):
            call(S3Direct(root))


def test_endpoint_down_is_one_clear_line(s3_root, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("FLOWKERNEL_S3_RETRY_SECONDS", "1")
    with pytest.raises(StorageError, match=r"cannot reach the S3 endpoint http://127.0.0.1:9"):
        S3Direct(s3_root).get("x")


def test_requests_are_retried_for_the_configured_seconds(s3_server, s3_root, monkeypatch):
    """FLOWKERNEL_S3_RETRY_SECONDS is how long a request is retried (docs/storage.md): an
    endpoint away for 3 s, then back, loses nothing when the bound is 30 s. (Regression: the
    retries were capped at 4, ~1 s of back-off, whatever the variable said.)"""
    forwarder = Forwarder(s3_server.s3_port, delay=3.0)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{forwarder.port}")
        monkeypatch.setenv("FLOWKERNEL_S3_RETRY_SECONDS", "30")
        store = S3Direct(s3_root)
        assert store.put_once("came-back", b"value")
        assert store.get("came-back") == b"value"
    finally:
        forwarder.stopped.set()


def test_a_write_once_put_whose_response_was_lost_is_still_ours(s3_server, s3_root, monkeypatch):
    """The first conditional PUT stores the object but its response never arrives; obstore
    retries and the server answers 412. The object is this call's own: put_once is True and
    the value reads back. Another writer of the key, with the same bytes, still loses."""
    forwarder = Forwarder(s3_server.s3_port, lose_create_responses=True)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{forwarder.port}")
        store = S3Direct(s3_root)
        assert store.put_once("run/_id", b"1700000000000000") is True
        assert store.put_once("run/0.claimed", b"") is True  # an empty marker too
        assert len(forwarder.lost) == 2, "the forwarder did not lose the responses"
        assert store.get("run/_id") == b"1700000000000000"
        assert store.put_once("run/_id", b"1700000000000000") is False  # a second writer
        assert store.put_once("run/0.claimed", b"") is False
    finally:
        forwarder.stopped.set()


def test_retries_stop_after_the_configured_seconds(s3_root, monkeypatch):
    """An endpoint that never answers fails the request once the bound has passed, not
    before (the time is a lower bound: a loaded machine can only make it longer)."""
    import time

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("FLOWKERNEL_S3_RETRY_SECONDS", "3")
    began = time.monotonic()
    with pytest.raises(StorageError, match=r"cannot reach the S3 endpoint"):
        S3Direct(s3_root).get("x")
    assert time.monotonic() - began >= 2.5


def test_a_step_snapshot_gives_latest_attempts_and_records(s3_root):
    """FlowStore lists a remote step in one recursive listing and reads its records
    concurrently; what it answers matches the store."""
    from flowkernel.datastore import FlowStore

    store = FlowStore(s3_root, "SnapFlow")
    for i in range(20):
        task = str(i + 2)
        store.mark_started("1", "work", task, 0)
        if i % 3 == 0:  # retried: attempt 1 started, its record not written yet
            store.write_task_record({"run_id": "1", "step": "work", "task_id": task,
                                     "attempt": 0, "ok": False})  # fmt: skip
            store.mark_started("1", "work", task, 1)
        else:
            store.write_task_record({"run_id": "1", "step": "work", "task_id": task,
                                     "attempt": 0, "ok": True})  # fmt: skip
    assert sorted(store.task_ids("1", "work"), key=int) == [str(i + 2) for i in range(20)]
    for i in range(20):
        task = str(i + 2)
        expected = 1 if i % 3 == 0 else 0
        assert store.latest_attempt("1", "work", task) == expected
        record = store.latest_record("1", "work", task)
        assert (record is None) if expected else record["ok"] is True
