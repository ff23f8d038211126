"""``flow spin`` / ``Runner.spin``: one task of a past run runs again, with its inputs and the
flow file as it is now, into a separate spin datastore; the run itself is not touched."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowkernel import Runner
from flowkernel.client import DataArtifact, Run
from flowkernel.kernel import Kernel

FLOW = Path(__file__).parent / "flows" / "mfapi" / "spin_flow.py"


@pytest.fixture
def past_run(tmp_path):
    """A finished run of a copy of the flow; then the copy's FACTOR is changed to 10."""
    flow = tmp_path / "spin_flow.py"
    shutil.copy(FLOW, flow)
    root = tmp_path / "ds"
    run = Kernel.discover().run(str(flow), datastore_root=str(root))
    flow.write_text(flow.read_text().replace("FACTOR = 1", "FACTOR = 10"))
    second = next(t for t in run["scale"] if t.index == 1)
    return flow, root, run, second


def test_spin_runs_the_task_again_with_its_inputs_and_the_code_as_it_is_now(past_run, tmp_path):
    flow, root, run, second = past_run
    runner = Runner(str(flow), show_output=False, datastore_root=str(root), cwd=str(tmp_path))
    spun = runner.spin(second.pathspec)
    assert spun.status == "successful", spun.stderr
    task = spun.task
    assert task.pathspec == second.pathspec  # same ids, in the spin datastore
    assert task.data.result == 20 and task.data.mark == "decorated"
    assert "scaled 2 by 10" in spun.stdout
    assert spun.datastore_root == f"{root}/.spin"
    # the run itself is unchanged, and the spin datastore is not listed as a flow
    again = Run(run.pathspec, _namespace_check=False, _root=str(root))
    assert second.data.result == 2 and again["join"].task.data.results == [1, 2, 3]
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["SpinFlow"]
    # spinning again is the next attempt of the spun task
    assert runner.spin(second.pathspec).task.current_attempt == 1


def test_spin_options_skip_decorators_and_replace_artifacts(past_run, tmp_path):
    flow, root, _, second = past_run
    module = tmp_path / "overrides.py"
    module.write_text("items = [5, 6, 7]\n")
    runner = Runner(str(flow), show_output=False, datastore_root=str(root), cwd=str(tmp_path))
    spun = runner.spin(second.pathspec, skip_decorators=True, artifacts_module=str(module))
    assert spun.task.data.result == 60  # input 6 (the overridden items), FACTOR 10
    assert spun.task.data.mark is None  # @environment skipped
    gone = runner.spin(second.pathspec, persist=False)
    assert gone.status == "successful" and gone.task is None
    plain = runner.spin(second.pathspec)  # attempt 1 of the spun task: no overrides
    first = DataArtifact(f"{second.pathspec}/result", attempt=0, _namespace_check=False,
                         _root=plain.datastore_root)  # fmt: skip
    assert (first.data, plain.task["result"].data) == (60, 20)


def test_a_bad_pathspec_is_a_usage_error(past_run, tmp_path):
    flow, root, run, _ = past_run
    for bad in ("nope", f"{run.id}/scale/999"):
        done = subprocess.run(
            [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(root), "spin",
             str(flow), bad],
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and bad.split("/")[-1] in done.stderr


def test_async_spin_returns_the_finished_task(past_run, tmp_path):
    """``await Runner.async_spin(...)`` returns once the spun task has finished, as its
    docstring says: status, return code and output are final, the attempt is readable."""
    import asyncio

    flow, root, _, second = past_run

    async def spin_twice():
        runner = Runner(str(flow), show_output=False, datastore_root=str(root), cwd=str(tmp_path))
        first = await runner.async_spin(second.pathspec)
        seen = (first.status, first.returncode)  # before anything else can happen
        again = await runner.async_spin(second.pathspec, persist=False)
        return first, seen, again

    first, seen, again = asyncio.run(spin_twice())
    assert seen == ("successful", 0), first.stderr
    assert "scaled 2 by 10" in first.stdout
    assert first.task.data.result == 20 and first.task.current_attempt == 0
    assert (again.status, again.task) == ("successful", None)


def test_async_spin_of_a_failing_task_is_a_failed_executing_task(past_run, tmp_path):
    import asyncio

    flow, root, _, second = past_run
    flow.write_text(flow.read_text().replace("FACTOR = 10", "FACTOR = None"))
    runner = Runner(str(flow), show_output=False, datastore_root=str(root), cwd=str(tmp_path))
    spun = asyncio.run(runner.async_spin(second.pathspec))
    assert (spun.status, spun.returncode) == ("failed", 1), spun.stderr
    assert "TypeError" in spun.stderr
    assert spun.task.successful is False
