"""A run's status when its runtime fails to start, or its controller is gone: `flow runs` must
never list such a run as running forever. (The real `kill -9` of a controller is in
plugins/runtime_local/tests/test_robustness_kill.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowkernel.errors import FlowkernelError
from flowkernel.kernel import Kernel
from flowkernel.specs import RuntimeSpec
from flowkernel.testing import make_plugin, run_cli

ROOT = Path(__file__).resolve().parents[1]
HELLO = str(ROOT / "examples" / "hello.py")


class ClusterUnreachable(FlowkernelError):
    pass


class _RaisingRuntime:
    def __init__(self, kernel):
        pass

    def run(self, ctx):
        raise ClusterUnreachable("could not reach the cluster at tcp://127.0.0.1:1")


@pytest.fixture(scope="module")
def kernel() -> Kernel:
    plugin = make_plugin(
        flowkernel_runtimes=lambda: [RuntimeSpec("raising", _RaisingRuntime, "Always raises.")]
    )
    return Kernel.discover(plugins=[("raising_runtime", plugin)])


def _runs(kernel: Kernel, root: Path) -> list[dict]:
    result = run_cli(["--datastore-root", str(root), "runs", "--json"], kernel)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_run_whose_runtime_raises_is_recorded_failed(kernel, tmp_path):
    root = tmp_path / "ds"
    result = run_cli(["--datastore-root", str(root), "run", HELLO, "--runtime", "raising"], kernel)
    assert result.exit_code == 1
    assert "could not reach the cluster at tcp://127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.output
    (run,) = _runs(kernel, root)
    assert run["status"] == "failed"
    assert run["duration"] is not None


def test_a_run_that_ends_records_its_controller_and_ending(kernel, tmp_path):
    from flowkernel.datastore import FlowStore
    from flowkernel.engine.run_state import RunController, RunEnding

    run = kernel.run(HELLO, datastore_root=str(tmp_path / "ds"), runtime="local")
    store = FlowStore(str(tmp_path / "ds"), "HelloFlow")
    assert RunEnding.read(store, run.id).success
    assert RunController.read(store, run.id) == RunController.this_process()
    assert _runs(kernel, tmp_path / "ds")[0]["status"] == "succeeded"


def _started_run(root: Path) -> tuple:
    """A run that started (records written) but has no task yet and no ending."""
    from flowkernel.engine.runs import RunOptions, start_run
    from flowkernel.flow.loader import load_flow

    kernel = Kernel.discover()
    flow_cls = load_flow(HELLO)
    graph = kernel.validated_graph(flow_cls)
    ctx = start_run(flow_cls, graph, HELLO, {}, RunOptions(str(root)))
    return ctx.store, ctx.run_id


def test_a_run_whose_controller_is_gone_is_crashed_unless_it_ran_elsewhere(kernel, tmp_path):
    from flowkernel.engine.run_state import RunController

    root = tmp_path / "ds"
    here = RunController.this_process()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    cases = {
        "running": here,  # this very process: alive
        "crashed": RunController(here.host, int(dead.stdout), here.started_at),
        # another machine's process: nothing here can tell, the run stays as recorded
        "running ": RunController("some-other-host", int(dead.stdout), here.started_at),
    }
    expected = {}
    for status, controller in cases.items():
        store, run_id = _started_run(root)
        controller.write(store, run_id)
        expected[run_id] = status.strip()
    listed = {run["run_id"]: run["status"] for run in _runs(kernel, root)}
    assert listed == expected
    table = run_cli(["--datastore-root", str(root), "runs"], kernel).stdout
    assert sum("crashed" in line for line in table.splitlines()) == 1


def test_the_recorded_start_of_a_controller_is_the_one_its_liveness_check_compares():
    """``flow run`` records its start time without psutil (Linux: from /proc); ``flow runs``
    compares it with psutil's. Were they to differ by more than the tolerance, every running
    run would be listed crashed."""
    import psutil

    from flowkernel.engine.run_state import SAME_START, RunController

    here = RunController.this_process()
    assert abs(here.started_at - psutil.Process().create_time()) < SAME_START / 10
    assert not here.is_gone()
    # a later process that got the same pid is not the controller
    assert RunController(here.host, here.pid, here.started_at - 60).is_gone()
