"""A failing step fails the run and stops its siblings; `flow resume` after the fix completes it.

One failed run (module fixture) is inspected, resumed with the "fix", then resumed again from
a step. Real `flow` processes throughout; executions are counted with marker files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

FLOW = rh.flow_file("fail_resume.py")
NAME = "FailResumeFlow"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> rh.Env:
    env = rh.Env(tmp_path_factory.mktemp("fail_resume"))
    yield env
    rh.kill_tagged(env.tag)


@pytest.fixture(scope="module")
def failed(world: rh.Env) -> dict:
    """`flow run --alpha 7`: boom raises while sleeper (and its children) are running."""
    proc = world.start("run", FLOW, "--alpha", "7", "--run-id-file", str(world.base / "id"))
    run_id = rh.wait_for(lambda: (world.base / "id").exists() and (world.base / "id").read_text())
    ready = world.marker(f"ready.sleeper.{run_id}")
    rh.wait_for(ready.exists, what="the sleeper task to start its children")
    # everything the controller runs right now: workers, the sleeper's child, sh's orphan
    tree = [psutil.Process(proc.pid), *rh.descendants(proc.pid)]
    tree += rh.tagged_processes(world.tag)
    world.release(f"go.boom.{run_id}")
    code, out, err = rh.communicate(proc)
    return {
        "run_id": run_id,
        "code": code,
        "out": out,
        "err": err,
        "tree": tree,
        "sleeper_child": int(ready.read_text()),
    }


def test_failed_step_fails_the_run_with_exit_code_1(failed: dict) -> None:
    assert failed["code"] == 1, failed["out"] + failed["err"]
    assert "Step boom (task-id" in failed["out"] + failed["err"]
    # the summary and how to resume are the last lines, on stderr
    last = failed["err"].strip().splitlines()[-2:]
    assert "Workflow failed" in last[0] and "Workflow failed" not in failed["out"]
    assert last[1].startswith("To resume from the failed step: flow --datastore-root ")
    assert last[1].endswith(f"resume {FLOW}")


def test_the_failure_stopped_the_sleeping_sibling(failed: dict, world: rh.Env) -> None:
    """The sibling sleeps 60 s, then finishes: the run ended because it was stopped, not
    waited for (a run that waits fails here, or at rh.communicate's bound if it hangs)."""
    sleeper = world.client().Run(f"{NAME}/{failed['run_id']}")["sleeper"].task
    assert not sleeper.finished and not sleeper.successful


def test_no_process_of_the_failed_run_survives(failed: dict, world: rh.Env) -> None:
    pids = {p.pid for p in failed["tree"]}
    assert failed["sleeper_child"] in pids  # the sample saw the grandchild
    # controller, its guardian, its record committer, its fork server, boom, sleeper, its
    # `sleep 60`, the orphaned `sleep 61`
    assert len(pids) == 8
    rh.assert_all_gone(failed["tree"], world.tag, timeout=15.0)


def test_traceback_is_in_the_failed_tasks_stderr(failed: dict, world: rh.Env) -> None:
    client = world.client()
    task = client.Run(f"{NAME}/{failed['run_id']}")["boom"].task
    assert not task.finished
    assert "Traceback (most recent call last)" in task.stderr
    assert "ValueError: boom: the input was bad" in task.stderr
    assert task.stdout == "boom is checking its input\n"
    assert task.exception is not None and "boom: the input was bad" in str(task.exception)
    cli = world.flow("logs", f"{failed['run_id']}/boom", "--stderr")
    assert cli.returncode == 0, cli.stderr
    assert "Traceback (most recent call last)" in cli.stdout
    assert "ValueError: boom: the input was bad" in cli.stdout
    # the stopped sibling did not finish
    assert not client.Run(f"{NAME}/{failed['run_id']}")["sleeper"].task.finished


@pytest.fixture(scope="module")
def resumed(failed: dict, world: rh.Env) -> dict:
    """`flow resume` (latest run) once boom is fixed."""
    result = world.flow("resume", FLOW, ROBUST_FIXED="1")
    assert result.returncode == 0, result.stdout + result.stderr
    return {"run_id": rh.run_id_of(result.stdout), "out": result.stdout}


def test_resume_prints_its_plan_before_starting(resumed: dict) -> None:
    lines = resumed["out"].splitlines()

    def index(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    cloned = lines[index("Cloned from the origin run:")]
    rerun = lines[index("Run again:")]
    assert cloned.split(":", 3)[-1].replace(" ", "").split(",") == ["start", "prep"]
    assert set(rerun.split(":", 3)[-1].replace(" ", "").split(",")) == {
        "boom",
        "sleeper",
        "join",
        "end",
    }
    first_task = index("Task is starting")
    assert index("Cloned from the origin run:") < index("Workflow starting") < first_task
    assert index("Run again:") < first_task


def test_resume_reuses_the_successful_tasks(failed: dict, resumed: dict, world: rh.Env) -> None:
    client = world.client()
    origin = client.Run(f"{NAME}/{failed['run_id']}")
    new = client.Run(f"{NAME}/{resumed['run_id']}")
    assert new.successful
    for step in ("start", "prep"):
        old_task, new_task = origin[step].task, new[step].task
        assert new_task.origin_pathspec == old_task.pathspec
        record = json.loads(
            (world.run_dir(NAME, new.id) / step / new_task.id / "0.record.json").read_text()
        )
        assert record["cloned"] is True
        assert record["origin_run_id"] == origin.id
        # executed once, in the origin run only
        assert len(world.executions(step)) == 1
        assert world.executions(step, origin.id)
    assert new["start"].task.data.token == origin["start"].task.data.token
    assert new["prep"].task.data.prep_token == origin["prep"].task.data.prep_token
    assert new["end"].task.data.token == origin["start"].task.data.token
    # failed and stopped steps ran again; steps never reached ran once
    for step, total in (("boom", 2), ("sleeper", 2), ("join", 1), ("end", 1)):
        assert len(world.executions(step)) == total, step
        assert len(world.executions(step, new.id)) == 1, step
    assert new["boom"].task.origin_pathspec is None
    assert new.data.outcome == "fixed"
    assert new.data.origin == origin.id
    assert new.data.doubled == 14  # --alpha 7 of the origin run


def test_resume_from_a_step_reruns_it_and_everything_after(resumed: dict, world: rh.Env) -> None:
    result = world.flow(
        "resume", FLOW, "prep", "--origin-run-id", resumed["run_id"], ROBUST_FIXED="1"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = rh.run_id_of(result.stdout)
    assert "Cloned from the origin run: start" in result.stdout
    for step in ("prep", "boom", "sleeper", "join", "end"):
        assert len(world.executions(step, run_id)) == 1, step
    assert world.executions("start", run_id) == []
    client = world.client()
    run, origin = client.Run(f"{NAME}/{run_id}"), client.Run(f"{NAME}/{resumed['run_id']}")
    assert run["start"].task.origin_pathspec == origin["start"].task.pathspec
    assert run["prep"].task.origin_pathspec is None
    assert run["prep"].task.data.prep_token != origin["prep"].task.data.prep_token
    assert run.data.doubled == 14  # parameters come from the origin run
    assert run.data.token == origin.data.token


def test_resume_usage_errors(tmp_path: Path, world: rh.Env, failed: dict) -> None:
    runs_before = sorted(p.name for p in (world.root / NAME).iterdir())
    empty = rh.Env(tmp_path)
    none_yet = empty.flow("resume", FLOW)
    assert none_yet.returncode == 2, none_yet.stdout + none_yet.stderr
    assert "no previous run of" in none_yet.stderr
    assert f"under {empty.root}" in none_yet.stderr  # where it looked
    unknown = world.flow("resume", FLOW, "--origin-run-id", "424242")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "could not find run id 424242" in unknown.stderr
    bad_step = world.flow("resume", FLOW, "nosuchstep", "--origin-run-id", failed["run_id"])
    assert bad_step.returncode == 2, bad_step.stdout + bad_step.stderr
    assert "nosuchstep" in bad_step.stderr and "prep" in bad_step.stderr
    new_params = world.flow("resume", FLOW, "--alpha", "3", "--origin-run-id", failed["run_id"])
    assert new_params.returncode == 2, new_params.stdout + new_params.stderr
    assert "--alpha" in new_params.stderr  # parameters come from the origin run
    # nothing was started for the rejected resumes
    assert not list(empty.root.glob(f"{NAME}/[0-9]*"))
    assert sorted(p.name for p in (world.root / NAME).iterdir()) == runs_before


def test_spawned_tasks_and_their_children_are_stopped_too(tmp_path: Path) -> None:
    world = rh.Env(tmp_path)
    try:
        proc = world.start("run", FLOW, "--isolation", "spawn", "--run-id-file", "id")
        run_id = rh.wait_for(
            lambda: (world.base / "id").exists() and (world.base / "id").read_text()
        )
        rh.wait_for(world.marker(f"ready.sleeper.{run_id}").exists, what="the sleeper")
        tree = [psutil.Process(proc.pid), *rh.descendants(proc.pid)]
        tree += rh.tagged_processes(world.tag)
        world.release(f"go.boom.{run_id}")
        code, out, err = rh.communicate(proc)
        assert code == 1, out + err
        sleeper = world.client().Run(f"{NAME}/{run_id}")["sleeper"].task
        assert not sleeper.finished, "the sleeping sibling was waited for, not stopped"
        assert len({p.pid for p in tree}) == 6  # controller, guardian, boom, sleeper, child, orphan
        rh.assert_all_gone(tree, world.tag, timeout=15.0)
    finally:
        rh.kill_tagged(world.tag)
