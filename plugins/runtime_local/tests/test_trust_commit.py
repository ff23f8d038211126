"""Group commit: task records are durable (file and directory fsync'd) before anything that
depends on them is called back, whether the helper process does it or, once it died, the
controller itself."""

from __future__ import annotations

import json
import os
import select
import signal
import time
from pathlib import Path

import psutil
import pytest

from flowkernel_runtime_local.commit import Committer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the helper is forked")


@pytest.fixture
def fsync_log(tmp_path, monkeypatch) -> Path:
    """Every fsync, in this process and in processes forked from it: ``pid path`` lines."""
    log = tmp_path / "fsynced.log"
    real = os.fsync

    def spy(fd: int) -> None:
        real(fd)
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {os.readlink(f'/proc/self/fd/{fd}')}\n")

    monkeypatch.setattr(os, "fsync", spy)
    return log


def synced(log: Path) -> list[tuple[int, str]]:
    if not log.exists():
        return []
    return [
        (int(pid), path)
        for pid, path in (line.split(" ", 1) for line in log.read_text().splitlines())
    ]


def record(tmp_path: Path, task: str) -> str:
    folder = tmp_path / "run" / "body" / task
    folder.mkdir(parents=True)
    path = folder / "0.record.json"
    path.write_text("{}")
    return str(path)


def drain(committer: Committer, until) -> None:
    for _ in range(200):
        if until():
            return
        select.select([committer.fd], [], [], 0.1)
        committer.read_acks()
    raise AssertionError("the committer never called back")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_callbacks_come_after_the_helper_fsynced_each_record_and_its_directory(tmp_path, fsync_log):
    committer = Committer().start()
    try:
        paths = [record(tmp_path, str(i)) for i in range(3)]
        seen: list[tuple[str, list[tuple[int, str]]]] = []
        committer.submit(paths[:2], lambda: seen.append(("first", synced(fsync_log))))
        committer.submit(paths[2:], lambda: seen.append(("second", synced(fsync_log))))
        assert committer.pending == 2
        drain(committer, lambda: len(seen) == 2)
    finally:
        committer.close()
    assert [name for name, _ in seen] == ["first", "second"]  # in submission order
    for (_, at_callback), mine in zip(seen, (paths[:2], paths[2:]), strict=True):
        done = {path for _, path in at_callback}
        for path in mine:
            assert path in done and os.path.dirname(path) in done
    fsynced_by = {pid for pid, _ in synced(fsync_log)}
    assert len(fsynced_by) == 1 and os.getpid() not in fsynced_by  # the helper did it all
    assert committer.pending == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_a_dead_helper_loses_nothing_the_controller_fsyncs_in_its_place(tmp_path, fsync_log):
    committer = Committer().start()
    assert committer.pid is not None
    os.kill(committer.pid, signal.SIGKILL)
    while psutil.pid_exists(committer.pid) and psutil.Process(committer.pid).status() != "zombie":
        time.sleep(0.01)
    called: list[str] = []
    path = record(tmp_path, "7")
    committer.submit([path], lambda: called.append("done"))  # the pipe is broken, or ...
    if not called:
        drain(committer, lambda: bool(called))  # ... EOF on the acknowledgements
    committer.close()
    assert called == ["done"]
    assert (os.getpid(), path) in synced(fsync_log)
    assert (os.getpid(), os.path.dirname(path)) in synced(fsync_log)


def test_close_waits_for_every_pending_record(tmp_path, fsync_log):
    committer = Committer().start()
    called: list[int] = []
    paths = [record(tmp_path, str(i)) for i in range(20)]
    for i, path in enumerate(paths):
        committer.submit([path], lambda i=i: called.append(i))
    committer.close()
    assert called == list(range(20))
    assert {p for p in paths} <= {path for _, path in synced(fsync_log)}


_SPY = """
import json
import os

_real_fsync = os.fsync


def _spy(fd):
    _real_fsync(fd)
    with open(os.environ["FK_FSYNC_LOG"], "a") as fh:
        fh.write(f"{os.getpid()} {os.readlink(f'/proc/self/fd/{fd}')}\\n")


os.fsync = _spy
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_successors_start_on_durable_records_that_no_task_process_fsynced(tmp_path, run_flow_at):
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(_SPY)
    log = tmp_path / "fsynced.log"
    log.touch()
    env = {"PYTHONPATH": str(spy), "FK_FSYNC_LOG": str(log)}
    # every step checks its inputs' records were fsync'd before it started (see the flow)
    result = run_flow_at(tmp_path / "datastore", "durable_flow.py", env=env).assert_ok()
    fsynced = synced(log)
    for step in ("start", "body", "join", "end"):
        for task in result.tasks(step):
            folder = os.path.realpath(tmp_path / "datastore" / task.pathspec)
            path = os.path.join(folder, "0.record.json")
            by = {pid for pid, p in fsynced if p == path}
            assert by, f"{path} was never fsync'd (the run said Done)"
            task_pid = json.loads(Path(path).read_text())["pid"]
            assert task_pid not in by  # the group commit did it, not the task process
