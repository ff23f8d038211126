"""The fork server's queue (lookahead): the dispatcher launches up to twice ``--max-workers``
attempts, the server runs ``--max-workers`` of them and starts a queued one when a task exits.

Users must not notice it except by speed: the bound on running tasks, @timeout counted from a
task's real start, fail-fast, Ctrl-C and a dying fork server behave as without a queue; a
queued attempt that is stopped never runs and its record says so."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

from flowkernel_runtime_local.controller import NEVER_STARTED, NEVER_STARTED_LOST, TIMEOUT_GRACE

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the fork server is Linux-only"
)

QUEUE = rh.flow_file("queued.py")


def _running(world: rh.Env, run_id: str, n: int, attempt: int = 0) -> list[psutil.Process]:
    """Wait until ``n`` work attempts ``attempt`` are running; their processes."""

    def found() -> list[str]:
        return [m for m in world.executions("work", run_id) if m.split(".")[3] == str(attempt)]

    rh.wait_for(lambda: len(found()) >= n, what=f"{n} running work tasks")
    return [psutil.Process(int(m.split(".")[4])) for m in found()]


def _live_children(proc: psutil.Process) -> list[psutil.Process]:
    return [c for c in proc.children() if rh.is_alive(c)]


def _start_queue_run(world: rh.Env, *args: str, env: dict[str, str] | None = None):
    proc = world.start("run", QUEUE, "--max-workers", "2", "--run-id-file", "id", *args, env=env)
    run_id = rh.wait_for(lambda: (world.base / "id").exists() and (world.base / "id").read_text())
    return proc, run_id


@pytest.mark.parametrize(
    ("how", "env", "launched"),
    [
        ("fork", {}, 4),  # 2 running, 2 queued on the fork server
        ("fork", {"FLOWKERNEL_FORK_LOOKAHEAD": "0"}, 2),
        ("fork", {"FLOWKERNEL_FORK_SERVER": "0"}, 2),
        ("pool", {}, 2),
        ("spawn", {}, 2),
    ],
)
def test_at_most_max_workers_tasks_run_whatever_is_queued(world, how, env, launched):
    proc, run_id = _start_queue_run(world, "--isolation", how, env=world.environ(**env))
    tasks = _running(world, run_id, 2)
    # what the dispatcher launched (each launch makes its task directory) in the same round
    rh.wait_for(lambda: len(world.task_dirs("QueueFlow", run_id, "work")) >= launched)
    assert len(world.task_dirs("QueueFlow", run_id, "work")) == launched
    if how == "fork" and "FLOWKERNEL_FORK_SERVER" not in env:
        server = psutil.Process(tasks[0].ppid())
        assert server.ppid() == proc.pid
        assert len(_live_children(server)) == 2  # the queued ones are not forked
    assert len(world.executions("work", run_id)) == 2  # both hold their slot until released
    world.release()
    code, out, err = rh.communicate(proc)
    assert code == 0, out + err
    together = world.client().Run(f"QueueFlow/{run_id}").data.together
    assert len(together) == 6 and max(together) == 2  # two at once, never three
    assert len(world.executions("work", run_id)) == 6  # each ran once
    assert out.count("Task is starting") == 9  # start, 6 items, join, end: each when it ran
    rh.assert_all_gone([], world.tag)


def test_timeout_counts_from_the_real_start_not_from_the_queue(world):
    proc = world.start("run", rh.flow_file("timeout_queue.py"), "--max-workers", "2",
                       "--run-id-file", "id")  # fmt: skip
    run_id = rh.wait_for(lambda: (world.base / "id").exists() and (world.base / "id").read_text())
    rh.wait_for(lambda: world.executions("hold_a") and world.executions("hold_b"))
    rh.wait_for(lambda: world.task_dirs("TimeoutQueueFlow", run_id, "quick"), what="queued")
    # queued for longer than its @timeout plus the controller's grace: still not started,
    # and not killed for it
    time.sleep(1 + TIMEOUT_GRACE + 1.5)
    assert world.executions("quick") == []
    world.release()
    code, out, err = rh.communicate(proc)
    assert code == 0, out + err
    assert "@timeout" not in out + err
    quick = world.client().Run(f"TimeoutQueueFlow/{run_id}")["quick"].task
    assert quick.successful and quick.current_attempt == 0
    assert len(world.executions("quick")) == 1


def test_fail_fast_drops_the_queued_attempts_before_they_start(world):
    proc, run_id = _start_queue_run(world, "--fail", "0")
    code, out, err = rh.communicate(proc)
    assert code == 1, out + err
    assert "Step work (task-id" in err
    # item 0 failed, item 1 was running (stopped); items 2 and 3 were queued: never started
    assert len(world.executions("work", run_id)) == 2
    # task ids follow the launch order: items 0, 1, 2, 3 (a crashed record has no index)
    tasks = sorted(world.client().Run(f"QueueFlow/{run_id}")["work"], key=lambda t: int(t.id))
    assert len(tasks) == 4
    assert "item 0 is broken" in tasks[0].stderr
    assert "killed by SIGTERM" in tasks[1].exception.exception
    for task in (tasks[2], tasks[3]):
        assert not task.finished and not task.successful and task.current_attempt == 0
        assert task.exception.exception == "the task process never started"
        assert task.stderr == NEVER_STARTED + "\n"
    assert out.count("Task was stopped (never started).") == 2
    assert out.count("Task is starting") == 3  # start, items 0 and 1
    rh.assert_all_gone([], world.tag)


def test_ctrl_c_stops_the_running_tasks_and_drops_the_queued_ones(world):
    proc, run_id = _start_queue_run(world)
    tasks = _running(world, run_id, 2)
    rh.wait_for(lambda: len(world.task_dirs("QueueFlow", run_id, "work")) == 4)
    tree = [psutil.Process(proc.pid), *rh.descendants(proc.pid)]
    os.killpg(proc.pid, signal.SIGINT)
    code, out, err = rh.communicate(proc, timeout=30)
    assert code == 1 and "Workflow interrupted" in out, out + err
    assert "Traceback" not in out + err
    rh.assert_all_gone([*tree, *tasks], world.tag)
    assert len(world.executions("work", run_id)) == 2
    run = world.client().Run(f"QueueFlow/{run_id}")
    never = [t for t in run["work"] if t.stderr == NEVER_STARTED + "\n"]
    assert len(never) == 2 and not any(t.successful for t in run["work"])


def test_a_killed_fork_server_loses_its_queue_too_and_the_controller_keeps_the_bound(world):
    proc, run_id = _start_queue_run(world)
    tasks = _running(world, run_id, 2)
    rh.wait_for(lambda: len(world.task_dirs("QueueFlow", run_id, "work")) == 4)
    server = psutil.Process(tasks[0].ppid())
    assert server.ppid() == proc.pid
    server.kill()
    # the 4 lost attempts run again, forked by the controller: 2 now, 2 held back
    retries = _running(world, run_id, 2, attempt=1)
    assert {t.ppid() for t in retries} == {proc.pid}
    assert len(_live_children(psutil.Process(proc.pid))) == 2
    world.release()
    code, out, err = rh.communicate(proc)
    assert code == 0, out + err
    assert f"The fork server (pid {server.pid}) is gone (killed by SIGKILL)" in err
    assert "2 running task(s) died with it and will run again" in err
    assert "2 queued task(s) never started and will run as new attempts" in err
    run = world.client().Run(f"QueueFlow/{run_id}")
    assert run.successful
    assert max(run.data.together) == 2  # the controller's backlog kept the bound too
    lost = [t for t in run["work"] if t.current_attempt == 1]
    assert len(lost) == 4 and all(t.successful for t in lost)
    client = world.client()
    first = [client.Task(t.pathspec, attempt=0) for t in lost]
    assert sorted(t.stderr == NEVER_STARTED_LOST + "\n" for t in first) == [0, 0, 1, 1]
    assert sum(t.exception.exception == "the task process never started" for t in first) == 2
    firsts = [m for m in world.executions("work", run_id) if m.split(".")[3] == "0"]
    assert len(firsts) == 2 + 2  # the 2 killed, and the 2 not launched when the server died
    rh.assert_all_gone([], world.tag)


def test_a_gang_never_waits_behind_queued_tasks(world):
    result = world.flow("run", rh.flow_file("gang_queue.py"), "--max-workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(world.executions("train")) == 3 and len(world.executions("work")) == 8
