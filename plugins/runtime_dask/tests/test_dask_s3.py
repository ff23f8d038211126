"""A run on an s3:// root: the workers get the flow's code from its code package in the
datastore, not from the flow's folder, and the results are those of ``--runtime local``."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dask_helpers import FLOWS, artifacts_by_step, on, run_flow


@pytest.fixture
def workers_reach_s3(dask_cluster, s3_server) -> Iterator[None]:
    """The session cluster's workers get the S3 server's credentials, as a real cluster's
    workers have their own (the controller never sends its credentials)."""
    from distributed import Client

    names = sorted(s3_server.env())
    with Client(scheduler_file=str(dask_cluster.scheduler_file), timeout=30) as client:
        client.run(exec, f"import os; os.environ.update({s3_server.env()!r})")
        try:
            yield
        finally:
            client.run(exec, f"import os\nfor n in {names!r}: os.environ.pop(n, None)")


def test_tasks_run_from_the_code_package_on_an_s3_root(tmp_path, s3_root, workers_reach_s3,
                                                       dask_cluster):  # fmt: skip
    src = tmp_path / "src"  # the flow's folder: the workers never look there
    shutil.copytree(FLOWS / "packaged", src)
    flow = src / "packaged_flow.py"
    cache = tmp_path / "package-cache"
    env = {"FLOWKERNEL_PACKAGE_CACHE": str(cache)}
    work = tmp_path / "work"  # the controller's (and so the steps') working directory
    work.mkdir()
    args = ("--n", "3")
    named = {"env": env, "cwd": work, "flow_name": "DaskPackagedFlow"}
    dask = run_flow(s3_root, flow, *args, *on(dask_cluster), **named).assert_ok()
    local = run_flow(s3_root, flow, *args, "--runtime", "local", **named).assert_ok()
    assert "Tasks run from code package DaskPackagedFlow/" in dask.stdout
    run = dask.run
    assert run["join"].task.data.values == [0, 1, 8]
    (code_dir,) = run["join"].task.data.code_dirs
    assert Path(code_dir).parent == cache  # <cache>/<sha256>: extracted from the package
    assert run["start"].task.data.code_dir == code_dir
    assert local.run["start"].task.data.code_dir == str(src)
    leave_out = ("code_dir", "code_dirs")
    assert artifacts_by_step(run, leave_out) == artifacts_by_step(local.run, leave_out)


def test_an_attempt_whose_claim_answer_was_lost_runs(tmp_path, s3_server, s3_root,
                                                     workers_reach_s3, dask_cluster):  # fmt: skip
    """The workers reach S3 through a network that loses the answer to every write-once put
    (the object is stored; obstore retries and finds it there). An attempt's claim is still
    its own: every task runs once, as its first attempt, and the run succeeds. (Regression:
    the retry's 412 made the claim look taken by an earlier execution, so each attempt was
    reported as killed with its worker and started again, until the run failed.)"""
    from distributed import Client

    from flowkernel.testing_s3 import Forwarder

    forwarder = Forwarder(s3_server.s3_port, lose_create_responses=True)
    endpoint = f"http://127.0.0.1:{forwarder.port}"
    with Client(scheduler_file=str(dask_cluster.scheduler_file), timeout=30) as client:
        client.run(exec, f"import os; os.environ['AWS_ENDPOINT_URL'] = {endpoint!r}")
    work = tmp_path / "work"
    work.mkdir()
    flow = Path(__file__).resolve().parents[3] / "tests" / "flows" / "shapes" / "foreach.py"
    try:
        result = run_flow(s3_root, flow, *on(dask_cluster), cwd=work, flow_name="ForeachFlow")
    finally:
        forwarder.stopped.set()
    result.assert_ok()
    assert "worker running this task died" not in result.output
    run = result.run
    assert run["join"].task.data.total == 14
    assert all(task.current_attempt == 0 for step in run for task in step)
    assert any(path.endswith("/0.claimed") for path in forwarder.lost), forwarder.lost
