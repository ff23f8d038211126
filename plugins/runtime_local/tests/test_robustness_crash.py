"""Task processes that die without a Python exception, unpicklable artifacts, fail-fast."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

CRASH = rh.flow_file("robust_crash.py")


SEGV = "killed by SIGSEGV (segmentation fault)"


@pytest.mark.parametrize(
    ("how", "status", "isolation"),
    [
        ("segv_ctypes", SEGV, "fork"),
        ("segv_kill", SEGV, "fork"),
        ("exit3", "exited with status 3", "fork"),
        ("segv_ctypes", SEGV, "spawn"),
        ("exit3", "exited with status 3", "spawn"),
    ],
)
def test_a_dying_task_fails_with_its_exit_status(
    world: rh.Env, how: str, status: str, isolation: str
) -> None:
    result = world.flow("run", CRASH, "--how", how, "--isolation", isolation)
    assert result.returncode == 1, result.stdout + result.stderr
    run_id = rh.run_id_of(result.stdout)
    assert f"Task failed ({status}); retrying." in result.stdout
    assert f"Task failed ({status})." in result.stdout
    assert "Workflow failed: Step crash (task-id 2) failed." in result.stderr
    # @retry(times=1): the retry ran, and died the same way
    assert sorted(n.split(".")[3] for n in world.executions("crash", run_id)) == ["0", "1"]
    client = world.client()
    task = client.Run(f"CrashFlow/{run_id}")["crash"].task
    assert task.current_attempt == 1
    assert not task.finished and not task.successful
    assert task.exception is not None
    assert status in task.exception.exception
    # what the task printed before it died is in the log of each attempt
    for attempt in (0, 1):
        old = client.Task(task.pathspec, attempt=attempt)
        assert old.stdout == "output before the crash\n"
        assert old.stderr.startswith("stderr before the crash\n")
        # ... and so is how the process ended (a signal only: exit 3 has nothing to add)
        died = "The task process died of a segmentation fault (SIGSEGV).\n"
        assert old.stderr.endswith(died) == (status == SEGV), old.stderr
    assert world.records("CrashFlow", run_id, "end") == []


def test_exit_code_202_is_never_retried(world: rh.Env) -> None:
    result = world.flow("run", CRASH, "--how", "exit202")
    assert result.returncode == 1
    assert "Task failed (exited with status 202)." in result.stdout
    assert "retrying" not in result.stdout
    run_id = rh.run_id_of(result.stdout)
    assert [n.split(".")[3] for n in world.executions("crash", run_id)] == ["0"]


def test_a_retry_of_a_crashed_task_can_succeed(world: rh.Env) -> None:
    result = world.flow("run", CRASH, "--how", "segv_kill", "--crash_attempts", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Task failed (killed by SIGSEGV (segmentation fault)); retrying." in result.stdout
    run_id = rh.run_id_of(result.stdout)
    client = world.client()
    task = client.Run(f"CrashFlow/{run_id}")["crash"].task
    assert task.successful and task.current_attempt == 1
    assert task.data.survivor == 1
    assert task.stdout == "attempt 1 survived\n"
    assert client.Task(task.pathspec, attempt=0).stdout == "output before the crash\n"
    assert client.Run(f"CrashFlow/{run_id}").successful


@pytest.mark.parametrize("how,artifact", [("lock", "lock"), ("lambda", "fn")])
def test_an_unpicklable_artifact_fails_the_task_naming_it(
    world: rh.Env, how: str, artifact: str
) -> None:
    result = world.flow("run", CRASH, "--how", how)
    assert result.returncode == 1, result.stdout + result.stderr
    run_id = rh.run_id_of(result.stdout)
    task = world.client().Run(f"CrashFlow/{run_id}")["crash"].task
    assert not task.finished
    assert f"Cannot pickle artifact '{artifact}'" in task.exception.exception
    assert f"Cannot pickle artifact '{artifact}'" in task.stderr
    assert world.records("CrashFlow", run_id, "end") == []


def test_fail_fast_no_new_task_starts_after_a_final_failure(world: rh.Env) -> None:
    flow = rh.flow_file("failfast.py")
    result = world.flow("run", flow, "--max-workers", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    run_id = rh.run_id_of(result.stdout)
    assert len(world.executions("work", run_id)) == 1
    assert world.task_dirs("FailFastFlow", run_id, "join") == []
    assert result.stdout.count("Task is starting") == 2  # start and item 0
    tasks = list(world.client().Run(f"FailFastFlow/{run_id}")["work"])
    # the fork server's lookahead had item 1 launched (queued behind item 0): it was dropped
    # before it could start, and left no trace
    assert len(tasks) == 1 and "item 0 is broken" in tasks[0].stderr
    assert len(world.task_dirs("FailFastFlow", run_id, "work")) == 1


def test_fail_fast_does_not_wait_for_a_task_that_closed_its_output(world: rh.Env) -> None:
    """A task that closed stdout/stderr but still runs must not block the controller: the
    failure stops it (it sleeps 30 s, then finishes: a controller that waits for it lets it)."""
    result = world.flow("run", rh.flow_file("closed_output.py"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Step boom (task-id" in result.stderr
    closer = world.client().Run(f"ClosedOutputFlow/{rh.run_id_of(result.stdout)}")["closer"].task
    assert not closer.finished, "the failure waited for the task that closed its output"
    assert rh.tagged_processes(world.tag) == []
