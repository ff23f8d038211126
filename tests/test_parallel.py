"""@parallel gangs: N cooperating processes of one step, started together, failing together."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowkernel.testing_procs import processes_mentioning

FLOWS = Path(__file__).parent / "flows" / "parallel"


def run_gang(tmp_path: Path, fail: str | None = None, *extra: str) -> subprocess.CompletedProcess:
    shutil.copy(FLOWS / "gang_flow.py", tmp_path / "gang_flow.py")
    env = {**os.environ}
    env.pop("GANG_FAIL", None)
    if fail:
        env["GANG_FAIL"] = fail
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(tmp_path / "ds"),
           "run", str(tmp_path / "gang_flow.py"), *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def latest(tmp_path: Path):
    from flowkernel.client import Flow, metadata, namespace

    metadata(str(tmp_path / "ds"))
    namespace(None)
    return Flow("GangFlow").latest_run


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_gang_of_four_joins_in_node_order(tmp_path, isolation):
    result = run_gang(tmp_path, None, "--isolation", isolation)
    assert result.returncode == 0, result.stdout + result.stderr
    run = latest(tmp_path)
    join = run["join"].task.data
    assert join.nodes == [0, 1, 2, 3]
    assert join.attempts == [0, 0, 0, 0]
    tasks = list(run["train"].tasks())
    assert len(tasks) == 4
    assert len(join.controls) == 1  # every node knows the same control task
    control = join.controls.pop()
    assert {t.id for t in tasks} == {control, *(f"{control}_node_{i}" for i in (1, 2, 3))}
    for task in tasks:
        data = task.data
        assert data.num_nodes == 4 and data.flags == (True, True)
        assert f"node {data.node} of 4" in task.stdout  # every node's log is kept


def test_a_failing_node_fails_the_gang_and_nothing_survives(tmp_path):
    from flowkernel.client import Task

    result = run_gang(tmp_path, fail="always")  # (a hang fails at run_gang's timeout)
    assert result.returncode == 1
    assert processes_mentioning(str(tmp_path / "gang_flow.py")) == []
    run = latest(tmp_path)
    assert not run.successful
    failed = [t for t in run["train"].tasks() if "lost its GPU" in t.stderr]
    assert failed and failed[0].current_attempt == 1  # the gang was retried once, then gave up
    # the other nodes sleep 60 s, then finish: each of their attempts was stopped, not waited for
    for task in run["train"].tasks():
        for attempt in range(task.current_attempt + 1):
            assert not Task(task.pathspec, attempt=attempt).successful, (task.pathspec, attempt)


def test_retry_reruns_the_whole_gang(tmp_path):
    result = run_gang(tmp_path, fail="once")
    assert result.returncode == 0, result.stdout + result.stderr
    join = latest(tmp_path)["join"].task.data
    assert join.nodes == [0, 1, 2, 3]
    assert join.attempts == [1, 1, 1, 1]  # every node ran again, not only the failed one


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("self.next(self.train, num_parallel=2)", "num-parallel-needs-parallel"),
    ],
)
def test_graph_rule_rejects_before_running(tmp_path, source, rule):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from flowkernel import FlowSpec, step\n\n\n"
        "class BadFlow(FlowSpec):\n"
        "    @step\n"
        "    def start(self):\n"
        f"        {source}\n\n"
        "    @step\n"
        "    def train(self):\n"
        "        self.next(self.join)\n\n"
        "    @step\n"
        "    def join(self, inputs):\n"
        "        self.next(self.end)\n\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n"
    )
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(tmp_path / "ds"),
           "run", str(bad)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "bad.py:7" in result.stderr and rule in result.stderr
    assert not (tmp_path / "ds").exists()
