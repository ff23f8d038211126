"""Task and run records: typed, stored as the same JSON as before, and the retry policy."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from flowkernel.datastore import FlowStore
from flowkernel.engine.policy import NO_RETRY_EXIT_CODE, RetryPolicy, describe_exit
from flowkernel.engine.records import PARAMS_STEP, RunRecord, TaskRecord, Transition
from flowkernel.flow.flowspec import ForeachFrame
from flowkernel.kernel import Kernel

EXAMPLES = Path(__file__).parents[1] / "examples"

#: A foreach body's record exactly as the version before typed records wrote it.
PREVIOUS_VERSION = {
    "flow": "ForeachFlow",
    "run_id": "1700000000000000",
    "step": "body",
    "task_id": "3",
    "attempt": 1,
    "success": True,
    "task_ok": True,
    "artifacts": {"x": "ab" * 20, "name": "cd" * 20},
    "info": {"x": {"size": 12, "type": "int"}},
    "input_paths": ["start/1/0"],
    "split_index": 2,
    "foreach_stack": [["body", "items", 4, 2, None]],
    "iteration_stack": [],
    "transition": [["join"], None],
    "foreach_var": None,
    "foreach_num_splits": None,
    "exception": None,
    "caught": False,
    "origin_run_id": None,
    "started_at": 1.5,
    "finished_at": 2.5,
    "pid": 4242,
}


def test_a_record_of_the_previous_version_reads_typed_and_writes_back_identical():
    record = TaskRecord.from_json(PREVIOUS_VERSION)
    assert record.foreach_stack == (ForeachFrame("body", "items", 4, 2, None),)
    assert record.foreach_index == 2
    assert record.transition == Transition(("join",), None)
    assert record.key == ("body", (2,), ())
    assert record.path == "body/3/1"
    assert record.to_json() == PREVIOUS_VERSION


def test_unknown_keys_survive_a_round_trip():
    raw = {**PREVIOUS_VERSION, "written_by_a_newer_version": {"a": 1}}
    assert TaskRecord.from_json(raw).to_json() == raw
    run = {"flow": "F", "run_id": "1", "user": "u", "tags": ["t"], "notes": "kept"}
    assert RunRecord.from_json(run).to_json()["notes"] == "kept"


def test_named_constructors():
    params = TaskRecord.parameters("F", "7", {"alpha": "aa"}, origin_run_id="6")
    assert (params.step, params.task_ok, params.origin_run_id) == (PARAMS_STEP, True, "6")
    crashed = TaskRecord.crashed(
        flow="F", run_id="7", step="a", task_id="2", attempt=1,
        status="killed by SIGKILL", returncode=-9, input_paths=["start/1/0"],
    )  # fmt: skip
    assert not crashed.task_ok and crashed.exception.type == "TaskProcessDied"
    assert crashed.to_json()["exception"]["message"] == "the task process killed by SIGKILL"
    assert crashed.to_json()["returncode"] == -9
    origin = TaskRecord.from_json(PREVIOUS_VERSION)
    clone = origin.cloned_as("8", "5", ["start/1/0"], "1700000000000000")
    assert (clone.run_id, clone.task_id, clone.attempt) == ("8", "5", 0)
    assert clone.origin_task_id == "3" and clone.cloned
    assert clone.artifacts == origin.artifacts
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        clone.task_id = "6"


def test_every_record_of_a_real_run_round_trips(tmp_path):
    root = str(tmp_path / "ds")
    run = Kernel.discover().run(str(EXAMPLES / "fanout.py"), datastore_root=root)
    store = FlowStore(root, run.path_components[0])
    files = list(Path(store.run_dir(run.id)).glob("*/*/*.record.json"))
    assert len(files) > 3
    for path in files:
        raw = json.loads(path.read_text())
        assert TaskRecord.from_json(raw).to_json() == raw, path
    raw_run = store.read_run_record(run.id)
    assert RunRecord.from_json(raw_run).to_json() == raw_run
    assert RunRecord.read(store, run.id).start_step == "start"


def test_retry_policy():
    plain = RetryPolicy()
    assert plain.max_attempts == 1
    assert not plain.retries(0, 1, stopped=False, run_failing=False)
    retry = RetryPolicy(user_retries=2)
    assert retry.max_attempts == 3
    assert retry.retries(1, 1, stopped=False, run_failing=False)
    assert not retry.retries(2, 1, stopped=False, run_failing=False)
    assert not retry.retries(0, NO_RETRY_EXIT_CODE, stopped=False, run_failing=False)
    assert not retry.retries(0, -15, stopped=True, run_failing=False)
    assert not retry.retries(0, 1, stopped=False, run_failing=True)
    assert RetryPolicy(user_retries=4, catch=True).max_attempts == 6  # at most MAX_ATTEMPTS
    assert RetryPolicy(catch=True).max_attempts == 4
    # an attempt lost with its machine (a Dask worker died) runs again without @retry
    assert plain.retries(0, -9, stopped=False, run_failing=False, lost=True)
    assert not plain.retries(5, -9, stopped=False, run_failing=False, lost=True)
    assert not plain.retries(0, -9, stopped=True, run_failing=False, lost=True)


def test_describe_exit():
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-11) == "killed by SIGSEGV (segmentation fault)"
