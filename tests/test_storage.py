"""The storage backend contract, the local backend, and how a root picks its backend."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from flowkernel.datastore import FlowStore
from flowkernel.storage import LocalBackend, normalize_root, open_backend, root_scheme
from flowkernel.testing import check_storage_backend


def test_local_backend_keeps_the_contract(tmp_path):
    check_storage_backend(LocalBackend(str(tmp_path)))
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_a_reader_never_sees_a_partial_write_once_object(tmp_path):
    """Records are read while tasks write them: a key is absent or whole, never partial."""
    backend = LocalBackend(str(tmp_path))
    data = os.urandom(1 << 20)
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            for i in range(20):
                value = backend.get(f"r/{i}")
                if value is not None:
                    seen.append(len(value))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20):
            assert backend.put_once(f"r/{i}", data, durable=False) is True
            assert backend.put_once(f"r/{i}", b"again", durable=False) is False
    finally:
        done.set()
        reader.join()
    assert set(seen) <= {len(data)}
    assert sorted(os.listdir(tmp_path / "r"), key=int) == [str(i) for i in range(20)]


def test_root_normalization(tmp_path):
    assert normalize_root("rel", cwd=str(tmp_path)) == str(tmp_path / "rel")
    assert normalize_root(f"file://{tmp_path}/x") == str(tmp_path / "x")
    assert normalize_root("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert root_scheme("S3://b") == "s3" and root_scheme("/a/b") == "file"
    assert root_scheme("C://x") == "file"  # one letter: a Windows drive, not a scheme


def test_flowstore_records_are_write_once(tmp_path):
    store = FlowStore(str(tmp_path), "F")
    assert store.create_run_dir("1") and not store.create_run_dir("1")
    record = {"run_id": "1", "step": "s", "task_id": "2", "attempt": 0, "x": 1}
    assert store.write_task_record(record) is True
    assert store.write_task_record({**record, "x": 2}) is False
    assert store.read_task_record("1", "s", "2", 0)["x"] == 1
    assert store.run_ids() == ["1"] and store.step_names("1") == ["s"]
    assert store.task_ids("1", "s") == ["2"] and store.latest_attempt("1", "s", "2") == 0


def test_a_started_attempt_is_seen_before_its_record(tmp_path):
    """Attempt 0 starts as its task directory (one mkdir, no file), a retry as ``<k>.started``;
    readers see both as started and never fall back to an earlier attempt while one runs."""
    from flowkernel.client import Task
    from flowkernel.engine.records import RunRecord

    store = FlowStore(str(tmp_path), "F")
    store.create_run_dir("1")
    RunRecord(flow="F", run_id="1", user="u").write(store)
    store.mark_started("1", "s", "2", 0)
    assert os.listdir(store.task_dir("1", "s", "2")) == []
    assert store.task_ids("1", "s") == ["2"] and store.latest_attempt("1", "s", "2") == 0
    running = Task("F/1/s/2", _namespace_check=False, _root=str(tmp_path))
    assert running.current_attempt == 0 and not running.finished
    record = {"run_id": "1", "step": "s", "task_id": "2", "attempt": 0, "task_ok": False}
    assert store.write_task_record(record)
    store.mark_started("1", "s", "2", 1)
    assert os.path.exists(os.path.join(store.task_dir("1", "s", "2"), "1.started"))
    assert store.latest_attempt("1", "s", "2") == 1
    assert store.latest_record("1", "s", "2") is None  # the retry runs: no fallback
    old = store.task_dir("1", "s", "3")  # a run written before: attempt 0 left 0.started
    os.makedirs(old)
    open(os.path.join(old, "0.started"), "w").close()
    assert store.latest_attempt("1", "s", "3") == 0
    assert store.latest_attempt("1", "s", "4") is None


def test_a_small_artifact_lives_in_the_records_that_hold_it(tmp_path):
    """A pickle of at most INLINE_MAX bytes makes no blob file: it is written inline in each
    record that holds it, loadable by any process that read such a record, and verified."""
    import base64
    import pickle

    from flowkernel import datastore
    from flowkernel.errors import CorruptArtifactError

    store = FlowStore(str(tmp_path), "F")
    sha, size = store.save("y", 7)
    assert size <= datastore.INLINE_MAX and not os.path.exists(store.blob_path(sha))
    bad_sha, _ = store.save("z", 8)
    record = {"run_id": "1", "step": "s", "task_id": "2", "attempt": 0, "artifacts": {"y": sha}}
    assert store.write_task_record(record)
    bad = {**record, "task_id": "3", "artifacts": {"z": bad_sha}}
    bad["inline"] = {bad_sha: base64.b64encode(pickle.dumps(9, protocol=5)).decode()}
    saved = dict(datastore._INLINE)
    datastore._INLINE.clear()  # another process: it knows what the records it read tell it
    try:
        with pytest.raises(CorruptArtifactError, match="is missing"):
            store.load(sha, "y")
        assert store.read_task_record("1", "s", "2", 0)["inline"] == {
            sha: base64.b64encode(pickle.dumps(7, protocol=5)).decode()
        }
        assert store.load(sha, "y") == 7 and store.blob_size(sha) == size
        assert store.damaged_blob([sha], {}) is None
        store.write_task_record(bad)  # a record whose inline copy was damaged
        datastore._INLINE.clear()
        store.read_task_record("1", "s", "3", 0)
        with pytest.raises(CorruptArtifactError, match="inline in its task record"):
            store.load(bad_sha, "z")
    finally:
        datastore._INLINE.update(saved)


def test_large_artifact_streams_through_staging(tmp_path):
    store = FlowStore(str(tmp_path), "F")
    value = os.urandom(3 << 20)
    sha, size = store.save("big", value)
    assert store.save("big", value) == (sha, size)  # dedup: same content, same blob
    assert store.load(sha) == value and store.blob_size(sha) == size
    assert not os.listdir(open_backend(str(tmp_path)).staging_dir())


def test_unknown_scheme_is_exit_2_naming_the_plugin(tmp_path):
    flow = os.path.join(os.path.dirname(__file__), "flows", "shapes", "linear.py")
    env = {**os.environ, "FLOWKERNEL_DISABLE_PLUGINS": "storage_s3"}
    for root in ("s3://bucket/prefix", "gcs://bucket/p"):
        proc = subprocess.run(
            [sys.executable, "-m", "flowkernel.cli", "--datastore-root", root, "run", flow],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        hint = "flowkernel-storage-s3" if root.startswith("s3") else "gcs:// storage"
        assert hint in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / ".flowkernel").exists()


def test_client_metadata_takes_a_root(tmp_path, monkeypatch):
    from flowkernel import client

    old = client._root
    try:
        assert client.metadata(f"local@{tmp_path}") == str(tmp_path)
        assert client.get_metadata() == f"local@{tmp_path}"
        assert client.metadata("s3://bucket/p/") == "s3://bucket/p"
        assert client.get_metadata() == "s3://bucket/p"
        monkeypatch.setenv("FLOWKERNEL_DATASTORE_ROOT", str(tmp_path / "default"))
        assert client.default_metadata() == f"local@{tmp_path / 'default'}"  # metadata() undone
    finally:
        client._root = old


@pytest.mark.parametrize("how", ["env", "option"])
def test_root_from_env_or_option(tmp_path, how):
    flow = os.path.join(os.path.dirname(__file__), "flows", "shapes", "linear.py")
    root = tmp_path / "elsewhere"
    env = dict(os.environ)
    args = [sys.executable, "-m", "flowkernel.cli"]
    if how == "env":
        env["FLOWKERNEL_DATASTORE_ROOT"] = str(root)
    else:
        args += ["--datastore-root", str(root)]
    proc = subprocess.run([*args, "run", flow], capture_output=True, text=True, cwd=tmp_path,
                          env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (root / "LinearFlow" / "latest_run").exists()
    assert not (tmp_path / ".flowkernel").exists()


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -7,
        2**70,
        10**200,
        1.5,
        float("inf"),
        2j,
        "",
        "s",
        "é" * 40,
        "x" * 129,
        "y" * 5000,
        b"",
        b"b" * 200,
    ],
    ids=repr,
)
def test_a_scalar_is_stored_under_the_hash_of_its_pickle_whatever_its_size(tmp_path, value):
    """Scalars take a shorter way into the store (one pickle call, no streaming writer); their
    hash is still the sha1 of the same pickle, inline or in a blob by its size as for any
    value, and they read back equal."""
    import hashlib
    import pickle

    from flowkernel import datastore

    store = FlowStore(str(tmp_path), "F")
    data = pickle.dumps(value, protocol=datastore.PICKLE_PROTOCOL)
    sha, size = store.save("v", value)
    assert (sha, size) == (hashlib.sha1(data).hexdigest(), len(data))
    assert os.path.exists(store.blob_path(sha)) == (size > datastore.INLINE_MAX)
    loaded = store.load(sha, "v")
    assert loaded == value or (value != value and loaded != loaded)
    assert type(loaded) is type(value)
    assert store.save("v", value, verified=sha) == (sha, size)


def test_records_are_encoded_as_json_dumps_encodes_them():
    """The record encoder made once at import writes what ``json.dumps`` with the compact
    separators writes (unicode escaped, floats as repr, key order kept)."""
    import json

    from flowkernel.datastore import _dump_json

    record = {
        "flow": "F", "run_id": "1", "step": "s", "task_id": "2", "attempt": 0, "success": True,
        "artifacts": {"é": "ab" * 20}, "info": {"x": {"size": 5, "type": "int"}},
        "input_paths": ["a/1/0"], "split_index": None, "foreach_stack": [["s", "v", 3, 1, None]],
        "started_at": 1733212345.123456, "finished_at": 1e300, "nan": float("nan"),
        "text": "line\nbreak \"quoted\" \u2603 \U0001f600", "nested": [[], {}, [1, [2.5, None]]],
    }  # fmt: skip
    assert _dump_json(record) == json.dumps(record, separators=(",", ":")).encode()
    with pytest.raises(TypeError, match="not JSON serializable"):
        _dump_json({"x": object()})
