"""A pod of a deployed run that dies mid-write (evicted, OOM-killed, its node lost) and is
retried by Argo: the retry finishes the run. Run with ``run-local`` on an s3:// root
(SeaweedFS) through a forwarder that holds one write-once PUT unanswered, so the test can kill
the pod's processes while that write is in flight (it never reaches the store); the local
executor then retries the step as Argo does (same workflow, ``{{retries}}`` + 1)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest
from argo_test_paths import FLOWS

from flowkernel.client import Run

FLOW = FLOWS / "retried_pods_flow.py"


def _kill_pod(run_local: subprocess.Popen, step: str) -> None:
    """Kill every process of the step's container (the `argo-workflows task` process and the
    step it forked), as a pod's processes die with it. In a foreach, the one pod of the step
    still running (the others finish)."""
    deadline = time.monotonic() + 120
    while True:
        pods = [p for p in psutil.Process(run_local.pid).children() if _runs(p, step)]
        if len(pods) == 1:
            break
        assert time.monotonic() < deadline, f"{len(pods)} running tasks of step {step}"
        time.sleep(0.05)
    for proc in [pods[0], *pods[0].children(recursive=True)]:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def _runs(proc: psutil.Process, step: str) -> bool:
    try:
        argv = proc.cmdline()
    except psutil.NoSuchProcess:
        return False
    return "task" in argv and step in argv


@pytest.mark.parametrize(
    ("step", "write"),
    [
        ("start", "/_run.json"),  # the run id is reserved, the run record not written
        ("start", "/_parameters/0/0.record.json"),  # the run record written, no parameters
        ("start", "/start/"),  # the start step ran, its record not stored
        ("work", "/work/"),
        ("end", "/end/"),
    ],
    ids=["after-reserving-the-id", "after-the-run-record", "start-record", "foreach", "end"],
)
def test_a_pod_killed_mid_write_is_retried_and_the_run_succeeds(s3_root, tmp_path, step, write):
    from flowkernel.testing_s3 import Forwarder

    first: list[str] = []

    def chosen(path: str) -> bool:  # the first write of `write`, or of a record under it
        if first or not (path.endswith(write) or (write in path and path.endswith(".record.json"))):
            return False
        first.append(path)
        return True

    forwarder = Forwarder(int(os.environ["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]),
                          hold_creates=chosen)  # fmt: skip
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", s3_root, "argo-workflows",
           "run-local", str(FLOW), "--alpha", "5", "--run-id-file", "id"]  # fmt: skip
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{forwarder.port}"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert forwarder.holding.wait(180), f"no write of {write} was held"
        _kill_pod(proc, step)
        forwarder.release.set()  # the retry's writes pass
        out, err = proc.communicate(timeout=300)
    finally:
        forwarder.stopped.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    assert "exists already" not in out + err
    run_id = (tmp_path / "id").read_text().strip()
    run = Run(f"RetriedPodsFlow/{run_id}", _namespace_check=False, _root=s3_root)
    assert run.successful
    assert run["join"].task.data.total == 15  # (1 + 2) * alpha
    assert run["start"].task.data.start_attempt == (1 if step == "start" else 0)  # {{retries}}
    assert run["end"].task.data.end_attempt == (1 if step == "end" else 0)
    assert set(forwarder.held) == set(first)  # that write was held (no other)


def test_only_the_workflow_that_reserved_a_run_id_may_start_that_run(tmp_path):
    """Runs are named after their workflow (``argo-<name>``), and Argo gives each workflow its
    own uid. A retried start pod of the workflow (same uid) proceeds; the start of another
    workflow of the same name (the first one deleted and the name made again, or another
    cluster on the same datastore) is refused and leaves the run as it was."""
    root, run_id = tmp_path / "ds", "argo-retriedpodsflow-abcde"

    def start(uid: str, attempt: int, alpha: str | None = None):
        params = tmp_path / f"params-{uid}-{attempt}"
        params.mkdir()
        if alpha is not None:
            (params / "0").write_text(alpha)
        cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(root),
               "argo-workflows", "task", str(FLOW), "start", "--run-id", run_id,
               "--attempt", str(attempt), "--max-user-code-retries", "1",
               "--output-dir", str(tmp_path / f"out-{uid}-{attempt}"),
               "--parameters-dir", str(params), "--workflow-uid", uid]  # fmt: skip
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    first = start("uid-1", 0)
    assert first.returncode == 0, first.stderr
    retried = start("uid-1", 1)  # Argo's retry of the same pod: {{retries}} is 1
    assert retried.returncode == 0, retried.stderr
    other = start("uid-2", 0, alpha="7")
    assert other.returncode != 0
    assert f"run {run_id} of RetriedPodsFlow exists already" in other.stderr
    start_task = Run(f"RetriedPodsFlow/{run_id}", _namespace_check=False, _root=str(root))[
        "start"
    ].task
    assert start_task.data.alpha == 3 and start_task.data.start_attempt == 1
