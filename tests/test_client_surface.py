"""The client's whole surface, attribute by attribute, as Metaflow's client offers it
(reference: metaflow-behaviour.md §4.5), over real runs: a foreach and a static split, a
@parallel gang, and a resumed run."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flowkernel import DataArtifact, Flow, Run, Step, Task, namespace
from flowkernel.client import metadata
from flowkernel.kernel import Kernel

FLOWS = Path(__file__).parent / "flows"

#: Every attribute the reference lists, by object (the common ones apply to all five).
COMMON = [
    "id",
    "pathspec",
    "path_components",
    "parent",
    "tags",
    "user_tags",
    "system_tags",
    "created_at",
    "origin_pathspec",
]
SURFACE = {
    Flow: ["latest_run", "latest_successful_run", "runs"],
    Run: [
        "steps", "data", "successful", "finished", "finished_at", "end_task", "code", "trigger",
        "add_tag", "add_tags", "remove_tag", "remove_tags", "replace_tag", "replace_tags",
    ],
    Step: ["task", "tasks", "control_task", "control_tasks", "finished_at", "parent_steps",
           "child_steps"],
    Task: [
        "data", "artifacts", "successful", "finished", "exception", "finished_at", "index",
        "stdout", "stderr", "stdout_size", "stderr_size", "loglines", "metadata",
        "metadata_dict", "current_attempt", "runtime_name", "parent_tasks", "child_tasks",
        "code", "environment_info",
    ],
    DataArtifact: ["data", "size", "sha", "finished_at"],
}  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("surface") / "ds")


@pytest.fixture(scope="module")
def surface_run(root):
    return Kernel.discover().run(str(FLOWS / "mfapi/surface_flow.py"), datastore_root=root)


@pytest.fixture(autouse=True)
def _global_namespace(root):
    metadata(root)
    namespace(None)
    yield
    from flowkernel import client

    client._root = None
    client._namespace = client._UNSET


def _objects(run: Run) -> dict[type, object]:
    task = run["start"].task
    return {
        Flow: Flow(run.path_components[0]),
        Run: run,
        Step: run["start"],
        Task: task,
        DataArtifact: task["items"],
    }


def test_every_listed_attribute_exists_on_every_object(surface_run):
    missing = []
    for cls, obj in _objects(surface_run).items():
        for name in COMMON + SURFACE[cls]:
            try:
                getattr(obj, name)
            except AttributeError as exc:
                missing.append(f"{cls.__name__}.{name}: {exc}")
    assert not missing


def test_times_are_datetimes_in_order(surface_run):
    run = surface_run
    task = run["each"].task
    stamps = [run.created_at, run.finished_at, run["each"].created_at, task.created_at]
    stamps += [task.finished_at, task["letter"].finished_at, Flow("SurfaceFlow").created_at]
    assert all(isinstance(t, datetime) for t in stamps)
    assert run.created_at <= run["each"].created_at <= task.finished_at <= run.finished_at


def test_parents_lead_back_to_the_flow(surface_run):
    artifact = surface_run["each"].task["letter"]
    chain = []
    obj = artifact
    while obj is not None:
        chain.append(type(obj).__name__)
        obj = obj.parent
    assert chain == ["DataArtifact", "Task", "Step", "Run", "Flow"]
    assert artifact.parent.parent.parent == surface_run


def test_parent_and_child_tasks_agree_across_the_run(surface_run):
    tasks = [t for step in surface_run for t in step]
    for task in tasks:
        for child in task.child_tasks:
            assert task in child.parent_tasks, (task, child)
        for parent in task.parent_tasks:
            assert task in parent.child_tasks, (task, parent)
    start = surface_run["start"].task
    assert sorted(t.index for t in start.child_tasks) == [0, 1, 2]
    assert start.parent_tasks == []
    assert len(surface_run["gather"].task.parent_tasks) == 3
    assert [s.id for s in surface_run["fork"].child_steps] == ["left", "right"]
    assert [s.id for s in surface_run["meet"].parent_steps] == ["left", "right"]


def test_metadata_entries_and_their_latest_values(surface_run):
    task = surface_run["start"].task
    names = {m.name for m in task.metadata}
    assert {"attempt", "attempt_ok", "origin-run-id", "runtime", "user"} <= names
    assert all(isinstance(m.created_at, int) and m.type for m in task.metadata)
    meta = task.metadata_dict
    assert meta["attempt"] == "0" and meta["attempt_ok"] == "True"
    assert meta["origin-run-id"] == "None" and meta["runtime"] == "dev"
    assert task.runtime_name == "dev"
    assert task.environment_info["type"] == "local"
    assert task.code is None and surface_run.code is None


def test_loglines_are_lines_with_the_utc_time_each_arrived(surface_run):
    task = surface_run["start"].task
    out = list(task.loglines("stdout"))
    assert [line for _, line in out] == ["starting", "started"]
    assert all(stamp.tzinfo == timezone.utc for stamp, _ in out)
    (first, _), (second, _) = out
    assert second - first >= timedelta(seconds=0.15)  # each line has its own time
    began = task.created_at.astimezone(timezone.utc)
    next_step = surface_run["each"].created_at.astimezone(timezone.utc)
    assert began <= first <= second <= next_step
    assert [line for _, line in task.loglines("stderr")] == ["a warning"]
    assert task.stdout_size == len("starting\nstarted\n")
    assert task.stderr_size == len("a warning\n")
    with pytest.raises(ValueError):
        list(task.loglines("stdlog"))


def test_underscore_artifacts_persist_but_are_hidden(surface_run):
    start = surface_run["start"].task
    assert start["_hidden"].data == "kept but not listed"
    assert "_hidden" not in start.data
    with pytest.raises(AttributeError):
        start.data._hidden  # noqa: B018
    assert all(not a.id.startswith("_") for a in start)
    assert "_hidden" not in start.artifacts._fields
    assert start.artifacts.items.data == ["x", "y", "z"]
    # passed down the foreach and read through a join's inputs
    assert surface_run["gather"].task["_hidden"].data == "kept but not listed!"


def test_control_tasks_of_a_parallel_step(root):
    run = Kernel.discover().run(str(FLOWS / "shapes/parallel.py"), datastore_root=root)
    train = run["train"]
    controls = list(train.control_tasks())
    assert len(controls) == 1 and "_node_" not in controls[0].id
    assert train.control_task == controls[0]
    assert len(list(train.tasks())) == 4
    control = controls[0]  # node 0 is the control task and the first mapper
    assert control["_control_task_is_mapper_zero"].data is True
    assert control["_control_mapper_tasks"].data == [
        f"{run.id}/train/{control.id}{node}" for node in ("", "_node_1", "_node_2", "_node_3")
    ]
    assert list(run["start"].control_tasks()) == []


def test_origin_pathspecs_of_a_resumed_run(tmp_path, clean_env):
    flow = str(FLOWS / "runner/failing_flow.py")
    env = clean_env(FLOWKERNEL_DATASTORE_ROOT=str(tmp_path / "ds"))
    cli = [sys.executable, "-m", "flowkernel.cli"]
    first = subprocess.run([*cli, "run", flow], env=env, capture_output=True, cwd=tmp_path)
    assert first.returncode == 1
    fixed = {**env, "FIXED": "1"}
    second = subprocess.run([*cli, "resume", flow], env=fixed, capture_output=True, cwd=tmp_path)
    assert second.returncode == 0, second.stderr.decode()
    metadata(str(tmp_path / "ds"))
    origin, resumed = list(Flow("FailingFlow"))[::-1]
    assert resumed.origin_pathspec == origin.pathspec
    assert resumed["start"].origin_pathspec == f"{origin.pathspec}/start"
    cloned = resumed["start"].task
    assert cloned.origin_pathspec == origin["start"].task.pathspec
    assert cloned["before"].origin_pathspec == f"{origin['start'].task.pathspec}/before"
    assert cloned.metadata_dict["origin-task-id"] == origin["start"].task.id
    assert resumed["boom"].task.origin_pathspec is None  # ran again
    assert origin.origin_pathspec is None
    assert os.path.basename(resumed["end"].task.metadata_dict["script-name"]) == "failing_flow.py"
