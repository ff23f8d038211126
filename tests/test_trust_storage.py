"""Storage faults end in one line naming the file, never a traceback or lost cleanup: damaged
records, a full disk (a small tmpfs), a read-only datastore (a read-only bind mount), blobs that
resume would clone but are gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowkernel import hookimpl

FLOW_BIN = str(Path(sys.executable).parent / "flow")
NEEDED = {"graph_ast", "runtime_local"}

FLOW = textwrap.dedent(
    """
    from flowkernel import FlowSpec, Parameter, step

    class StoreFlow(FlowSpec):
        size = Parameter("size", default=0, help="bytes of the artifact `big`")

        @step
        def start(self):
            self.value = "kept" + " " * 200  # a blob file (smaller values live in records)
            self.big = b"x" * int(self.size)
            self.next(self.end)

        @step
        def end(self):
            print("value", self.value)
    """
)


@pytest.fixture
def flow_file(tmp_path: Path) -> str:
    path = tmp_path / "store_flow.py"
    path.write_text(FLOW)
    return str(path)


def _flow(root: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    return subprocess.run(
        [FLOW_BIN, "--datastore-root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "FLOWKERNEL_USER": "tester"},
        cwd=cwd,
    )


def _run_id(out: str) -> str:
    return out.split("(run-id ", 1)[1].split(")", 1)[0]


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here (mount {' '.join(args)}): {result.stderr.strip()}")


@pytest.fixture
def mounts():
    """Mount points to undo after the test (tmpfs, bind mounts: needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind mount needs root")
    done: list[str] = []
    yield done
    for path in reversed(done):
        subprocess.run(["umount", "-l", path], capture_output=True)


# -- damaged records ----------------------------------------------------------------------------


def test_a_damaged_run_record_is_skipped_in_listings_and_named_elsewhere(tmp_path, flow_file):
    import flowkernel.client as client
    from flowkernel.errors import CorruptRecordError
    from flowkernel.testing_procs import point_client_at

    root = tmp_path / "ds"
    ids = []
    for _ in range(2):
        result = _flow(root, "run", flow_file, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        ids.append(_run_id(result.stdout))
    broken = root / "StoreFlow" / ids[0] / "_run.json"
    broken.write_bytes(b"")
    point_client_at(root)  # the suite's autouse restore_client puts the client back
    assert [r.id for r in client.Flow("StoreFlow")] == [ids[1]]
    with pytest.raises(CorruptRecordError, match=f"corrupt record {broken}: the file is empty"):
        client.Run(f"StoreFlow/{ids[0]}")
    listing = _flow(root, "runs", "StoreFlow", "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    statuses = {r["run_id"]: r["status"] for r in json.loads(listing.stdout)}
    assert statuses == {ids[0]: "broken", ids[1]: "succeeded"}
    resumed = _flow(root, "resume", flow_file, "--origin-run-id", ids[0], cwd=tmp_path)
    assert resumed.returncode == 1
    assert (
        resumed.stderr.strip()
        .splitlines()[-1]
        .endswith(f"corrupt record {broken}: the file is empty")
    )
    assert "Traceback" not in resumed.stderr


def test_resume_refuses_an_origin_with_a_truncated_task_record(tmp_path, flow_file):
    root = tmp_path / "ds"
    result = _flow(root, "run", flow_file, cwd=tmp_path)
    run_id = _run_id(result.stdout)
    (record,) = (root / "StoreFlow" / run_id / "start").glob("*/0.record.json")
    record.write_bytes(record.read_bytes()[:30])
    resumed = _flow(root, "resume", flow_file, cwd=tmp_path)
    assert resumed.returncode == 1
    assert f"corrupt record {record}: not valid JSON" in resumed.stderr
    assert "Traceback" not in resumed.stderr


# -- blobs that resume would clone ----------------------------------------------------------------


def test_resume_runs_again_a_task_whose_artifact_blob_is_gone(tmp_path, flow_file):
    root = tmp_path / "ds"
    result = _flow(root, "run", flow_file, cwd=tmp_path)
    run_id = _run_id(result.stdout)
    (path,) = (root / "StoreFlow" / run_id / "start").glob("*/0.record.json")
    sha = json.loads(path.read_text())["artifacts"]["value"]
    blob = root / "StoreFlow" / "data" / sha[:2] / sha
    blob.unlink()
    resumed = _flow(root, "resume", flow_file, "end", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Cloned from the origin run: nothing" in resumed.stdout
    assert "value kept" in resumed.stdout
    assert blob.exists()  # the start that ran again wrote it back


def test_resume_refuses_when_the_parameters_blob_is_gone(tmp_path, flow_file):
    root = tmp_path / "ds"
    result = _flow(root, "run", flow_file, cwd=tmp_path)
    run_id = _run_id(result.stdout)
    (path,) = (root / "StoreFlow" / run_id / "_parameters").glob("*/0.record.json")
    sha = json.loads(path.read_text())["artifacts"]["_graph_info"]  # a blob file, not inline
    blob = root / "StoreFlow" / "data" / sha[:2] / sha
    blob.unlink()
    resumed = _flow(root, "resume", flow_file, cwd=tmp_path)
    assert resumed.returncode == 1
    assert f"the data file {blob} of its parameters is missing or damaged" in resumed.stderr
    assert len(resumed.stderr.strip().splitlines()) == 1, resumed.stderr


# -- a full disk, a read-only datastore --------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.finished: list = []

    @hookimpl
    def flowkernel_run_finished(self, run, result):
        self.finished.append(result)


def test_a_full_disk_fails_the_run_with_one_line_fires_the_hooks_and_leaves_no_temp_files(
    tmp_path, flow_file, mounts, kernel_factory
):
    from importlib.metadata import entry_points

    from flowkernel.kernel import ENTRY_POINT_GROUP

    if not {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} >= NEEDED:
        pytest.skip("needs the graph_ast and runtime_local plugins installed")
    small = tmp_path / "small"
    small.mkdir()
    _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small))
    mounts.append(str(small))
    recorder = Recorder()
    kernel = kernel_factory(plugins=[recorder], load_entrypoints=True, only=NEEDED)
    run = kernel.run(flow_file, datastore_root=str(small), quiet=True, size=8 << 20)
    assert not run.successful
    (result,) = recorder.finished
    assert not result.success
    exception = run["start"].task.exception
    assert exception.exception.startswith("no space left on device at ")
    assert str(small) in exception.exception
    assert "Cannot pickle" not in exception.exception
    leftovers = [p for p in small.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name]
    assert leftovers == []


def test_a_read_only_datastore_is_one_line_naming_the_root(tmp_path, flow_file, mounts):
    root = tmp_path / "ro"
    root.mkdir()
    _mount("--bind", str(root), str(root))
    mounts.append(str(root))
    _mount("-o", "remount,ro,bind", str(root))
    result = _flow(root, "run", flow_file, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Storage error: the datastore root {root} is not writable: ")
    assert "read-only file system" in lines[0]
