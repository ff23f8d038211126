"""No survivors, no lost runs: process groups die with their attempt, repeated signals only make
a shutdown faster, a console that goes away does not take the run with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

from flowkernel_runtime_local.controller import STOP_GRACE

FLOW = rh.flow_file("survivors.py")
NAME = "SurvivorFlow"


def _pid(world: rh.Env, name: str) -> psutil.Process:
    rh.wait_for(lambda: world.marker(name).exists(), what=name)
    return psutil.Process(int(world.marker(name).read_text()))


def _gone(proc: psutil.Process, timeout: float = 15.0) -> bool:
    try:
        proc.wait(timeout)
    except psutil.TimeoutExpired:
        return False
    except psutil.NoSuchProcess:
        pass
    return True


def test_a_process_a_step_leaves_behind_is_killed_when_the_attempt_ends(world):
    result = world.flow("run", FLOW, "--mode", "daemon")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Done!" in result.stdout
    child = _pid(world, "child_pid")
    assert _gone(child, 10.0), "sleep 67 outlived its task"


def test_a_deliberate_daemon_that_called_setsid_survives(world):
    result = world.flow("run", FLOW, "--mode", "setsid")
    assert result.returncode == 0, result.stdout + result.stderr
    child = _pid(world, "child_pid")
    try:
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    finally:
        child.kill()


def test_kill_9_of_the_task_kills_its_children(world):
    proc = world.start("run", FLOW, "--mode", "hang")
    task, child = _pid(world, "task_pid"), _pid(world, "child_pid")
    task.kill()
    code, out, err = rh.communicate(proc)
    assert code == 1, out + err
    assert "killed by SIGKILL" in out
    assert _gone(child, 10.0)


def test_kill_9_of_the_controller_kills_the_tasks_children(world):
    proc = world.start("run", FLOW, "--mode", "hang")
    task, child = _pid(world, "task_pid"), _pid(world, "child_pid")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    rh.console(proc)
    assert _gone(task) and _gone(child)
    rh.assert_all_gone([], world.tag, timeout=15.0)


#: ``flow`` whose runs give their tasks an hour between SIGTERM and SIGKILL when they stop: a
#: task stopped by a SIGKILL before that hour was killed by something else than the grace.
FLOW_WITH_LONG_GRACE = (
    sys.executable,
    "-c",
    "import flowkernel_runtime_local.controller as c; c.STOP_GRACE = 3600.0\n"
    "from flowkernel.cli.main import main; main()",
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_during_shutdown_kills_at_once_and_skips_no_cleanup(world, sig):
    proc = world.start("run", FLOW, "--mode", "stubborn", command=FLOW_WITH_LONG_GRACE)
    task, child = _pid(world, "task_pid"), _pid(world, "child_pid")
    tree = [psutil.Process(proc.pid), *rh.descendants(proc.pid)]
    os.killpg(proc.pid, sig)
    rh.wait_for(lambda: "Workflow interrupted" in rh.console(proc)[0], what="the shutdown")
    assert proc.poll() is None  # in its grace: the task ignores SIGTERM and SIGINT
    os.killpg(proc.pid, sig)  # impatient: a second Ctrl-C
    code, out, err = rh.communicate(proc)  # the task's own sleep (60 s) would end it too
    assert code == 1, out + err
    assert "Traceback" not in out + err and "Aborted" not in out + err
    assert "Workflow failed: interrupted" in err
    assert _gone(task) and _gone(child)
    rh.assert_all_gone(tree, world.tag)
    # the grace was cut short: the task did not end its sleep, it died of the SIGKILL
    run = world.client().Flow(NAME).latest_run
    assert "The task process was stopped by the runtime (SIGKILL)." in run["start"].task.stderr


def test_a_console_piped_into_head_does_not_lose_the_run(world):
    env = world.environ()
    pipeline = f"{rh.FLOW_BIN} run {FLOW} --mode chatty | head -2"
    result = subprocess.run(
        ["bash", "-c", pipeline], env=env, cwd=world.base, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert len(result.stdout.splitlines()) == 2
    root = world.root / NAME
    rh.wait_for(lambda: world.executions("end"), timeout=30, what="the end step")
    (run_id,) = [p.name for p in root.iterdir() if p.name.isdigit()]
    run = rh.wait_for(lambda: _finished_run(world, run_id), timeout=30, what="the run to finish")
    assert run.successful
    assert run["start"].task.stdout.count("\n") == 300  # logged to files as usual
    rh.assert_all_gone([], world.tag)


def _finished_run(world: rh.Env, run_id: str):
    run = world.client().Run(f"{NAME}/{run_id}")
    return run if run.finished else None


def test_a_runner_caller_that_exits_without_cleanup_does_not_lose_the_run(world):
    script = textwrap.dedent(
        f"""
        import asyncio, os
        from flowkernel import Runner

        async def main():
            run = await Runner({FLOW!r}, show_output=False).async_run(mode="chatty")
            print(run.run_id, flush=True)
            os._exit(0)  # gone: no cleanup(), the pipes to the controller close

        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=world.environ(), cwd=world.base,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.split()[-1]
    run = rh.wait_for(lambda: _finished_run(world, run_id), timeout=30, what="the run to finish")
    assert run.successful
    assert run["start"].task.stdout.count("\n") == 300
    rh.assert_all_gone([], world.tag)


