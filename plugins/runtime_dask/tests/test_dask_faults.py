"""Faults on a real cluster: a worker SIGKILLed mid-foreach, Ctrl-C mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from flowkernel.testing_procs import default_sigint, is_alive

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dask_helpers import (
    RUN_TIMEOUT,
    FlowResult,
    flow_command,
    on,
    run_flow,
    subprocess_env,
    wait_for_workers,
)


def _start(root: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    id_file = root.parent / "run-id"
    cmd = flow_command(root, "run", "slow_foreach.py", *args, "--run-id-file", str(id_file))
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(**env),
        start_new_session=True,  # its own process group, as in a terminal
        preexec_fn=default_sigint,  # Ctrl-C reaches it even if pytest was started ignoring it
    )
    return proc, id_file


def _markers(path: Path, count: int, proc: subprocess.Popen) -> list[tuple[int, int, int]]:
    """Wait until ``count`` tasks left their marker: [(index, step pid, worker pid)]."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while len(found := sorted(path.iterdir())) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the tasks never started"
        time.sleep(0.05)
    return [tuple(int(x) for x in f.name.split(".")) for f in found]


def _running(pid: int) -> bool:
    try:
        return is_alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def _finish(proc: subprocess.Popen, root: Path, id_file: Path) -> FlowResult:
    stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    run_id = id_file.read_text().strip()
    return FlowResult(proc.returncode, stdout, stderr, root, "DaskSlowForeachFlow", run_id)


def test_a_worker_killed_mid_foreach_loses_nothing(tmp_path, dask_cluster, no_stray_steps):
    """Dask runs a task again when its worker died; that second execution is a new attempt:
    the first attempt's log and record stay as the dead worker left them."""
    from flowkernel.client import Task

    markers, release = tmp_path / "markers", tmp_path / "release"
    markers.mkdir()
    env = {"FLOWKERNEL_TEST_MARKERS": str(markers), "FLOWKERNEL_TEST_RELEASE": str(release)}
    proc, id_file = _start(tmp_path / "root", "--items", "6", *on(dask_cluster), env=env)
    try:
        item, step_pid, _ = _markers(markers, 1, proc)[0]
        # the step waits for the release: its worker dies mid-task however slow this test is
        os.kill(dask_cluster.worker_of(step_pid), signal.SIGKILL)
        # the step dies with it only once the worker's exit has torn down its memory (the
        # kernel sends PR_SET_PDEATHSIG after that): released earlier, it could finish first
        deadline = time.monotonic() + 60
        while _running(step_pid):
            assert time.monotonic() < deadline, "the step outlived its killed worker"
            time.sleep(0.05)
        release.touch()
        result = _finish(proc, tmp_path / "root", id_file)
    finally:
        proc.kill()
    result.assert_ok()
    # PR_SET_PDEATHSIG: it died with its worker (left a zombie where PID 1 reaps no orphans)
    assert not _running(step_pid)
    run = result.run
    assert run["join"].task.data.squares == [i * i for i in range(6)]
    assert sorted(t.index for t in run["work"] if t.successful) == list(range(6))
    (lost,) = [t for t in run["work"] if t.index == item]
    assert lost.current_attempt == 1, lost.stdout
    assert lost.stdout.count(f"work on item {item} starts") == 1
    assert f"square of {item} is {item * item}" in lost.stdout
    first = Task(lost.pathspec, attempt=0)
    assert first.stdout.count(f"work on item {item} starts") == 1  # nothing appended to it
    assert "square of" not in first.stdout
    assert not first.successful
    assert "The Dask worker running this task died" in first.stderr
    wait_for_workers(dask_cluster.scheduler_file, 2, time.monotonic() + 60)  # nanny restarted it


def _ctrl_c_mid_run(
    tmp_path: Path, *args: str
) -> tuple[FlowResult, list[psutil.Process], list[int]]:
    """Ctrl-C once two steps run; also returns the items of the steps that had started."""
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {"FLOWKERNEL_TEST_MARKERS": str(markers), "FLOWKERNEL_TEST_SLEEP": "120"}
    proc, id_file = _start(tmp_path / "root", "--items", "4", *args, env=env)
    try:
        found = _markers(markers, 2, proc)
        started = [psutil.Process(pid) for _, pid, _ in found]
        started += psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        result = _finish(proc, tmp_path / "root", id_file)  # (bounded: RUN_TIMEOUT)
    finally:
        proc.kill()
    # the steps sleep 120 s, then finish: Ctrl-C stopped them rather than waiting for them
    assert not any(t.successful for t in result.run["work"]), result.output
    return result, started, [item for item, _, _ in found]


def test_ctrl_c_stops_the_steps_on_the_cluster(tmp_path, dask_cluster, no_stray_steps):
    result, started, items = _ctrl_c_mid_run(tmp_path, *on(dask_cluster))
    assert result.returncode == 1, result.output
    assert "Workflow interrupted: stopping every task." in result.stdout
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    stopped = list(result.run["work"])
    assert stopped and not any(t.successful for t in stopped)
    assert len(stopped) == 4  # two ran, two waited on the cluster
    ran = [t for t in stopped if "work on item" in t.stdout]
    assert sorted(int(t.stdout.split()[3]) for t in ran) == sorted(items)
    for task in ran:  # each stopped step's own log says so, as on the local runtime
        assert "The task process was stopped by the runtime (SIGTERM)." in task.stderr
    for task in stopped:  # queued on the cluster behind the running ones: never started
        if task not in ran:
            assert task.stderr == "The task was stopped by the runtime before it started.\n"
            assert task.exception.exception == "the task process never started"


def test_ctrl_c_on_the_embedded_cluster_leaves_no_process(tmp_path, no_stray_steps):
    result, started, _ = _ctrl_c_mid_run(tmp_path, "--runtime", "dask", "--max-workers", "2")
    assert result.returncode == 1, result.output
    # the Ctrl-C reached the cluster's workers too (same process group): they ignore it, and
    # nothing but the run's own last lines reaches the terminal
    assert "Traceback" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[0].endswith("Workflow failed: interrupted"), result.stderr
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, [p.cmdline() for p in alive]  # steps, Dask workers, nannies, all of them


def test_a_process_left_behind_by_a_step_is_ended(tmp_path, dask_cluster):
    result = run_flow(tmp_path / "root", "stray.py", *on(dask_cluster)).assert_ok()
    assert "left a sleeper behind" in result.stdout
    stray = result.run["start"].task.data.stray_pid
    assert not psutil.pid_exists(stray) or psutil.Process(stray).status() == "zombie"


def test_a_killed_controller_leaves_no_step_running_on_the_cluster(tmp_path, dask_cluster):
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {"FLOWKERNEL_TEST_MARKERS": str(markers), "FLOWKERNEL_TEST_SLEEP": "120"}
    proc, _ = _start(tmp_path / "root", "--items", "2", *on(dask_cluster), env=env)
    try:
        steps = [psutil.Process(pid) for _, pid, _ in _markers(markers, 2, proc)]
        proc.kill()  # kill -9: nothing of the controller runs any more
        proc.wait()
        _, alive = psutil.wait_procs(steps, timeout=30)
    finally:
        proc.kill()
    assert not alive, [p.cmdline() for p in alive]  # the scheduler let go of the tasks
