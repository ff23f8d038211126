"""The fork server (``--isolation fork`` on Linux): tasks are its children, not the
controller's; if it dies, the run neither hangs nor fails: what it was running runs again,
forked by the controller, and nothing it started survives."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the fork server is Linux-only"
)


def _pid(world: rh.Env, name: str) -> int:
    rh.wait_for(lambda: world.marker(name).exists(), what=name)
    return int(world.marker(name).read_text())


def test_a_killed_fork_server_loses_its_running_task_which_runs_again(world):
    proc = world.start("run", rh.flow_file("server_death.py"))
    task = psutil.Process(_pid(world, "task_pid"))
    child = psutil.Process(_pid(world, "child_pid"))
    server = psutil.Process(task.ppid())
    assert server.pid != proc.pid and server.ppid() == proc.pid  # forked by the server
    server.kill()
    code, out, err = rh.communicate(proc, timeout=60)
    assert code == 0, out + err
    assert f"The fork server (pid {server.pid}) is gone (killed by SIGKILL)" in err
    assert "1 running task(s) died with it and will run again" in err
    assert "Done!" in out
    assert int(world.marker("retry_parent").read_text()) == proc.pid  # forked by the controller
    run = world.client().Flow("ServerDeathFlow").latest_run
    start = run["start"].task
    assert start.current_attempt == 1 and run.successful
    assert len(world.executions("start")) == 2 and len(world.executions("end")) == 1
    for gone in (task, child):  # the task died with the server, its child with its group
        try:
            gone.wait(10)  # psutil.TimeoutExpired if it lives on
        except psutil.NoSuchProcess:
            pass
    rh.assert_all_gone([], world.tag)


def test_tasks_are_forked_by_the_controller_when_the_fork_server_is_off(world):
    env = world.environ(FLOWKERNEL_FORK_SERVER="0")
    proc = world.start("run", rh.flow_file("server_death.py"), env=env)
    task = psutil.Process(_pid(world, "task_pid"))
    assert task.ppid() == proc.pid
    os.killpg(proc.pid, signal.SIGTERM)
    code, out, err = rh.communicate(proc, timeout=30)
    assert code == 1 and "Workflow interrupted" in out, out + err
    rh.assert_all_gone([], world.tag)


def test_a_task_whose_input_record_exceeds_a_launch_message_reads_it_itself(run_flow):
    """A ~350 KB input record: more than a fork server's message may carry (the task then
    reads it from the datastore, as ``flow step`` does)."""
    result = run_flow("big_record_flow.py").assert_ok()
    assert "fork server" not in result.stdout + result.stderr
    assert result.task("end").stdout == "3000 artifacts, the last: same\n"
