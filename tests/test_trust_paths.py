"""The client and `flow logs` never leave the datastore root: every pathspec component and every
artifact hash is validated, so a crafted pathspec or record cannot name a file outside to read or
unpickle."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import flowkernel.client as client
from flowkernel.datastore import FlowStore
from flowkernel.errors import InvalidPathspecError
from flowkernel.testing_procs import point_client_at

FLOW_BIN = str(Path(sys.executable).parent / "flow")


class _Pwn:
    """Unpickling this writes a marker file: what a datastore you do not trust can do."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "pwned"))


@pytest.fixture
def root(tmp_path: Path):
    """A root with one real run, and next to it an 'outside' tree a crafted pathspec aims at."""
    root = tmp_path / "root"
    store = FlowStore(str(root), "F")
    store.create_run_dir("1")
    store.write_run_record("1", {"run_id": "1", "tags": [], "system_tags": []})
    store.mark_started("1", "start", "1", 0)
    sha, _ = store.save("x", 42)
    store.write_task_record(
        {"run_id": "1", "step": "start", "task_id": "1", "attempt": 0, "artifacts": {"x": sha}}
    )
    outside = tmp_path / "outside"
    (outside / "s" / "1").mkdir(parents=True)
    (outside / "_run.json").write_text(json.dumps({"run_id": "x", "tags": []}))
    marker = tmp_path / "pwned"
    (outside / "evil").write_bytes(pickle.dumps(_Pwn(str(marker))))
    point_client_at(root)  # the suite's autouse restore_client puts the client back
    yield root, store, sha, marker


@pytest.mark.parametrize(
    ("cls", "pathspec"),
    [
        (client.Flow, ".."),
        (client.Run, "F/.."),
        (client.Step, "F/1/.."),
        (client.Task, "F/1/start/.."),
        (client.Task, "F/1/../.."),
        (client.DataArtifact, "../outside/s/1/x"),
        (client.DataArtifact, "F/1/start/1/.."),
        (client.Run, "F/.hidden"),
    ],
)
def test_a_pathspec_component_that_leaves_the_root_is_refused(root, cls, pathspec):
    with pytest.raises(InvalidPathspecError, match=r"invalid (flow|run id|step|task id|artifact)"):
        cls(pathspec)


def test_a_record_naming_a_file_outside_as_an_artifact_is_refused(root):
    _, store, sha, marker = root
    evil = str(marker.parent / "outside" / "evil")
    for bad in ("../../../outside/evil", evil, sha[:2] + "/../" + sha, "G" * 40):
        record = store.read_task_record("1", "start", "1", 0)
        record["artifacts"]["x"] = bad  # a crafted record (records are written once: by hand)
        Path(store.task_dir("1", "start", "1"), "0.record.json").write_text(json.dumps(record))
        task = client.Task("F/1/start/1")
        with pytest.raises(InvalidPathspecError, match="invalid artifact hash"):
            _ = task.data.x
    assert not marker.exists()


def test_an_input_path_in_a_record_cannot_leave_the_run(root):
    _, store, _, _ = root
    with pytest.raises(InvalidPathspecError):
        store.read_task_record("1", "..", "..", 0)
    with pytest.raises(InvalidPathspecError):
        store.task_dir("1", "/etc", "1")


@pytest.mark.parametrize("pathspec", ["../outside/s/1", "../s/1", "F/../outside/s", "F/1/../.."])
def test_flow_logs_refuses_a_pathspec_outside_the_root(root, pathspec):
    rootdir = root[0]
    result = subprocess.run(
        [FLOW_BIN, "--datastore-root", str(rootdir), "logs", pathspec],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and not result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
