"""The fork server (``--isolation fork`` on Linux): tasks are its children, not the
controller's; if it dies, the run neither hangs nor fails: what it was running runs again,
forked by the controller, and nothing it started survives."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
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


def _echo_or_sleep(request: bytes) -> int:  # pragma: no cover - runs in a forked task
    text = bytes(request).decode()
    if text == "sleep":
        time.sleep(60)
    elif text == "ok":
        return 0
    print(text)
    if text == "vanish":  # ends its process itself: exit code 0 without ``run`` returning
        os._exit(0)
    return 3


def _until_exit(server, key: int, events: list[tuple]) -> list[tuple]:
    """The events of ``key`` once its exit came (``events``: all read so far, kept)."""
    while not any(e[0] in (b"x", b"X") and e[1] == key for e in events):
        events += server.events(block=True)
    return [e for e in events if e[1] == key]


def test_the_server_forks_each_request_reports_its_start_and_exit_and_signals_it_by_key():
    from flowkernel_runtime_local import forkserver

    gc.unfreeze()
    server = forkserver.ForkServer.start(_echo_or_sleep, os.getpid())
    assert server is not None
    try:
        # the controller's objects of its start-up are frozen: its own collections skip them
        assert gc.get_freeze_count() > 0
        pipes = {}
        for key, request in ((7, b"hello"), (8, b"sleep")):
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            server.launch(key, request, out_w, err_w)
            os.close(out_w)
            os.close(err_w)
            pipes[key] = (out_r, err_r)
        events: list[tuple] = []
        (started, exited) = _until_exit(server, 7, events)
        assert started[:2] == (b"s", 7) and started[2] > 0
        assert exited == (b"x", 7, started[2], 3)
        assert os.read(pipes[7][0], 100) == b"hello\n"
        server.signal([7, 8], signal.SIGTERM)  # 7 is reaped already: skipped
        (started, exited) = _until_exit(server, 8, events)
        assert exited == (b"x", 8, started[2], -signal.SIGTERM)
    finally:
        assert server.close() == 0
        gc.unfreeze()
        for fds in pipes.values():
            for fd in fds:
                os.close(fd)


def test_the_server_queues_launches_past_its_limit_and_holds_a_failed_slot_until_released():
    from flowkernel_runtime_local import forkserver

    server = forkserver.ForkServer.start(_echo_or_sleep, os.getpid())
    assert server is not None
    pipes = {}
    try:
        server.limit(1)
        for key, request in ((7, b"sleep"), (8, b"eight"), (9, b"nine"), (10, b"ten")):
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            server.launch(key, request, out_w, err_w, now=key == 10)  # 10: a gang's node
            os.close(out_w)
            os.close(err_w)
            pipes[key] = (out_r, err_r)
        events: list[tuple] = []
        (started, exited) = _until_exit(server, 10, events)  # forked at once, past the limit
        assert started[:2] == (b"s", 10) and exited[0] == b"X" and exited[3] == 3
        server.release()  # the controller releases every failed exit it handled
        server.signal([9], signal.SIGTERM)  # queued: dropped, never started
        assert _until_exit(server, 9, events) == [(b"x", 9, 0, -signal.SIGTERM)]  # not held
        assert os.read(pipes[9][0], 100) == b""  # its pipes were closed, nothing ran
        server.signal([7], signal.SIGTERM)
        (started, exited) = _until_exit(server, 7, events)
        assert exited == (b"X", 7, started[2], -signal.SIGTERM)
        # 7 failed: 8 does not start in its slot before the controller releases it (a start
        # in the slot would have been reported before 7's exit)
        assert not any(e[1] == 8 for e in events)
        server.release()
        (started, exited) = _until_exit(server, 8, events)
        assert started[:2] == (b"s", 8) and exited == (b"X", 8, started[2], 3)
        assert os.read(pipes[8][0], 100) == b"eight\n"
        starts = [e[1] for e in events if e[0] == b"s"]
        assert starts == [7, 10, 8]
    finally:
        assert server.close() == 0
        gc.unfreeze()
        for fds in pipes.values():
            for fd in fds:
                os.close(fd)


def test_a_retry_goes_first_a_start_is_told_after_the_exit_it_follows_and_exit_0_is_held():
    """A launch *first* (a retry) goes ahead of the queue; a task forked into the slot a reap
    freed is reported started after that exit; a task that ended its process with 0 without
    its ``run`` returning (``os._exit(0)``: no record) holds its slot like a failure."""
    from flowkernel_runtime_local import forkserver

    server = forkserver.ForkServer.start(_echo_or_sleep, os.getpid())
    assert server is not None
    fds = []
    try:
        server.limit(1)
        launches = ((1, b"sleep", False), (2, b"ok", False), (3, b"vanish", False),
                    (4, b"ok", True))  # fmt: skip
        for key, request, first in launches:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            fds += [out_r, err_r]
            server.launch(key, request, out_w, err_w, first=first)
            os.close(out_w)
            os.close(err_w)
        events: list[tuple] = []
        server.signal([1], signal.SIGKILL)
        _until_exit(server, 1, events)
        server.release()  # 1 failed (held): then 4, 2 and 3, each at the reap of the one before
        _until_exit(server, 3, events)
        told = [(kind, key, code) for kind, key, _, code in events]
        assert told == [
            (b"s", 1, 0), (b"X", 1, -signal.SIGKILL),
            (b"s", 4, 0), (b"x", 4, 0),
            (b"s", 2, 0), (b"x", 2, 0),
            (b"s", 3, 0), (b"X", 3, 0),  # exit code 0, but held
        ]  # fmt: skip
    finally:
        assert server.close() == 0
        gc.unfreeze()
        for fd in fds:
            os.close(fd)


def test_without_a_limit_a_failed_task_holds_nothing_back():
    """No limit (no lookahead): a launch that arrives after a failed task was reaped is forked
    at once, released or not (the hold exists only for the queue)."""
    from flowkernel_runtime_local import forkserver

    server = forkserver.ForkServer.start(_echo_or_sleep, os.getpid())
    assert server is not None
    fds = []
    try:
        events: list[tuple] = []
        for key in (1, 2):  # each exits with status 3; the second is sent after the first's exit
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            fds += [out_r, err_r]
            server.launch(key, b"x", out_w, err_w)
            os.close(out_w)
            os.close(err_w)
            (started, exited) = _until_exit(server, key, events)
            assert started[:2] == (b"s", key) and exited[3] == 3
    finally:
        assert server.close() == 0
        gc.unfreeze()
        for fd in fds:
            os.close(fd)


def test_the_guardian_hears_of_every_task_group_the_server_forks_and_reaps(monkeypatch):
    """The guardian (which SIGKILLs the groups of running tasks if the controller is killed
    with -9) is told ``+pgid`` for every task the server forks and ``-pgid`` once it is reaped,
    also when a reap and the fork of the next queued task happen in one turn of the loop."""
    from flowkernel_runtime_local import forkserver, workers

    guardian_r, guardian_w = os.pipe()
    monkeypatch.setattr(workers, "_guardian_fd", guardian_w)
    server = forkserver.ForkServer.start(_echo_or_sleep, os.getpid())
    assert server is not None
    fds = [guardian_r, guardian_w]
    try:
        server.limit(1)
        for key in (1, 2, 3):  # 2 and 3 wait in the queue: each starts at the reap before it
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            fds += [out_r, err_r]
            server.launch(key, b"ok", out_w, err_w)
            os.close(out_w)
            os.close(err_w)
        events: list[tuple] = []
        pids = []
        for key in (1, 2, 3):
            (started, exited) = _until_exit(server, key, events)
            assert exited == (b"x", key, started[2], 0)
            pids.append(started[2])
    finally:
        assert server.close() == 0
        gc.unfreeze()
    heard = b""
    while heard.count(b"\n") < 6:
        heard += os.read(guardian_r, 4096)
    for fd in fds:
        os.close(fd)
    assert heard.split() == [b"%s%d" % (sign, pid) for pid in pids for sign in (b"+", b"-")]
