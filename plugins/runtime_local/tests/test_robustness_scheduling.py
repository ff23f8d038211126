"""Concurrent runs, --max-workers, --max-num-splits, --run-id-file and --tag."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

LINEAR = rh.flow_file("linear.py")
OVERLAP = rh.flow_file("overlap.py")


def test_two_runs_started_together_in_one_directory(world: rh.Env) -> None:
    env = world.environ()
    del env["FLOWKERNEL_DATASTORE_ROOT"]  # both use ./.flowkernel of the shared directory
    procs = {
        value: world.start(
            "run", LINEAR, "--value", value, "--nap", "0.5", "--run-id-file", f"id-{value}", env=env
        )
        for value in ("left", "right")
    }
    results = {value: rh.communicate(proc) for value, proc in procs.items()}
    for code, out, err in results.values():
        assert code == 0, out + err
    ids = {value: (world.base / f"id-{value}").read_text() for value in procs}
    assert ids["left"] != ids["right"]
    client = world.client()
    client.metadata(str(world.base / ".flowkernel"))
    for value, run_id in ids.items():
        run = client.Run(f"LinearFlow/{run_id}")
        assert run.successful
        assert run.data.echo == value
        assert run["start"].task.data.run_id_seen == run_id
        assert run["start"].task.data.value == value
    assert {r.id for r in client.Flow("LinearFlow")} == set(ids.values())


def test_run_ids_never_collide_even_in_the_same_microsecond(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowkernel.datastore import FlowStore
    from flowkernel.engine import runs

    monkeypatch.setattr(runs.time, "time_ns", lambda: 1_700_000_000_000_000_000)
    store = FlowStore(str(tmp_path), "SomeFlow")
    ids = [runs.allocate_run(store) for _ in range(3)]
    assert len(set(ids)) == 3


def test_max_workers_bounds_the_running_tasks(world: rh.Env) -> None:
    proc = world.start("run", OVERLAP, "--max-workers", "2", "--width", "6")
    controller = psutil.Process(proc.pid)
    most = 0
    while proc.poll() is None:  # sample the run's live task processes while it runs
        most = max(most, len(_live_tasks(controller)))
        time.sleep(0.01)
    code, out, err = rh.communicate(proc)
    assert code == 0, out + err
    assert most <= 2
    # each task waited for company (or for the others to be done): the most seen at once
    together = world.client().Run(f"OverlapFlow/{rh.run_id_of(out)}").data.together
    assert len(together) == 6
    assert max(together) == 2  # never more than two at once, and the two slots were used


def _live_tasks(controller: psutil.Process) -> list[int]:
    """The task processes of the run now: below the controller (its own children, or the fork
    server's), each leading a process group of its own but not a session. Not the fork server
    (in the controller's group), nor the committer's or guardian's intermediate children (the
    same, exiting at once) or the helpers themselves (session leaders)."""
    tasks = []
    try:
        below = controller.children(recursive=True)
    except psutil.Error:
        return tasks
    for child in below:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(child.pid) == child.pid and os.getsid(child.pid) != child.pid:
                tasks.append(child.pid)
        except (psutil.Error, OSError):
            continue  # (it exited meanwhile)
    return tasks


def test_too_many_splits_fails_the_run_clearly(world: rh.Env) -> None:
    result = world.flow("run", OVERLAP, "--width", "5", "--max-num-splits", "3")
    assert result.returncode == 1, result.stdout + result.stderr
    run_id = rh.run_id_of(result.stdout)
    output = result.stdout + result.stderr
    assert "Foreach in step 'start' yielded 5 child steps" in output
    assert "maximum of 3" in output and "--max-num-splits" in output
    assert world.task_dirs("OverlapFlow", run_id, "work") == []
    assert world.executions("work") == []


def test_run_id_file_is_written_before_tasks_and_tags_are_kept(world: rh.Env) -> None:
    id_file = world.base / "run-id"
    result = world.flow(
        "run",
        LINEAR,
        "--run-id-file",
        str(id_file),
        "--tag",
        "team:ml",
        "--tag",
        "nightly",
        ROBUST_RUN_ID_FILE=str(id_file),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = id_file.read_text()
    assert run_id == rh.run_id_of(result.stdout)
    run = world.client().Run(f"LinearFlow/{run_id}")
    start = run["start"].task.data
    assert start.id_file_seen == run_id == start.run_id_seen  # read inside the first task
    assert {"team:ml", "nightly"} <= set(run.tags)
    assert {"team:ml", "nightly"} == set(run.user_tags)
    assert {"team:ml", "nightly"} <= set(start.tags_seen)
