"""Data integrity: artifacts verified on read, damaged blobs replaced on save, foreach inputs the
engine refuses (a dict, a huge or endless iterable), records made durable before the rename."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

FLOW = rh.flow_file("integrity.py")


def _blob(world: rh.Env, run_id: str, step: str, name: str) -> Path:
    (record,) = world.records("IntegrityFlow", run_id, step)
    sha = record["artifacts"][name]
    return world.root / "IntegrityFlow" / "data" / sha[:2] / sha


def _flip_bit(path: Path, offset: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_damaged_artifact_is_refused_by_the_client_naming_artifact_task_and_file(world):
    result = world.flow("run", FLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = rh.run_id_of(result.stdout)
    blob = _blob(world, run_id, "start", "value")
    _flip_bit(blob)
    from flowkernel.errors import CorruptArtifactError

    task = world.client().Run(f"IntegrityFlow/{run_id}")["start"].task
    with pytest.raises(CorruptArtifactError) as info:
        _ = task["value"].data
    message = str(info.value)
    assert "artifact 'value'" in message
    assert f"IntegrityFlow/{run_id}/start/" in message
    assert str(blob) in message
    assert "corrupt" in message


def test_a_truncated_or_deleted_blob_is_named(world):
    from flowkernel.errors import CorruptArtifactError

    result = world.flow("run", FLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = rh.run_id_of(result.stdout)
    blob = _blob(world, run_id, "start", "value")
    client = world.client()
    blob.write_bytes(blob.read_bytes()[:50])
    with pytest.raises(CorruptArtifactError, match=r"artifact 'value' of task .* is corrupt"):
        _ = client.Run(f"IntegrityFlow/{run_id}")["end"].task.data.value
    blob.unlink()
    with pytest.raises(CorruptArtifactError, match=f"is missing: its data file {blob} does not"):
        _ = client.Run(f"IntegrityFlow/{run_id}")["end"].task.data.value


@pytest.mark.parametrize(
    "blob_mb, offset",
    [(0, -20), (20, 12_345_678)],
    ids=["small", "20 MB hashed beside the read, damaged in its second chunk"],
)
def test_a_task_reading_a_damaged_artifact_fails_naming_it_and_a_new_run_repairs_it(
    world, blob_mb, offset
):
    from flowkernel.errors import CorruptArtifactError

    proc = world.start("run", FLOW, "--hold", "true", "--blob_mb", str(blob_mb))
    rh.wait_for(lambda: world.executions("body"), what="the foreach body to start")
    run1 = rh.run_id_of(rh.console(proc)[0])
    blob = _blob(world, run1, "start", "value")
    good = blob.read_bytes()
    _flip_bit(blob, offset)
    world.release()
    code, out, err = rh.communicate(proc)
    # `end` reads `value` (inherited from start) through the damaged blob
    assert code == 1, out + err
    logs = world.client().Run(f"IntegrityFlow/{run1}")["end"].task.stderr
    assert f"artifact 'value' of task IntegrityFlow/{run1}/join/" in logs
    assert str(blob) in logs and "corrupt" in logs
    # a new run saves the same value: the damaged blob with its name is replaced, not trusted
    second = world.flow("run", FLOW, "--blob_mb", str(blob_mb))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "payload hello seen [1, 2]" in second.stdout
    assert blob.read_bytes() == good
    client = world.client()
    assert client.Run(f"IntegrityFlow/{run1}")["start"].task.data.value["payload"] == "hello"
    _flip_bit(blob, offset)
    with pytest.raises(CorruptArtifactError):
        _ = client.Run(f"IntegrityFlow/{run1}")["start"].task.data.value


def test_save_replaces_a_damaged_large_blob(tmp_path):
    """The streamed (spilled to disk) save path verifies an existing blob too, and repairs it
    without holding a second copy of the value in memory."""
    import tracemalloc

    from flowkernel.datastore import FlowStore

    store = FlowStore(str(tmp_path), "F")
    value = os.urandom(6 << 20)
    sha, size = store.save("big", value)
    path = Path(store.blob_path(sha))
    _flip_bit(path, 1000)
    tracemalloc.start()
    try:
        assert store.save("big", value) == (sha, size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(value) // 2
    assert store.load(sha, "big") == value
    assert not [p for p in path.parent.parent.rglob("*.tmp")]


def test_a_value_hashed_on_a_second_thread_keeps_its_sha_and_is_verified(tmp_path):
    """Past 8 MB the hash runs beside the write: same content address, and a bit flipped far
    into the blob is still refused on read."""
    import hashlib
    import pickle

    from flowkernel.datastore import PICKLE_PROTOCOL, FlowStore
    from flowkernel.errors import CorruptArtifactError

    store = FlowStore(str(tmp_path), "F")
    value = os.urandom(20 << 20)
    sha, size = store.save("big", value)
    expected = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
    assert (sha, size) == (hashlib.sha1(expected).hexdigest(), len(expected))
    assert store.load(sha, "big") == value
    _flip_bit(Path(store.blob_path(sha)), 17 << 20)
    with pytest.raises(CorruptArtifactError, match="artifact 'big' is corrupt"):
        store.load(sha, "big")


def test_a_large_blob_damaged_in_its_last_chunk_or_truncated_is_refused(tmp_path):
    """The read fills the value in 8 MB chunks and hashes them on a second thread: the
    partial last chunk is hashed too, and a short file is caught."""
    from flowkernel.datastore import FlowStore
    from flowkernel.errors import CorruptArtifactError

    store = FlowStore(str(tmp_path), "F")
    value = os.urandom((17 << 20) + 12_345)
    sha, _ = store.save("big", value)
    path = Path(store.blob_path(sha))
    good = path.read_bytes()
    assert store.load(sha, "big") == value
    _flip_bit(path, -100)
    with pytest.raises(CorruptArtifactError, match="artifact 'big' is corrupt"):
        store.load(sha, "big")
    path.write_bytes(good[: (9 << 20) + 7])
    with pytest.raises(CorruptArtifactError, match="artifact 'big' is corrupt"):
        store.load(sha, "big")


def test_a_read_failing_midway_propagates_and_leaves_no_hashing_thread():
    import hashlib
    import threading

    from flowkernel.storage.largeio import PARALLEL_HASH, readinto_hashing

    calls = []

    def readinto(view):
        calls.append(len(view))
        if len(calls) == 3:
            raise OSError("disk gone")
        view[:] = b"a" * len(view)
        return len(view)

    before = threading.active_count()
    buf = bytearray(4 * PARALLEL_HASH)
    with pytest.raises(OSError, match="disk gone"):
        readinto_hashing(readinto, memoryview(buf), hashlib.sha1())
    assert calls == [PARALLEL_HASH] * 3
    assert threading.active_count() == before
    sha = hashlib.sha1()
    assert readinto_hashing(lambda v: 0, memoryview(buf), sha) == 0
    assert sha.hexdigest() == hashlib.sha1().hexdigest()


def test_foreach_over_a_dict_fails_the_step_clearly(world):
    result = world.flow("run", FLOW, "--shape", "dict")
    assert result.returncode == 1, result.stdout + result.stderr
    run_id = rh.run_id_of(result.stdout)
    stderr = world.client().Run(f"IntegrityFlow/{run_id}")["start"].task.stderr
    assert "the foreach variable self.items is a dict" in stderr
    assert "list(self.items.items())" in stderr
    assert world.records("IntegrityFlow", run_id, "body") == []


@pytest.mark.parametrize("shape", ["huge_range", "endless"])
def test_a_huge_or_endless_foreach_is_refused_before_it_is_materialised(world, shape):
    proc = world.start("run", FLOW, "--shape", shape, "--max-num-splits", "100")
    peak = 0
    while proc.poll() is None:
        for p in [psutil.Process(proc.pid), *rh.descendants(proc.pid)]:
            try:
                peak = max(peak, p.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(0.02)
    code, out, err = rh.communicate(proc)
    assert code == 1, out + err
    run_id = rh.run_id_of(out)
    stderr = world.client().Run(f"IntegrityFlow/{run_id}")["start"].task.stderr
    if shape == "huge_range":
        assert "Foreach in step 'start' yielded 1000000000000 child steps, more than the " in stderr
        assert "maximum of 100; raise it with --max-num-splits" in stderr
    else:
        assert (
            "Foreach in step 'start' over self.items yielded more than the maximum of 100 "
            in stderr
        )
    assert peak < 500 * 1024 * 1024  # nothing near 10**12 elements was built


def test_records_are_fsynced_file_and_directory_before_and_after_the_rename(tmp_path, monkeypatch):
    from flowkernel import datastore

    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(datastore.os, "fsync", spy)
    store = datastore.FlowStore(str(tmp_path), "F")
    record = {"run_id": "1", "step": "s", "task_id": "2", "attempt": 0, "ok": True}
    store.mark_started("1", "s", "2", 0)
    store.write_task_record(record)
    tdir = os.path.join(store.task_dir("1", "s", "2"))
    assert len(synced) == 2
    assert synced[0].startswith(os.path.join(tdir, "0.record.json.")) and synced[0].endswith(".tmp")
    assert synced[1] == tdir
    assert json.loads(Path(tdir, "0.record.json").read_text()) == record
    synced.clear()
    store.write_run_record("1", {"run_id": "1"})
    assert synced[-1] == store.run_dir("1")


def test_resume_runs_a_foreach_step_again_whose_item_chunk_is_damaged(world):
    """The chunks a foreach step's children read self.input from are verified like artifacts:
    resume does not clone a foreach task whose chunk is damaged; it runs it again, which
    repairs the chunk, and the children get their items."""
    flow = str(Path(__file__).resolve().parent / "flows" / "foreach_chunks_flow.py")
    first = world.flow("run", flow, "--max-workers", "4")
    assert first.returncode == 0, first.stdout + first.stderr
    (start,) = world.records("ForeachChunksFlow", rh.run_id_of(first.stdout), "start")
    sha = start["foreach_chunks"][3][0]  # 64 items: a blob file (the last chunk is inline)
    blob = world.root / "ForeachChunksFlow" / "data" / sha[:2] / sha
    _flip_bit(blob)
    resumed = world.flow("resume", flow, "body", "--max-workers", "4")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Cloned from the origin run: nothing" in resumed.stdout
    run = world.client().Run(f"ForeachChunksFlow/{rh.run_id_of(resumed.stdout)}")
    seen = run["join"].task.data.seen
    expected = [i if i % 3 else (f"s{i}", i * 0.5, None) for i in range(64)]
    expected[3] = "own"  # the task that reassigns the variable (foreach_chunks_flow.py)
    assert [s[1] for s in seen[:64]] == expected
    assert not run["start"].task.origin_pathspec  # ran again, not cloned


def test_a_run_with_a_large_artifact_leaves_no_process_behind(world):
    """start saves 40 MB, end reads it back (verified): both tasks leave their memory to a
    helper as they exit (flowkernel.engine.forkchild); the run's result is unchanged and the
    fork server's kill of each task's group ends the helpers."""
    from flowkernel.engine.forkchild import EXIT_HELPER_MIN

    mb = EXIT_HELPER_MIN // 1_000_000 + 8
    result = world.flow("run", FLOW, "--blob_mb", str(mb))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "payload hello seen [1, 2]" in result.stdout
    rh.assert_all_gone([], world.tag)
