"""The fork server's task fork without the interpreter's generic after-fork work
(``flowkernel.engine.fastfork``): taken by default where it is sound, ``os.fork()`` wherever a
condition fails, and either way a step sees the same process: its at-fork hooks ran, random
was reseeded, threads, logging, pools and subprocesses work. ``FLOWKERNEL_FAST_FORK=0`` turns
it off. Every run here is a real ``flow run`` of flows/fastfork_flow.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or sys.version_info[:2] != (3, 11),
    reason="the fast fork is for CPython 3.11 on Linux (elsewhere os.fork() is all there is)",
)

FLOW = "fastfork_flow.py"


def _run(run_flow_at: Any, base: Path, setup: str = "hooks", fast: str = "1") -> Any:
    env = {
        "FLOWKERNEL_FAST_FORK": fast,
        "FASTFORK_FLOW_SETUP": setup,
        "FASTFORK_FLOW_LOG": str(base / "hooks.log"),
    }
    return run_flow_at(base / "datastore", FLOW, "--max-workers", "2", env=env).assert_ok()


def _bodies(result: Any) -> list[Any]:
    return [task.data for task in result.tasks("body")]


def _seen(data: Any) -> dict[str, Any]:
    """What a step saw of its process, as it must be whichever way the task was forked."""
    return {
        "after_in_child hook ran in the task": data.hook_pid == data.pid,
        "os.fork audited": data.audits > 0,
        "main thread's native_id is the task's pid": data.main_native_is_pid,
        "get_ident() is the main thread's": data.ident_is_main,
        "current_thread() is main_thread()": data.current_is_main,
        "threads": data.threads,
        "a thread started, ran on its own TID and joined": (data.thread_ran, data.thread_stopped),
        "get_native_id() is the pid": data.native == data.pid,
        "ThreadPoolExecutor": data.squares,
        "subprocess": data.sub,
        "multiprocessing fork Pool": data.mp,
        "a multiprocessing child is reseeded": data.grandchild[1] != data.rand,
    }


EXPECTED = {
    "after_in_child hook ran in the task": True,
    "os.fork audited": True,
    "main thread's native_id is the task's pid": False,  # CPython 3.11 keeps the first one's
    "get_ident() is the main thread's": True,
    "current_thread() is main_thread()": True,
    "threads": ["MainThread"],
    "a thread started, ran on its own TID and joined": (True, True),
    "get_native_id() is the pid": True,
    "ThreadPoolExecutor": [0, 1, 4, 9],
    "subprocess": "sub",
    "multiprocessing fork Pool": [1, 2],
    "a multiprocessing child is reseeded": True,
}


def _assert_sound(result: Any) -> None:
    bodies = _bodies(result)
    assert len(bodies) == 4
    for data in bodies:
        assert _seen(data) == EXPECTED
    assert len({d.rand for d in bodies}) == 4  # random reseeded in every task
    assert len({d.audits for d in bodies}) == 4  # each fork audited in the server, before it
    for task in result.tasks("body"):
        assert "logged" in task.stderr  # logging from the step reaches the task's log


@pytest.fixture(scope="module")
def both(run_flow_at, tmp_path_factory):
    """The same flow with the fast fork (default) and with ``FLOWKERNEL_FAST_FORK=0``."""
    return {
        fast: _run(run_flow_at, tmp_path_factory.mktemp(f"fast{fast}"), fast=fast)
        for fast in ("1", "0")
    }


def test_by_default_a_task_is_forked_without_the_generic_after_fork_work(both):
    assert [d.how for d in _bodies(both["1"])] == ["fast"] * 4


def test_the_switch_turns_it_off(both):
    assert [d.how for d in _bodies(both["0"])] == [""] * 4


def test_either_way_a_step_sees_the_same_process(both):
    for result in both.values():
        _assert_sound(result)
    assert [_seen(d) for d in _bodies(both["1"])] == [_seen(d) for d in _bodies(both["0"])]


def test_random_streams_differ_between_tasks_and_runs(both):
    values = [d.rand for result in both.values() for d in _bodies(result)]
    grandchildren = [d.grandchild[1] for result in both.values() for d in _bodies(result)]
    assert len(set(values + grandchildren)) == 16


def test_hooks_that_must_run_in_the_server_keep_os_fork(run_flow_at, tmp_path):
    result = _run(run_flow_at, tmp_path, "parent_hooks")
    _assert_sound(result)
    bodies = _bodies(result)
    assert {d.how for d in bodies} == {"os.fork: a before or after_in_parent hook"}
    server = bodies[0].ppid
    lines = (tmp_path / "hooks.log").read_text().splitlines()
    forked = len(result.tasks("body")) + 3  # start, the bodies, join, end
    assert lines.count(f"before {server}") == forked
    assert lines.count(f"parent {server}") == forked


@pytest.mark.parametrize(
    ("setup", "how"),
    [
        ("signal", "a Python handler for signal 10"),
        ("c_thread", ""),  # (the server makes no fast forker: it is not single-threaded)
        ("thread_object", "threading holds other threads"),
    ],
)
def test_a_server_the_shortcut_is_not_sound_for_keeps_the_generic_work(
    run_flow_at, tmp_path, setup, how
):
    result = _run(run_flow_at, tmp_path, setup)
    assert {d.how for d in _bodies(result)} == {how}, result.output
    _assert_sound(result)


@pytest.mark.parametrize("fast", ["1", "0"])
def test_a_hook_that_raises_is_reported_and_the_task_runs(run_flow_at, tmp_path, fast):
    result = _run(run_flow_at, tmp_path, "raising_hook", fast)
    assert "Exception ignored in: <function _raise" in result.stderr
    assert "ValueError: the flow's after_in_child hook failed" in result.stderr
    assert [d.hook_pid == d.pid for d in _bodies(result)] == [True] * 4
