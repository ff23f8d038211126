"""Group commit: task records are durable (file and directory fsync'd; the file alone on ext4,
where that makes its name durable too) before anything that depends on them is called back,
whether the helper process does it or, once it died, the controller itself."""

from __future__ import annotations

import json
import os
import select
import signal
import time
from pathlib import Path

import psutil
import pytest

from flowkernel_runtime_local import commit
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


@pytest.fixture(params=["any file system", "ext4"])
def names_durable(request, tmp_path, monkeypatch) -> bool:
    """Run the test as on a file system that needs directories fsync'd (the POSIX case) and as
    on one whose file fsync makes the name durable (ext4: whatever tmp_path's type is, it is
    declared so). True: the second."""
    ext4 = request.param == "ext4"
    types = {os.stat(tmp_path).st_dev: "ext4" if ext4 else "some-fs"}
    monkeypatch.setattr(commit, "_mount_types", types)
    monkeypatch.setattr(commit, "_dir_fsync", {})
    monkeypatch.setattr(commit, "_entered", set())
    return ext4


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
def test_callbacks_come_after_the_helper_fsynced_each_record_and_its_directory(
    tmp_path, fsync_log, names_durable
):
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
            assert path in done
            assert (os.path.dirname(path) in done) is not names_durable
    fsynced_by = {pid for pid, _ in synced(fsync_log)}
    assert len(fsynced_by) == 1 and os.getpid() not in fsynced_by  # the helper did it all
    assert committer.pending == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_a_new_task_directory_is_made_reachable_once_per_batch_not_once_per_record(
    tmp_path, fsync_log, names_durable
):
    """A record survives a power loss only if the names leading to it do: its task
    directory's entry in the step directory (the ``mkdir`` at the task's launch), the step's
    in the run's, the run's in the flow's. Each of those directories is fsync'd once for the
    new entries of a batch (not once per record), and a later attempt's record in a task
    directory made durable before costs no more; on ext4 none of them is fsync'd (the
    record's fsync does it)."""
    real = os.path.realpath(tmp_path)
    step, run = os.path.join(real, "run", "body"), os.path.join(real, "run")
    committer = Committer().start()
    called: list[list[str]] = []
    try:
        paths = [record(tmp_path, str(i)) for i in range(3)]
        committer.submit(paths, lambda: called.append([p for _, p in synced(fsync_log)]))
        drain(committer, lambda: len(called) == 1)
        retry = tmp_path / "run" / "body" / "0" / "1.record.json"
        retry.write_text("{}")
        committer.submit([str(retry)], lambda: called.append([p for _, p in synced(fsync_log)]))
        drain(committer, lambda: len(called) == 2)
    finally:
        committer.close()
    first, both = called
    for folder in (step, run, real):
        assert first.count(folder) == (0 if names_durable else 1), (folder, first)
        assert both.count(folder) == first.count(folder)  # the retry's directory was durable
    assert (os.path.dirname(str(retry)) in both[len(first) :]) is not names_durable


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_a_dead_helper_loses_nothing_the_controller_fsyncs_in_its_place(
    tmp_path, fsync_log, names_durable
):
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
    for folder in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        assert ((os.getpid(), folder) in synced(fsync_log)) is not names_durable


_MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
24 22 0:22 / /tmp rw,nosuid,nodev shared:6 master:1 - tmpfs tmpfs rw,size=1024k
25 22 253:1 / /data rw,relatime - xfs /dev/mapper/data rw,attr2
26 22 254:0 /srv /mnt/srv rw,relatime shared:1 - ext4 /dev/vda rw,discard
not a mount line
"""


def test_only_ext4_mounts_skip_the_directory_fsync(monkeypatch):
    types = commit.mount_types(_MOUNTINFO)
    assert types == {
        os.makedev(254, 0): "ext4",
        os.makedev(0, 21): "proc",
        os.makedev(0, 22): "tmpfs",
        os.makedev(253, 1): "xfs",
    }
    monkeypatch.setattr(commit, "_mount_types", types)
    assert not commit.dir_fsync_needed(os.makedev(254, 0))
    for dev in (os.makedev(253, 1), os.makedev(0, 22), os.makedev(9, 9)):  # xfs, tmpfs, unknown
        assert commit.dir_fsync_needed(dev)


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

if os.environ.get("FK_AS_POSIX") == "1":  # as on a file system that is not ext4
    import flowkernel_runtime_local.commit

    flowkernel_runtime_local.commit.NAMES_DURABLE_WITH_FILE = frozenset()
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
@pytest.mark.parametrize("as_posix", ["1", "0"], ids=["any file system", "this one"])
def test_successors_start_on_durable_records_that_no_task_process_fsynced(
    tmp_path, run_flow_at, as_posix
):
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(_SPY)
    log = tmp_path / "fsynced.log"
    log.touch()
    env = {"PYTHONPATH": str(spy), "FK_FSYNC_LOG": str(log), "FK_AS_POSIX": as_posix}
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


def test_the_helper_s_pid_read_late_still_calls_back_what_came_with_it(tmp_path):
    """start() does not wait for the helper: its pid comes first on the acknowledgements and is
    read with them; asking for it after a batch was acknowledged calls that batch back too."""
    committer = Committer().start()
    try:
        called: list[str] = []
        committer.submit([record(tmp_path, "1")], lambda: called.append("done"))
        deadline = time.monotonic() + 10
        while not called and time.monotonic() < deadline:
            select.select([committer.fd], [], [], 0.1)
            if committer._pid is None:
                assert committer.pid is not None  # reads the pid, and the ack if it came along
            else:
                committer.read_acks()
        assert called == ["done"]
        assert psutil.Process(committer.pid).status() != psutil.STATUS_ZOMBIE
    finally:
        committer.close()
