"""A foreach over an ``UnboundedForeachInput``: its width is decided when the foreach runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowkernel.kernel import Kernel
from flowkernel.unbounded_foreach import (
    UBF_CONTROL,
    UBF_TASK,
    UnboundedForeachInput,
    foreach_width,
)

FLOW = Path(__file__).parent / "flows" / "mfapi" / "unbounded_flow.py"


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
    assert (UBF_CONTROL, UBF_TASK) == ("ubf_control", "ubf_task")
    with pytest.raises(NotImplementedError, match="__getitem__"):
        UnboundedForeachInput()[0]


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_a_foreach_runs_as_wide_as_the_input_says(tmp_path, isolation):
    run = Kernel.discover().run(
        str(FLOW), datastore_root=str(tmp_path), count=5, runtime_options={"isolation": isolation}
    )
    assert run.successful
    expected = [(i, f"shard-{i}") for i in range(5)]
    assert run["join"].task.data.results == expected
    assert sorted(t.index for t in run["work"]) == list(range(5))
    assert run["start"].task["_unbounded_foreach"].data is True


def _run(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(tmp_path), "run",
         str(FLOW), *args],
        capture_output=True, text=True,
    )  # fmt: skip


def test_zero_width_and_too_many_splits_fail_the_run(tmp_path):
    empty = _run(tmp_path, "--count", "0")
    assert empty.returncode == 1 and "zero splits" in empty.stdout + empty.stderr
    wide = _run(tmp_path, "--count", "5", "--max-num-splits", "4")
    assert wide.returncode == 1 and "--max-num-splits" in wide.stdout + wide.stderr
