"""``flow dump``: a task's artifacts printed, or pickled to a file, as Metaflow's ``dump`` does."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from flowkernel.kernel import Kernel
from flowkernel.testing import run_cli

SURFACE = Path(__file__).parent / "flows" / "mfapi" / "surface_flow.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dump") / "ds"
    return Kernel.discover().run(str(SURFACE), datastore_root=str(root))


def _dump(run, *args: str):
    root = run._root
    return run_cli(["--datastore-root", root, "dump", *args])


def test_prints_every_public_artifact_with_size_and_type(run):
    task = run["start"].task
    result = _dump(run, f"{run.id}/start")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Artifacts of {task.pathspec}:"
    items = next(line for line in lines if line.startswith("items "))
    assert items == f"items [size: {task['items'].size} type: list] = ['x', 'y', 'z']"
    assert not any(line.startswith("_") for line in lines)


def test_private_shows_underscore_artifacts_and_include_limits(run):
    result = _dump(run, f"SurfaceFlow/{run.id}/gather", "--private", "--include", "_hidden,letters")
    assert result.exit_code == 0, result.output
    body = result.stdout.splitlines()[1:]
    assert [line.split(" ")[0] for line in body] == ["_hidden", "letters"]
    assert body[0].endswith("= 'kept but not listed!'")


def test_a_step_dumps_all_its_tasks_and_large_values_are_not_loaded(run):
    result = _dump(run, f"{run.id}/each", "--max-value-size", "20")
    headers = [line for line in result.stdout.splitlines() if line.startswith("Artifacts of ")]
    assert len(headers) == 3
    assert "items [size: " in result.stdout and "= < artifact too large >" in result.stdout
    assert "letter [size: " in result.stdout and "= 'X'" in result.stdout


def test_file_gets_a_pickle_keyed_by_run_step_task(run, tmp_path):
    out = tmp_path / "dump.pkl"
    result = _dump(run, f"{run.id}/each", "--private", "--file", str(out))
    assert result.exit_code == 0, result.output
    data = pickle.loads(out.read_bytes())
    tasks = sorted(run["each"].tasks(), key=lambda t: t.index)
    assert set(data) == {f"{run.id}/each/{t.id}" for t in tasks}
    assert [data[f"{run.id}/each/{t.id}"]["letter"] for t in tasks] == ["X", "Y", "Z"]
    assert data[f"{run.id}/each/{tasks[0].id}"]["_hidden"] == "kept but not listed"
    assert result.stdout == ""  # nothing printed but the note on stderr


def test_python_flow_py_dump_works_like_flow_dump(run, tmp_path):
    result = subprocess.run(
        [sys.executable, str(SURFACE), "--datastore-root", run._root, "dump", f"{run.id}/end"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "sides [size: " in result.stdout and "['left', 'right']" in result.stdout


def test_bad_pathspecs_are_clear_errors(run):
    result = _dump(run, "123")
    assert result.exit_code == 2 and "RUN/STEP" in result.output
    result = _dump(run, f"{run.id}/nosuchstep")
    assert result.exit_code == 1 and "no tasks" in result.output
