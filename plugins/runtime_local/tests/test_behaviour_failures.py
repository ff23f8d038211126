"""Failures in user code: the task fails, the run exits 1, what was set before stays readable."""

from __future__ import annotations


def test_foreach_child_overwriting_the_foreach_variable_changes_input(run_flow):
    result = run_flow("failures_flow.py").assert_ok()
    assert result.data("join").pairs == [("a", "x"), ("b", "y")]


def test_unpicklable_artifact_fails_the_task_naming_it(run_flow):
    result = run_flow("failures_flow.py", "--fail", "unpicklable")
    assert result.returncode == 1, result.output
    task = result.task("start")
    assert not task.finished and not task.successful
    assert "Cannot pickle artifact 'lock'" in task.stderr
    assert "lock" in task.exception.exception
    assert task.data.before == "kept"
    assert {s.id for s in result.run} == {"start"}
    assert not result.run.successful


def test_foreach_over_nothing_fails_the_split(run_flow):
    result = run_flow("failures_flow.py", "--fail", "empty")
    assert result.returncode == 1, result.output
    task = result.task("start")
    assert not task.finished
    assert "produced zero splits" in task.stderr
    assert task.data.before == "kept"
    assert {s.id for s in result.run} == {"start"}
