"""A foreach over an ``UnboundedForeachInput``: a control task decides the width, as in Metaflow,
then one mapper task per element runs the step's code, and the join sees the mappers only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowkernel.client import Run
from flowkernel.kernel import Kernel
from flowkernel.unbounded_foreach import (
    CONTROL_TASK_TAG,
    UBF_CONTROL,
    UBF_TASK,
    UnboundedForeachInput,
    foreach_width,
)

FLOWS = Path(__file__).parent / "flows" / "mfapi"
FLOW = FLOWS / "unbounded_flow.py"


class Sized(UnboundedForeachInput):
    def __len__(self):
        return 7

    def __getitem__(self, index):
        raise AssertionError("len() is asked first")


class Indexed(UnboundedForeachInput):
    def __getitem__(self, index):
        if index >= 4:
            raise IndexError(index)
        return index


def test_the_width_comes_from_len_or_from_indexing():
    assert foreach_width(Sized()) == 7
    assert foreach_width(Indexed()) == 4
    assert (UBF_CONTROL, UBF_TASK, CONTROL_TASK_TAG) == ("ubf_control", "ubf_task", "control_task")
    with pytest.raises(NotImplementedError, match="__getitem__"):
        UnboundedForeachInput()[0]


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_a_control_task_decides_the_width_and_the_join_sees_the_mappers(tmp_path, isolation):
    run = Kernel.discover().run(
        str(FLOW),
        datastore_root=str(tmp_path),
        count=4,
        sized=True,  # len() raises unless it is asked in the control task
        runtime_options={"isolation": isolation},
    )
    assert run.successful
    work = run["work"]
    control = work.control_task
    assert [t.id for t in work.control_tasks()] == [control.id]
    mappers = [t for t in work if t.id != control.id]
    assert sorted(t.id for t in mappers) == [f"{control.id}_node_{i}" for i in range(4)]
    assert control.index is None and control.metadata_dict["internal_task_type"] == "control_task"
    assert control["_control_mapper_tasks"].data == [
        f"{run.id}/work/{control.id}_node_{i}" for i in range(4)
    ]
    assert control["_control_task_is_mapper_zero"].data is False
    assert "done" not in control.data  # the control task runs none of the step's code
    by_index = sorted(mappers, key=lambda t: t.index)
    assert [t.data.frame for t in by_index] == [(i, None) for i in range(4)]  # num_splits None
    assert [t.parent_tasks[0].pathspec for t in by_index] == [run["start"].task.pathspec] * 4
    assert run["join"].task.data.results == [(i, f"shard-{i}") for i in range(4)]
    assert run["start"].task["_unbounded_foreach"].data is True


def test_an_unbounded_foreach_nested_in_a_foreach_has_a_control_task_per_element(tmp_path):
    run = Kernel.discover().run(str(FLOWS / "unbounded_nested.py"), datastore_root=str(tmp_path))
    assert run["outer_join"].task.data.words_out == ["AB", "CDE"]
    inner = run["inner"]
    assert len(list(inner.control_tasks())) == 2
    assert len(list(inner)) == 2 + 5
    assert sorted(t.index for t in inner if t.index is not None) == [0, 0, 1, 1, 2]


def _flow(tmp_path, command, flow, *args):
    return subprocess.run(
        [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(tmp_path), command,
         str(flow), *args],
        capture_output=True, text=True,
    )  # fmt: skip


def test_zero_width_and_too_many_splits_fail_the_control_task(tmp_path):
    empty = _flow(tmp_path, "run", FLOW, "--count", "0")
    assert empty.returncode == 1 and "zero splits" in empty.stdout + empty.stderr
    wide = _flow(tmp_path, "run", FLOW, "--count", "5", "--max-num-splits", "4")
    assert wide.returncode == 1 and "--max-num-splits" in wide.stdout + wide.stderr


def test_the_body_must_be_one_step_followed_by_the_join(tmp_path):
    done = _flow(tmp_path, "run", FLOWS / "unbounded_long_body.py")
    assert done.returncode == 1
    assert "must split into a single step followed by a join" in done.stdout + done.stderr


def test_resume_runs_the_control_task_again_and_clones_the_mappers_that_succeeded(tmp_path):
    # one at a time: mapper 0 succeeds, mapper 1 fails, mapper 2 never starts
    failed = _flow(tmp_path, "run", FLOW, "--count", "3", "--fail-at", "1", "--max-workers", "1")
    assert failed.returncode == 1, failed.stderr
    id_file = tmp_path / "resumed-id"
    resumed = _flow(tmp_path, "resume", FLOW, "--run-id-file", str(id_file))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    run = Run(f"UnboundedFlow/{id_file.read_text()}", _namespace_check=False, _root=str(tmp_path))
    assert run["join"].task.data.results == [(i, f"shard-{i}") for i in range(3)]
    control = run["work"].control_task
    assert "origin-task-id" not in control.metadata_dict  # it ran again
    mappers = {t.index: t for t in run["work"] if t.id != control.id}
    cloned = {i for i, t in mappers.items() if "origin-task-id" in t.metadata_dict}
    assert cloned == {0}
    assert sorted(t.id for t in mappers.values()) == [f"{control.id}_node_{i}" for i in range(3)]
