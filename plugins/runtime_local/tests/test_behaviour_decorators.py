"""@retry, @catch, @timeout, @environment, `current`, and the client inside a running flow."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def deco(run_flow):
    return run_flow("decorators_flow.py").assert_ok()


def test_retry_succeeds_on_a_later_attempt(deco):
    task = deco.task("flaky")
    assert task.successful and task.current_attempt == 2
    data = task.data
    assert data.attempt_seen == 2
    assert data.current_in_flaky["retry_count"] == 2
    # artifacts and logs of the failed attempts are not visible through the task
    assert "set_in_attempt_2" in data
    assert "set_in_attempt_0" not in data and "set_in_attempt_1" not in data
    assert "failing attempt" not in task.stderr
    # ... but an earlier attempt can be asked for explicitly
    from flowkernel import Task

    first = Task(task.pathspec, attempt=0)
    assert not first.successful
    assert first.data.set_in_attempt_0 is True
    assert "failing attempt 0 on purpose" in first.stderr
    assert deco.stdout.count("retrying") == 2


def test_catch_stores_the_exception_and_the_run_goes_on(deco):
    task = deco.task("caught")
    assert task.finished and not task.successful
    assert task.exception is None
    error = task.data.error
    assert error.type == "builtins.ValueError"
    assert error.exception == "boom in caught"
    assert task.data.before_error == "kept"  # set before the exception
    lines = task.stdout.splitlines()
    assert lines[0].startswith("@catch caught an exception from")
    assert lines[1:] and all(line.startswith(">  ") for line in lines[1:])
    assert any("ValueError: boom in caught" in line for line in lines)
    assert task.stderr == ""
    assert deco.returncode == 0 and deco.run.successful
    # downstream steps ran and see the wrapper
    assert deco.data("end").error.exception == "boom in caught"


def test_catch_var_is_none_when_nothing_failed(deco):
    task = deco.task("no_env")
    assert task.successful and task.data.unused is None


def test_timeout_with_catch(deco):
    task = deco.task("slow")
    assert task.finished and not task.successful
    error = task.data.timeout_error
    assert error.type.endswith("TimeoutException")
    assert error.exception.startswith("Step slow timed out after 0 hours, 0 minutes, 1 seconds")
    assert task.data.before_timeout == "kept too"
    assert "after_timeout" not in task.data


def test_environment_variables_only_in_their_step(deco):
    assert deco.data("env_step").env_value == "5"
    assert deco.data("no_env").env_value_after is None
    assert "FK_TEST_ENV_VAR" not in os.environ


def test_current_inside_steps(deco):
    start = deco.task("start")
    fields = start.data.current_in_start
    assert fields == {
        "flow_name": "DecoratorsFlow",
        "run_id": deco.run_id,
        "step_name": "start",
        "task_id": start.id,
        "retry_count": 0,
        "pathspec": start.pathspec,
        "parameter_names": [],
        "is_running_flow": True,
        "graph_start": "start",
        "graph_steps": sorted(fields["graph_steps"]),
        "tempdir_exists": True,
    }
    assert {"start", "flaky", "end"} <= set(fields["graph_steps"])
    flaky = deco.task("flaky")
    assert flaky.data.current_in_flaky["pathspec"] == flaky.pathspec
    assert flaky.data.current_in_flaky["task_id"] == flaky.id


def test_current_outside_a_flow():
    from flowkernel import current

    assert current.is_running_flow is False
    assert current.pathspec is None


def test_client_inside_a_running_flow(deco):
    end = deco.task("end")
    assert end.data.current_run_x == "from start"
    assert end.data.client_x == "from start"
    assert end.data.client_attempt == 2
    assert end.data.current_task_pathspec == end.pathspec
