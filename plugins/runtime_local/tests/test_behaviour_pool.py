"""``--isolation pool``: long-lived task processes give the same results and per-task logs, and
show the documented trade-off (module globals persist; the environment does not)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory, run_flow_at):
    root = tmp_path_factory.mktemp("pool") / "datastore"
    args = ("--isolation", "pool", "--max-workers", "2", "--crash", "4")
    return run_flow_at(root, "pool_flow.py", *args).assert_ok()


def test_a_pool_run_gives_each_task_its_own_results_and_logs(pool_run):
    assert pool_run.data("join").total == sum(range(6))
    assert pool_run.task("end").stdout == "total 15\n"
    bodies = pool_run.tasks("body")
    assert sorted(t.data.i for t in bodies) == list(range(6))
    for task in bodies:
        i = task.data.i
        assert task.stdout.splitlines()[-1] == f"task {i} says hello"
        assert f"task {i} complains" in task.stderr
        assert all(str(j) not in task.stdout for j in range(6) if j != i)


def test_tasks_share_a_few_processes_whose_globals_persist_but_not_the_environment(pool_run):
    bodies = pool_run.tasks("body")
    pids = {t.data.pid for t in bodies}
    assert len(pids) <= 3  # two processes, and the one that replaced the crashed one
    assert max(len(t.data.seen) for t in bodies) > 1  # SEEN grew in a reused process
    assert all(t.data.leaked is None for t in bodies)  # os.environ restored after each task


def test_a_task_that_kills_its_pool_process_is_retried_in_a_fresh_one(pool_run):
    from flowkernel.client import Task

    (crashed,) = [t for t in pool_run.tasks("body") if t.data.i == 4]
    assert crashed.current_attempt == 1
    first = Task(crashed.pathspec, attempt=0)
    assert first.stdout.splitlines() == ["task 4 says hello", "about to die"]
    died_in = json.loads((pool_run.root / crashed.pathspec / "0.record.json").read_text())["pid"]
    assert died_in != crashed.data.pid
    assert crashed.data.seen[-1] == 4
