"""The fork server's queue (lookahead): the dispatcher launches up to twice ``--max-workers``
attempts, the server runs ``--max-workers`` of them and starts a queued one when a task exits.

Users must not notice it except by speed: the bound on running tasks, @timeout counted from a
task's real start, fail-fast, Ctrl-C, retries, a dying fork server, the console's order and the
live display's counts behave as without a queue; a queued attempt that is stopped before it
started leaves no trace (no task directory, record or log)."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

from flowkernel_runtime_local.controller import TIMEOUT_GRACE

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the fork server is Linux-only"
)

QUEUE = rh.flow_file("queued.py")
ORDER = rh.flow_file("queue_order.py")


def _running(world: rh.Env, run_id: str, n: int, attempt: int = 0) -> list[psutil.Process]:
    """Wait until ``n`` work attempts ``attempt`` are running; their processes."""

    def found() -> list[str]:
        return [m for m in world.executions("work", run_id) if m.split(".")[3] == str(attempt)]

    rh.wait_for(lambda: len(found()) >= n, what=f"{n} running work tasks")
    return [psutil.Process(int(m.split(".")[4])) for m in found()]


def _live_children(proc: psutil.Process) -> list[psutil.Process]:
    return [c for c in proc.children() if rh.is_alive(c)]


def _pipes(pid: int) -> set[str]:
    found = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # (gone)
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:"):
            found.add(target)
    return found


def _queued(controller: int, server: int) -> int:
    """Launches waiting in the fork server's queue: each holds the write ends of its task's
    two pipes there, whose read ends the controller holds (the only other pipes both hold
    are the guardian's and those of the controller's other children, such as the S3 agent,
    which the server inherited; a forked task's pipe ends are closed in the server)."""
    shared = _pipes(controller) & _pipes(server)
    for child in psutil.Process(controller).children():
        if child.pid != server:
            shared -= _pipes(child.pid)
    return max(0, len(shared) - 1) // 2


def _server_of(tasks: list[psutil.Process], controller: int) -> psutil.Process:
    server = psutil.Process(tasks[0].ppid())
    assert server.ppid() == controller
    return server


def _start_queue_run(world: rh.Env, *args: str, env: dict[str, str] | None = None):
    proc = world.start("run", QUEUE, "--max-workers", "2", "--run-id-file", "id", *args, env=env)
    run_id = rh.wait_for(lambda: (world.base / "id").exists() and (world.base / "id").read_text())
    return proc, run_id


@pytest.mark.parametrize(
    ("how", "env", "queued"),
    [
        ("fork", {}, 2),  # 2 running, 2 queued on the fork server
        ("fork", {"FLOWKERNEL_FORK_LOOKAHEAD": "0"}, 0),
        ("fork", {"FLOWKERNEL_FORK_SERVER": "0"}, None),
        ("pool", {}, None),
        ("spawn", {}, None),
    ],
)
def test_at_most_max_workers_tasks_run_whatever_is_queued(world, how, env, queued):
    proc, run_id = _start_queue_run(world, "--isolation", how, env=world.environ(**env))
    tasks = _running(world, run_id, 2)
    if queued is not None:
        server = _server_of(tasks, proc.pid)
        rh.wait_for(lambda: _queued(proc.pid, server.pid) >= queued, what="the queue filled")
        assert _queued(proc.pid, server.pid) == queued
        assert len(_live_children(server)) == 2  # the queued ones are not forked
    # a task directory is made at launch (the task writes into it): queued ones have theirs
    assert len(world.task_dirs("QueueFlow", run_id, "work")) == 2 + (queued or 0)
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
    hold = psutil.Process(int(world.executions("hold_a")[0].split(".")[4]))
    server = _server_of([hold], proc.pid)
    rh.wait_for(lambda: _queued(proc.pid, server.pid) == 1, what="quick queued")
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
    assert "Step work (task-id 2) failed." in err
    # item 0 failed, item 1 was running (stopped); items 2 and 3 were queued: never started,
    # and nothing says they were ever there, as without the queue (where they would not have
    # been launched)
    assert len(world.executions("work", run_id)) == 2
    run = world.client().Run(f"QueueFlow/{run_id}")
    tasks = sorted(run["work"], key=lambda t: int(t.id))
    assert [t.id for t in tasks] == ["2", "3"]  # task ids follow the launch order
    assert "item 0 is broken" in tasks[0].stderr
    assert "killed by SIGTERM" in tasks[1].exception.exception
    assert len(world.task_dirs("QueueFlow", run_id, "work")) == 2
    assert "never started" not in out + err
    assert out.count("Task is starting") == 3  # start, items 0 and 1
    rh.assert_all_gone([], world.tag)


def test_on_s3_the_dropped_attempts_leave_nothing_and_resume_runs_them(
    world, s3_root, restore_client
):
    """On an object store a start mark cannot be taken back (a write-once ``<k>.started``
    object): the attempts fail-fast drops from the queue must not have one, nor a record or a
    log, for the client, ``flow logs`` and ``flow resume`` to see what they see on a local
    root."""
    from flowkernel.storage.backend import forget_backends, open_backend
    from flowkernel.testing_procs import point_client_at

    env = world.environ(FLOWKERNEL_DATASTORE_ROOT=s3_root)
    proc, run_id = _start_queue_run(world, "--fail", "0", env=env)
    code, out, err = rh.communicate(proc)
    assert code == 1, out + err
    assert "Step work (task-id 2) failed." in err
    assert len(world.executions("work", run_id)) == 2  # items 2 and 3 were queued, dropped
    assert "never started" not in out + err
    # the store holds items 0 and 1 only: no marker, record or log of the dropped ones
    backend = open_backend(s3_root)
    work = f"QueueFlow/{run_id}/work/"
    assert sorted(backend.list(work)) == ["2/", "3/"]
    for task in ("2", "3"):
        assert "0.started" in backend.list(f"{work}{task}/")  # (they did start)
    point_client_at(s3_root)
    from flowkernel import client

    run = client.Run(f"QueueFlow/{run_id}")
    tasks = sorted(run["work"], key=lambda t: int(t.id))
    assert [t.id for t in tasks] == ["2", "3"]
    assert "item 0 is broken" in tasks[0].stderr
    assert "killed by SIGTERM" in tasks[1].exception.exception
    logs = world.flow("logs", "--stderr", f"QueueFlow/{run_id}/work", env=env)
    assert logs.returncode == 0, logs.stdout + logs.stderr
    headers = re.findall(r"--- QueueFlow/\d+/work/(\d+) \(attempt (\d+)\) ---", logs.stderr)
    assert headers == [("2", "0"), ("3", "0")], logs.stderr
    assert "item 0 is broken" in logs.stdout
    # resume runs every item again (none finished), each once, as new tasks after 2 and 3
    world.release()
    resumed = world.flow("resume", QUEUE, "--max-workers", "2", "--run-id-file", "rid",
                         env={**env, "ROBUST_FIXED": "1"})  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    new_id = (world.base / "rid").read_text()
    forget_backends()
    point_client_at(s3_root)
    again = client.Run(f"QueueFlow/{new_id}")
    assert again.successful and len(list(again["work"])) == 6
    assert max(again.data.together) == 2
    assert len(world.executions("work", new_id)) == 6
    rh.assert_all_gone([], world.tag)


def test_on_s3_a_killed_fork_servers_queued_attempts_leave_no_marker_of_their_first_launch(
    world, s3_root, restore_client
):
    """The queued attempts a dying fork server loses are withdrawn and launched again as the
    same attempt: on S3 (write-once markers) each has one ``0.started``, from the run that
    counted, and the client shows them as first attempts that succeeded."""
    from flowkernel.storage.backend import open_backend
    from flowkernel.testing_procs import point_client_at

    proc, run_id = _start_queue_run(world, env=world.environ(FLOWKERNEL_DATASTORE_ROOT=s3_root))
    tasks = _running(world, run_id, 2)
    server = _server_of(tasks, proc.pid)
    rh.wait_for(lambda: _queued(proc.pid, server.pid) == 2, what="the queue filled")
    server.kill()
    rh.wait_for(lambda: "is gone" in rh.console(proc)[1], what="the server's death told")
    world.release()
    code, out, err = rh.communicate(proc)
    assert code == 0, out + err
    assert "2 queued task(s) had not started and will start from here" in err
    backend = open_backend(s3_root)
    work = f"QueueFlow/{run_id}/work/"
    assert sorted(backend.list(work), key=lambda n: int(n[:-1])) == [f"{i}/" for i in range(2, 8)]
    for task_id in ("4", "5"):  # the two that were queued
        names = backend.list(f"{work}{task_id}/")
        assert [n for n in names if n.endswith(".started")] == ["0.started"], names
    point_client_at(s3_root)
    from flowkernel import client

    run = client.Run(f"QueueFlow/{run_id}")
    assert run.successful and max(run.data.together) == 2
    attempts = {t.id: t.current_attempt for t in run["work"]}
    assert attempts == {"2": 1, "3": 1, "4": 0, "5": 0, "6": 0, "7": 0}
    assert "never started" not in out + err
    rh.assert_all_gone([], world.tag)


def test_ctrl_c_stops_the_running_tasks_and_drops_the_queued_ones(world):
    proc, run_id = _start_queue_run(world)
    tasks = _running(world, run_id, 2)
    server = _server_of(tasks, proc.pid)
    rh.wait_for(lambda: _queued(proc.pid, server.pid) == 2, what="the queue filled")
    tree = [psutil.Process(proc.pid), *rh.descendants(proc.pid)]
    os.killpg(proc.pid, signal.SIGINT)
    code, out, err = rh.communicate(proc, timeout=30)
    assert code == 1 and "Workflow interrupted" in out, out + err
    assert "Traceback" not in out + err
    rh.assert_all_gone([*tree, *tasks], world.tag)
    assert len(world.executions("work", run_id)) == 2
    run = world.client().Run(f"QueueFlow/{run_id}")
    assert len(list(run["work"])) == 2 and not any(t.successful for t in run["work"])
    assert "never started" not in out + err


def test_a_killed_fork_server_loses_its_queue_too_and_the_controller_keeps_the_bound(world):
    proc, run_id = _start_queue_run(world)
    tasks = _running(world, run_id, 2)
    server = _server_of(tasks, proc.pid)
    rh.wait_for(lambda: _queued(proc.pid, server.pid) == 2, what="the queue filled")
    server.kill()
    # the 4 lost attempts run again, forked by the controller: 2 now, 2 held back
    killed = {t.pid for t in tasks}

    def again() -> list[psutil.Process]:
        pids = [int(m.split(".")[4]) for m in world.executions("work", run_id)]
        return [psutil.Process(pid) for pid in pids if pid not in killed]

    retries = rh.wait_for(lambda: len(again()) >= 2 and again(), what="2 work tasks again")
    assert {t.ppid() for t in retries} == {proc.pid}
    assert len(_live_children(psutil.Process(proc.pid))) == 2
    world.release()
    code, out, err = rh.communicate(proc)
    assert code == 0, out + err
    assert f"The fork server (pid {server.pid}) is gone (killed by SIGKILL)" in err
    assert "2 running task(s) died with it and will run again" in err
    assert "2 queued task(s) had not started and will start from here" in err
    run = world.client().Run(f"QueueFlow/{run_id}")
    assert run.successful
    assert max(run.data.together) == 2  # the controller's backlog kept the bound too
    assert len(list(run["work"])) == 6
    lost = [t for t in run["work"] if t.current_attempt == 1]
    assert len(lost) == 2 and all(t.successful for t in lost)  # the 2 that were running
    client = world.client()
    for task in lost:
        assert "killed by SIGKILL" in client.Task(task.pathspec, attempt=0).exception.exception
    # the 2 queued ones ran as their first attempt (they had not started), as did the 2 not
    # launched when the server died; nothing says the queued ones ever waited
    firsts = [m for m in world.executions("work", run_id) if m.split(".")[3] == "0"]
    assert len(firsts) == 2 + 2 + 2
    assert "never started" not in out + err
    rh.assert_all_gone([], world.tag)


_DIES_AFTER_A_FORK = """
import os
import signal

from flowkernel_runtime_local import forkserver

_fork, _forks = forkserver._Server._fork, []


def _fork_then_die(self, key, request, out_w, err_w):
    started = _fork(self, key, request, out_w, err_w)
    _forks.append(key)
    if len(_forks) == int(os.environ["FK_SERVER_DIES_AT_FORK"]):
        os.kill(os.getpid(), signal.SIGKILL)  # after the fork, before its start is told
    return started


forkserver._Server._fork = _fork_then_die
"""


def test_a_task_forked_just_before_the_server_died_counts_as_started(world, tmp_path):
    """The server dies after it forked a task but before it told the controller (its
    *started* event never sent): that task may have run, so it is lost like a running one
    (run again as its next attempt, its first one recorded as killed), not taken for a queued
    one that never started and quietly launched again as the same attempt."""
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(_DIES_AFTER_A_FORK)
    env = world.environ(PYTHONPATH=str(spy), FK_SERVER_DIES_AT_FORK="3")  # start, work 2, 3
    proc, run_id = _start_queue_run(world, env=env)
    rh.wait_for(lambda: "is gone" in rh.console(proc)[1], what="the server's death told")
    world.release()
    code, out, err = rh.communicate(proc)
    assert code == 0, out + err
    assert "2 running task(s) died with it and will run again" in err
    assert "2 queued task(s) had not started and will start from here" in err
    run = world.client().Run(f"QueueFlow/{run_id}")
    assert run.successful and max(run.data.together) == 2
    attempts = {t.id: t.current_attempt for t in run["work"]}
    assert attempts == {"2": 1, "3": 1, "4": 0, "5": 0, "6": 0, "7": 0}
    client = world.client()
    for task_id in ("2", "3"):
        lost = client.Task(f"QueueFlow/{run_id}/work/{task_id}", attempt=0)
        assert "killed by SIGKILL" in lost.exception.exception
    rh.assert_all_gone([], world.tag)


def test_a_gang_never_waits_behind_queued_tasks(world):
    result = world.flow("run", rh.flow_file("gang_queue.py"), "--max-workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(world.executions("train")) == 3 and len(world.executions("work")) == 8


@pytest.mark.parametrize("env", [{}, {"FLOWKERNEL_FORK_LOOKAHEAD": "0"}])
def test_the_console_tells_one_task_after_the_other_with_one_worker(world, env):
    """With ``--max-workers 1`` the console reads as one task after the other: each task's
    "starting", its output and its "finished", then the next (the fork server starts the
    queued task before the controller reads the exit of the previous one)."""
    result = world.flow("run", ORDER, "--max-workers", "1", env=world.environ(**env))
    assert result.returncode == 0, result.stdout + result.stderr
    told = [m.groups() for m in re.finditer(r"\[\d+/(\w+)/(\d+)\] (.*)", result.stdout)]
    runs: list[tuple[str, list[str]]] = []  # (task id, what was said), one per stretch
    for _, task_id, text in told:
        if not runs or runs[-1][0] != task_id:
            runs.append((task_id, []))
        runs[-1][1].append(text)
    assert [task_id for task_id, _ in runs] == [str(i) for i in range(1, 8)], told
    for task_id, texts in runs:
        assert texts[0] == "Task is starting." and texts[-1] == "Task finished successfully."
        if 2 <= int(task_id) <= 5:  # the foreach's items print their line in between
            assert texts[1:-1] == [f"item {int(task_id) - 2} attempt 0"]


def test_a_retry_takes_the_next_free_slot_before_the_queued_tasks(world):
    """As without the queue: the retry of a failed task starts in the slot its failure freed,
    not behind the tasks the fork server queued meanwhile."""
    result = world.flow("run", ORDER, "--max-workers", "1", "--flaky", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    starts = re.findall(r"/work/(\d+)\] Task is starting(?: \(retry (\d)\))?\.", result.stdout)
    assert starts == [("2", ""), ("2", "1"), ("3", ""), ("4", ""), ("5", "")], result.stdout


def test_a_task_that_exits_0_without_its_record_holds_the_queue_like_a_failure(world):
    """``os._exit(0)`` in a step: exit code 0, no record, a failure. No queued task starts
    before the runtime has handled it: its retry runs next, then the run fails (fail-fast)
    with items 1 to 3 never started, as without the queue."""
    result = world.flow("run", ORDER, "--max-workers", "1", "--vanish", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    starts = re.findall(r"/work/(\d+)\] Task is starting", result.stdout)
    assert starts == ["2", "2"], result.stdout  # item 0, then its retry; nothing else
    assert len(world.executions("work")) == 2
    assert "Step work (task-id 2) failed." in result.stderr


@pytest.mark.parametrize("how", ["os._exit", "sys.exit"])
def test_a_task_that_exits_121_itself_is_a_failure_like_any_other_exit_code(world, how):
    """121 is the code the fork server's children exit with when the step ran to its end
    (``forkserver.DONE``); a step that exits with it itself is still a failure like with
    any other code: named in the messages, retried (@retry), and holding its slot so that
    no queued task starts before the run has failed (fail-fast)."""

    def outcome(code: int) -> tuple:
        result = world.flow("run", ORDER, "--max-workers", "1", "--vanish", "0",
                            "--code", str(code), "--how", how)  # fmt: skip
        run_id = rh.run_id_of(result.stdout)
        starts = re.findall(r"/work/(\d+)\] Task is starting", result.stdout)
        said = [  # what the console said of the failure, the code as CODE
            re.sub(rf"\b{code}\b", "CODE", re.sub(r"^[\d:.]+ ", "", line.replace(run_id, "RUN")))
            for line in (result.stdout + result.stderr).splitlines()
            if re.search(r"exited|failed|Exit", line)
        ]
        task = world.client().Task(f"QueueOrderFlow/{run_id}/work/2")
        failure = re.sub(rf"\b{code}\b", "CODE", str(task.exception))
        return (result.returncode, starts, len(world.executions("work", run_id)),
                task.current_attempt, said, failure)  # fmt: skip

    mine, other = outcome(121), outcome(3)
    assert mine[:4] == other[:4] == (1, ["2", "2"], 2, 1)  # failed, retried, nothing queued ran
    assert mine[4] == other[4] and any("CODE" in line for line in mine[4]), mine[4]
    assert mine[5] == other[5] and "CODE" in mine[5]


def _read_all(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:  # EIO once the other side is closed
            return
        if not chunk:
            return
        into += chunk


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_the_live_display_counts_the_tasks_running_not_the_queued_ones(world):
    master, slave = pty.openpty()
    env = world.environ(TERM="xterm-256color", COLUMNS="120")
    cmd = [rh.FLOW_BIN, "run", QUEUE, "--max-workers", "2", "--run-id-file", "id"]
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=world.base,
                            env=env, start_new_session=True)  # fmt: skip
    os.close(slave)
    screen = bytearray()
    reader = threading.Thread(target=_read_all, args=(master, screen), daemon=True)
    reader.start()
    frame = re.compile(rb"work +\S+ +(\d+)/6 done +(\d+) running")
    try:
        id_file = world.base / "id"
        run_id = rh.wait_for(lambda: id_file.exists() and id_file.read_text())
        tasks = _running(world, run_id, 2)
        server = _server_of(tasks, proc.pid)
        rh.wait_for(lambda: _queued(proc.pid, server.pid) == 2, what="the queue filled")
        since = len(screen)  # a frame drawn from now on shows 2 running and 2 queued
        rh.wait_for(lambda: frame.search(bytes(screen[since:])), what="a frame")
        world.release()
        assert proc.wait(timeout=rh.CMD_TIMEOUT) == 0
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", bytes(screen))
    counts = [(int(done), int(running)) for done, running in frame.findall(text)]
    assert counts and max(running for _, running in counts) == 2, counts
    assert counts[-1] == (6, 0)
    assert re.search(rb"QueueFlow/\d+ +9/9 tasks done +0 running", text), text
