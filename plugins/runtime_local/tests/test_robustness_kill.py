"""kill -9 of the controller in the middle of a 200-task foreach, then `flow resume`."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

FLOW = rh.flow_file("big_foreach.py")
NAME = "BigForeachFlow"
N = 200
OPTS = ("--max-workers", "4", "--max-num-splits", "500")


def _finished_records(step_dir: Path) -> int:
    return len(list(step_dir.glob("*/*.record.json"))) if step_dir.is_dir() else 0


def _status(world: rh.Env, run_id: str) -> str:
    result = world.flow("runs", NAME, "--json")
    assert result.returncode == 0, result.stderr
    return next(run["status"] for run in json.loads(result.stdout) if run["run_id"] == run_id)


def test_kill_9_mid_foreach_leaves_clean_state_and_resume_completes(world: rh.Env) -> None:
    id_file = world.base / "id"
    proc = world.start("run", FLOW, *OPTS, "--run-id-file", str(id_file))
    run_id = rh.wait_for(lambda: id_file.exists() and id_file.read_text())
    work_dir = world.run_dir(NAME, run_id) / "work"
    rh.wait_for(lambda: _finished_records(work_dir) >= 40, what="40 finished foreach tasks")
    controller = psutil.Process(proc.pid)
    tree = [controller, *controller.children(recursive=True)]
    assert _status(world, run_id) == "running"
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    rh.console(proc)
    assert proc.returncode == -signal.SIGKILL
    # a dead controller's run will never end: `flow runs` does not call it running
    assert _status(world, run_id) == "crashed"

    # no task outlives its controller for more than a few seconds
    rh.assert_all_gone(tree, world.tag, timeout=15.0)

    # every record is complete JSON; a temporary file is never taken for a record
    records = list(world.run_dir(NAME, run_id).glob("*/*/*.record.json"))
    for path in records:
        record = json.loads(path.read_text())
        assert record["run_id"] == run_id, path
        assert record["step"] in ("_parameters", "start", "work"), path
    task_dirs = world.task_dirs(NAME, run_id, "work")
    done = [r for r in world.records(NAME, run_id, "work") if r["task_ok"]]
    assert 40 <= len(done) < N
    client = world.client()
    run = client.Run(f"{NAME}/{run_id}")
    assert len(list(run["work"])) == len(task_dirs)
    assert sum(t.finished for t in run["work"]) == len(done)
    assert not run.finished
    # what a crash in the middle of an atomic write leaves: a temporary file, never a record
    unfinished = [d for d in task_dirs if not list(d.glob("*.record.json"))]
    recorded = [d for d in task_dirs if d not in unfinished]
    for tdir in [*unfinished, recorded[0]]:
        (tdir / "1.record.json.0123abcd.tmp").write_text('{"run_id": "trunc')
    assert sum(t.finished for t in client.Run(f"{NAME}/{run_id}")["work"]) == len(done)
    executed_before = len(world.executions("work", run_id))

    result = world.flow("resume", FLOW, "--origin-run-id", run_id, *OPTS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    new_id = rh.run_id_of(result.stdout)
    # the plan names the foreach body twice: partly cloned, partly run again
    plan = [line for line in result.stdout.splitlines() if "Run again:" in line]
    assert plan and "work (unfinished tasks)" in plan[0]
    new = client.Run(f"{NAME}/{new_id}")
    assert new.successful
    assert new.data.count == N
    assert new.data.total == sum(i * i for i in range(N))
    work = world.records(NAME, new_id, "work")
    assert len(work) == N and all(r["task_ok"] for r in work)
    cloned = [r for r in work if r.get("cloned")]
    assert len(cloned) == len(done)
    assert {r["split_index"] for r in cloned} == {r["split_index"] for r in done}
    assert len(world.executions("work", new_id)) == N - len(done)
    assert executed_before >= len(done)
    # the origin's unfinished tasks are not resurrected, the new run has nothing half-done
    assert not list(world.run_dir(NAME, new_id).glob("*/*/*.tmp"))
    assert len(unfinished) == len(task_dirs) - len(done)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupting_the_controller_stops_every_task(world: rh.Env, sig: int) -> None:
    """SIGTERM to the controller, or Ctrl-C (SIGINT to its process group, as a terminal does)."""
    proc = world.start("run", FLOW, "--n", "3", "--nap", "60", "--run-id-file", "id")
    run_id = rh.wait_for(lambda: (world.base / "id").exists() and (world.base / "id").read_text())
    rh.wait_for(lambda: len(world.executions("work", run_id)) == 3, what="3 running tasks")
    tree = [psutil.Process(proc.pid), *rh.descendants(proc.pid)]
    assert len(tree) == 5  # the controller, its fork server, the 3 tasks the server forked
    os.killpg(proc.pid, sig)
    code, out, err = rh.communicate(proc, timeout=20)
    assert code == 1, out + err
    assert "Workflow interrupted" in out
    assert "Traceback" not in out + err
    rh.assert_all_gone(tree, world.tag, timeout=15.0)
    assert not any(r["task_ok"] for r in world.records(NAME, run_id, "work"))