def test_runner_terminate_lets_the_controller_finish_its_own_shutdown(world, monkeypatch):
    """Runner's SIGTERM comes after the controller's own grace, not at the same moment."""
    import asyncio

    from flowkernel import Runner

    for key, value in world.environ().items():
        monkeypatch.setenv(key, value)

    async def go():
        running = await Runner(FLOW, cwd=str(world.base)).async_run(mode="stubborn")
        task, child = _pid(world, "task_pid"), _pid(world, "child_pid")
        started = time.monotonic()
        running.terminate()
        return running, task, child, time.monotonic() - started

    running, task, child, took = asyncio.run(go())
    assert took >= STOP_GRACE  # the controller gave the task its grace before the SIGKILL
    # ... then killed it and ended by itself (exit 1): the Runner did not have to kill it
    assert running.returncode == 1, running.stderr
    assert "Workflow failed: interrupted" in running.stderr
    assert "stopped by the runtime (SIGKILL)" in running.run["start"].task.stderr
    assert running.run["start"].task.exception is not None
    assert _gone(task) and _gone(child)
    rh.assert_all_gone([], world.tag)


def test_a_long_line_without_newline_is_passed_on_in_pieces_and_logged_exactly(world):
    from flowkernel_runtime_local.controller import MAX_LINE

    size = 8 * MAX_LINE
    result = world.flow("run", FLOW, "--mode", "long_line", "--size", str(size))
    assert result.returncode == 0, result.stderr
    pieces = [line for line in result.stdout.splitlines() if line.endswith("x" * 100)]
    assert [len(p.rsplit(" ", 1)[1]) for p in pieces] == [MAX_LINE] * 8
    assert "after the long line" in result.stdout
    run_id = rh.run_id_of(result.stdout)
    (log,) = (world.run_dir(NAME, run_id) / "start").glob("*/0.stdout.log")
    assert log.read_bytes() == b"x" * size + b"\nafter the long line\n"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
@pytest.mark.parametrize("server", ["1", "0"], ids=["fork-server", "controller-forks"])
def test_a_task_holds_no_descriptor_of_the_runtime_or_of_other_tasks(run_flow_fresh, server):
    """User code sees its stdin, stdout and stderr, and none of the runtime's descriptors: no
    socket, epoll or pidfd of the controller or the fork server, no pipe of another task
    (a sibling holding the read end of a task's output would keep it from ever seeing EPIPE),
    none of the guardian's or the committer's. Eight tasks, two at a time: queued and running
    siblings exist while each runs."""
    result = run_flow_fresh(
        "fds_flow.py", "--max-workers", "2", env={"FLOWKERNEL_FORK_SERVER": server}
    ).assert_ok()
    for task in [*result.tasks("body"), result.task("end")]:
        fds = dict(task.data.fds)
        assert fds[0] == "/dev/null" and fds[1].startswith("pipe:"), fds
        leaked = {
            fd: target
            for fd, target in fds.items()
            if fd > 2 and target.startswith(("socket:", "pipe:", "anon_inode:"))
        }
        assert not leaked, f"task {task.id} holds {leaked}"
