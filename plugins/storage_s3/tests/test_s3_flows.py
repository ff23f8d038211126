"""Whole runs on an s3:// root (SeaweedFS): every graph shape, fork and spawn isolation, retries,
@catch, resume, concurrent runs, a server that dies mid-run; read back with the client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowkernel.storage.backend import forget_backends
from flowkernel.testing_procs import point_client_at

SHAPES = Path(__file__).resolve().parents[3] / "tests" / "flows" / "shapes"
FLOWS = Path(__file__).resolve().parent / "flows"
SHAPE_FILES = ["linear", "branch", "foreach", "nested_foreach", "switch", "recursive_switch",
               "parallel", "switch_in_foreach"]  # fmt: skip


def flow(root: str, cwd: Path, *args: str, env: dict | None = None, timeout: float = 240):
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", root, *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})  # fmt: skip


@pytest.fixture
def client_on(restore_client):
    """Point the client at a root for the test (``restore_client`` puts it back after)."""
    from flowkernel import client

    def point(root: str):
        point_client_at(root)
        return client

    yield point
    forget_backends()


def read_everything(run) -> int:
    """Load every artifact of every task of ``run``; returns how many were read."""
    n = 0
    for step in run:
        for task in step:
            for artifact in task:
                artifact.data  # noqa: B018 - loading is the check
                n += 1
    return n


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
@pytest.mark.parametrize("shape", SHAPE_FILES)
def test_every_shape_runs_on_s3(s3_root, client_on, tmp_path, shape, isolation):
    result = flow(s3_root, tmp_path, "run", str(SHAPES / f"{shape}.py"), "--isolation", isolation)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert not (tmp_path / ".flowkernel").exists()
    client = client_on(s3_root)
    (flow_name,) = [f.id for f in client.Metaflow()]
    run = client.Flow(flow_name).latest_run
    assert run.successful and read_everything(run) > 0


def test_retry_catch_big_artifact_and_resume_on_s3(s3_root, client_on, tmp_path):
    path = str(FLOWS / "retry_catch_flow.py")
    failed = flow(s3_root, tmp_path, "run", path)
    assert failed.returncode == 1 and "not fixed yet" in failed.stdout + failed.stderr
    fixed = flow(s3_root, tmp_path, "resume", path, env={"FIX_IT": "1"})
    assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-3000:]
    client = client_on(s3_root)
    run = client.Flow("RetryCatchFlow").latest_run
    assert run.successful and run.data.done
    start = run["start"].task
    assert start.data.tries == 1 and len(start.data.big) == 20 * 1024 * 1024
    assert "boom" in str(run["risky"].task.data.caught)
    assert "fixed" in run["fragile"].task.stdout
    assert start.origin_pathspec is not None  # cloned from the failed run
    assert not (tmp_path / ".flowkernel").exists()


def test_two_concurrent_runs_on_one_root(s3_root, client_on, tmp_path):
    path = str(SHAPES / "foreach.py")
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", s3_root, "run", path]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()[-3000:]
    client = client_on(s3_root)
    runs = list(client.Flow("ForeachFlow").runs())
    assert len(runs) == 2 and runs[0].id != runs[1].id
    assert all(r.successful for r in runs)


def test_logs_reach_the_store_while_the_task_runs(s3_root, client_on, tmp_path):
    script = tmp_path / "chatty.py"
    script.write_text(
        "import time\nfrom flowkernel import FlowSpec, step\n\n"
        "class ChattyFlow(FlowSpec):\n"
        "    @step\n    def start(self):\n"
        "        print('hello from start', flush=True)\n"
        "        for i in range(12):\n            print('tick', i, flush=True)\n"
        "            time.sleep(0.5)\n        self.next(self.end)\n\n"
        "    @step\n    def end(self):\n        pass\n"
    )
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", s3_root, "run",
           str(script), "--run-id-file", "id"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        seen = ""
        while time.monotonic() < deadline and "hello from start" not in seen:
            time.sleep(0.5)
            if (tmp_path / "id").exists() and (tmp_path / "id").read_text():
                logs = flow(
                    s3_root, tmp_path, "logs", f"ChattyFlow/{(tmp_path / 'id').read_text()}/start"
                )
                seen = logs.stdout
        assert "hello from start" in seen
        assert proc.poll() is None, "the task should still be running"
    finally:
        proc.communicate(timeout=120)
    assert proc.returncode == 0
    client = client_on(s3_root)
    assert "tick 11" in client.Flow("ChattyFlow").latest_run["start"].task.stdout


def test_server_lost_mid_run_then_resume_completes(tmp_path, client_on, monkeypatch):
    from flowkernel.testing_s3 import SeaweedFS, weed_executable

    if weed_executable() is None:
        pytest.skip("SeaweedFS is not installed")
    server = SeaweedFS(tmp_path / "s3").start()
    try:
        for name, value in {**server.env(), "FLOWKERNEL_S3_RETRY_SECONDS": "2"}.items():
            monkeypatch.setenv(name, value)
        root = server.root_url("lost")
        script = tmp_path / "slow.py"
        script.write_text(
            "import os, time\nfrom flowkernel import FlowSpec, step\n\n"
            "class SlowFlow(FlowSpec):\n"
            "    @step\n    def start(self):\n        self.items = list(range(4))\n"
            "        self.next(self.work, foreach='items')\n\n"
            "    @step\n    def work(self):\n"
            "        if not os.environ.get('FAST'):  # running when the server dies\n"
            "            open(os.path.join(os.environ['MARKERS'], str(self.input)), 'w').close()\n"
            "            while not os.path.exists(os.path.join(os.environ['MARKERS'], 'killed')):\n"
            "                time.sleep(0.05)\n"
            "        self.y = self.input * 2\n        self.next(self.join)\n\n"
            "    @step\n    def join(self, inputs):\n"
            "        self.total = sum(i.y for i in inputs)\n        self.next(self.end)\n\n"
            "    @step\n    def end(self):\n        pass\n"
        )
        markers = tmp_path / "markers"
        markers.mkdir()
        cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", root, "run",
               str(script), "--max-workers", "4"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "MARKERS": str(markers)})  # fmt: skip
        deadline = time.monotonic() + 120
        while len(list(markers.iterdir())) < 4 and proc.poll() is None:
            assert time.monotonic() < deadline, "the work tasks did not start"
            time.sleep(0.05)
        server.kill()  # every work task is running, with its artifacts still to store
        (markers / "killed").touch()
        out, err = proc.communicate(timeout=180)
        assert proc.returncode != 0, out + err
        assert "cannot reach the S3 endpoint" in out + err
        server.start()  # returns once the server stores objects again
        resumed = flow(root, tmp_path, "resume", str(script),
                       env={"FAST": "1", "FLOWKERNEL_S3_RETRY_SECONDS": "15"})  # fmt: skip
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
        client = client_on(root)
        run = client.Flow("SlowFlow").latest_run
        assert run.successful and run["join"].task.data.total == 12
    finally:
        server.stop()


def test_write_once_puts_whose_responses_are_lost_do_not_fail_the_run(
    s3_server, s3_root, client_on, tmp_path
):
    """Every write-once put of a deployed run (its given id ``argo-...``, run record, code
    package, start markers, task records, artifacts) stores its object, but the response is
    lost and obstore retries: the retry finds the object there and it is still ours. The run
    succeeds and reads back. (Regression: the retry's 412 was taken for another writer's
    object: the start step failed with "run argo-... exists already".)"""
    pytest.importorskip("flowkernel_deploy_argo")
    from flowkernel.testing_s3 import Forwarder

    forwarder = Forwarder(s3_server.s3_port, lose_create_responses=True)
    try:
        result = flow(s3_root, tmp_path, "argo-workflows", "run-local",
                      str(SHAPES / "foreach.py"), "--run-id-file", "id",
                      env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{forwarder.port}"})  # fmt: skip
    finally:
        forwarder.stopped.set()
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "exists already" not in result.stdout + result.stderr
    run_id = (tmp_path / "id").read_text().strip()
    client = client_on(s3_root)
    run = client.Run(f"ForeachFlow/{run_id}", _namespace_check=False)
    assert run.successful and run["join"].task.data.total == 14
    assert read_everything(run) > 0
    lost = "\n".join(forwarder.lost)  # the forwarder did lose them
    assert f"/{run_id}/_id" in lost and "/join/" in lost and ".record.json" in lost, lost


def test_a_task_runs_from_a_package_on_s3(s3_root, client_on, tmp_path):
    """`flow package` stores the code in the bucket; `flow step --package` in an empty
    directory, with the original code deleted, fetches it and runs the task."""
    import importlib.util

    helpers = SHAPES.parents[1] / "test_packages.py"
    spec = importlib.util.spec_from_file_location("fk_package_helpers", helpers)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run_id = module.run_from_package(s3_root, tmp_path)
    client = client_on(s3_root)
    task = client.Task(f"PackagedFlow/{run_id}/start/91", _namespace_check=False)
    assert task.data.x == 42 and task.data.word == "packaged"
    assert not (tmp_path / "elsewhere" / ".flowkernel").exists()


def test_runner_with_an_s3_root(s3_root, client_on, tmp_path):
    from flowkernel import Runner

    with Runner(str(SHAPES / "linear.py"), datastore_root=s3_root, cwd=str(tmp_path)) as runner:
        result = runner.run()
        assert result.status == "successful"
        assert result.run.data.x == 2
    assert not (tmp_path / ".flowkernel").exists()
    forget_backends()
