"""``self.input`` and ``current`` in forked tasks: every kind of foreach item, chunked or not,
nested, in every isolation mode, after a resume, and read back through the client.

The fork server decodes a task's input records and loads the foreach chunk its ``self.input``
reads before it forks the task (``executor.preload_input``): the values must be those of the list.
"""

from __future__ import annotations

import pytest

PLAIN = [None, True, 0, -1, 2**70, 1.5, "s", "", b"b", (1, "x", None), complex(1, 2)] * 7
BIG = [{"k": i, "v": list(range(i))} for i in range(70)]


def _check(result, resumed=False):
    join1 = result.data("join1")
    assert join1.seen == [(i, v, "body", 0) for i, v in enumerate(PLAIN)]
    for (_, got, _, _), want in zip(join1.seen, PLAIN, strict=True):
        assert type(got) is type(want)
    assert result.data("join2").seen_big == list(enumerate(BIG))
    nested = result.data("join4").seen_nested
    expected = [
        ((o, j), [(oi, 2, o), (j, 66, (o, j))]) for oi, o in enumerate("ab") for j in range(66)
    ]
    assert sorted(nested) == sorted(expected)
    start = result.task("start")._record
    assert start.foreach_chunks is not None and len(start.foreach_chunks.shas) == 2
    bodies = result.tasks("body")
    assert [t.data.got for t in sorted(bodies, key=lambda t: t.index)] == PLAIN
    ran_here = [t for t in bodies if not resumed or t.index == 70]  # the others are clones
    assert ran_here and all(t.data.where[1] == t.id for t in ran_here)
    for task in (t for t in ran_here if t.index in (0, 70)):
        _check_current(result, task, resumed)


def _check_current(result, task, rerun):
    """`current` in a forked body task (built on its first use there) says what it always did."""
    cur = task.data.cur
    user = cur["username"]
    assert cur == {
        "flow_name": "InputKindsFlow",
        "run_id": task.pathspec.split("/")[1],
        "step_name": "body",
        "task_id": task.id,
        "retry_count": 0,
        "origin_run_id": cur["origin_run_id"],
        "namespace": f"user:{user}",
        "username": user,
        "tags": ["kinds"],
        "parameter_names": ["label"],
        "datastore_root": str(result.root),
        "parallel": None,
        "is_parallel": False,
        "project_name": None,
        "branch_name": None,
        "is_user_branch": None,
        "is_production": None,
        "project_flow_name": None,
        "pathspec": task.pathspec,
        "is_running_flow": True,
        "graph_steps": sorted(cur["graph_steps"]),
        "get": ("body", True, False),
    }
    assert user == "tester" and {"start", "body", "join4", "end"} <= set(cur["graph_steps"])
    assert (cur["origin_run_id"] is not None) == rerun


@pytest.mark.parametrize("isolation", ["fork", "pool"])
def test_every_kind_of_foreach_item_reaches_self_input(run_flow_fresh, isolation):
    result = run_flow_fresh(
        "input_kinds_flow.py", "--max-workers", "3", "--tag", "kinds", "--isolation", isolation
    ).assert_ok()
    _check(result)


def test_the_fork_server_off_gives_the_same_items(run_flow_fresh):
    result = run_flow_fresh(
        "input_kinds_flow.py",
        "--max-workers",
        "3",
        "--tag",
        "kinds",
        env={"FLOWKERNEL_FORK_SERVER": "0"},
    ).assert_ok()
    _check(result)


def test_resume_gives_the_rerun_and_the_cloned_tasks_their_items(run_flow_fresh, tmp_path):
    from conftest import FLOWS, RUN_TIMEOUT

    from flowkernel.testing_procs import run_flow_process

    failed = run_flow_fresh(
        "input_kinds_flow.py",
        "--max-workers",
        "3",
        "--tag",
        "kinds",
        env={"INPUT_KINDS_FAIL_AT": "70"},
    )
    assert failed.returncode != 0
    resumed = run_flow_process(
        tmp_path / "datastore", FLOWS / "input_kinds_flow.py", "--max-workers", "3",
        "--tag", "kinds", command="resume", cwd=tmp_path, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    resumed.assert_ok()
    assert resumed.run_id != failed.run_id
    _check(resumed, resumed=True)


def test_a_foreach_whose_parent_record_is_too_large_for_a_request(run_flow_fresh):
    result = run_flow_fresh("large_parent_flow.py", "--max-workers", "3").assert_ok()
    assert result.data("join").seen == [(f"item{i}", 899 + i) for i in range(70)]
    record = result.task("start")._record
    assert len(record.artifacts) > 900 and record.foreach_chunks is not None
