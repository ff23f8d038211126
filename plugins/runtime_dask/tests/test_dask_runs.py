"""Flows run on a real Dask cluster give what ``--runtime local`` gives, and what the client,
``flow logs`` and resume see cannot tell the runtimes apart."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dask_helpers import (
    FLOWS,
    RUN_TIMEOUT,
    FlowResult,
    artifacts_by_step,
    flow_command,
    on,
    run_flow,
    subprocess_env,
)


def test_every_shape_gives_the_same_artifacts_and_logs_as_local(tmp_path, dask_cluster):
    args = ("--n", "3", "--label", "p")
    local = run_flow(tmp_path / "local", "shapes.py", *args).assert_ok()
    dask = run_flow(tmp_path / "dask", "shapes.py", *args, *on(dask_cluster)).assert_ok()
    assert dask.run["end"].task.data.summary == (
        "p", ["L", "R"], ["0a", "0b", "1a", "1b", "2a", "2b"], 3, "odd"
    )  # fmt: skip
    assert artifacts_by_step(dask.run) == artifacts_by_step(local.run)
    assert "start says p" in dask.stdout  # live on the console, from the worker
    assert "a line on stderr" in dask.stdout
    pathspec = f"DaskShapesFlow/{dask.run_id}/inner"
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(tmp_path / "dask")]
    logs = subprocess.run(
        [*cmd, "logs", pathspec], capture_output=True, text=True, env=subprocess_env(), check=True
    ).stdout
    assert sorted(line for line in logs.splitlines() if line.startswith("inner")) == [
        "inner 0a", "inner 0b", "inner 1a", "inner 1b", "inner 2a", "inner 2b"
    ]  # fmt: skip


def test_retry_catch_and_timeout_as_on_local(tmp_path, dask_cluster):
    result = run_flow(tmp_path / "root", "decorated.py", *on(dask_cluster)).assert_ok()
    run = result.run
    assert run["end"].task.data.caught == (
        "builtins.ValueError",
        "flowkernel.errors.TimeoutException",
    )
    assert run["flaky"].task.data.flaky_attempt == 1
    assert "flaky attempt 0" in result.stdout and "flaky attempt 1" in result.stdout
    assert "retrying" in result.stdout


def test_a_gang_runs_every_node_at_once_on_one_host(tmp_path, dask_cluster):
    run = run_flow(tmp_path / "root", "gang.py", "--nodes", "2", *on(dask_cluster)).assert_ok().run
    assert run["join"].task.data.nodes_seen == [(0, 2), (1, 2)]
    assert len(run["join"].task.data.workers) == 2  # one node per worker thread
    ids = sorted(t.id for t in run["train"])
    assert ids[1] == f"{ids[0]}_node_1"


def test_a_gang_larger_than_any_host_is_refused_clearly(tmp_path, dask_cluster):
    result = run_flow(tmp_path / "root", "gang.py", "--nodes", "3", *on(dask_cluster))
    assert result.returncode == 1
    assert "Step train is a @parallel gang of 3 nodes" in result.stderr
    assert "--runtime local" in result.stderr


def test_resources_go_to_the_worker_that_declares_them(tmp_path, dask_cluster):
    from flowkernel import Runner

    runner = Runner(
        str(FLOWS / "resources.py"),
        show_output=False,
        env=subprocess_env(),
        runtime="dask",
        dask_scheduler_file=str(dask_cluster.scheduler_file),
        datastore_root=str(tmp_path / "root"),
    )
    with runner:
        run = runner.run().run
    assert run.successful
    worker = dask_cluster.worker_of(run["train"].task.data.worker_pid)
    assert dask_cluster.worker_pids()[worker] == 0  # w0: gpu=1


def test_more_of_a_resource_than_any_worker_declares_is_a_clear_error(tmp_path, dask_cluster):
    args = ("--with", "resources:gpu=2", *on(dask_cluster))
    result = run_flow(tmp_path / "root", "resources.py", *args)
    assert result.returncode == 1, result.output
    assert "step start has @resources(gpu=2)" in result.stderr
    assert "declares more than gpu=1" in result.stderr


def test_an_unreachable_scheduler_is_named_in_the_error(tmp_path):
    env = {"FLOWKERNEL_DASK_CONNECT_TIMEOUT": "1"}
    args = ("--runtime", "dask", "--dask-scheduler", "tcp://127.0.0.1:1")
    result = run_flow(tmp_path / "root", "shapes.py", *args, env=env)
    assert result.returncode == 1, result.output
    assert "could not reach the Dask scheduler at tcp://127.0.0.1:1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # the run was created before the runtime failed: it is failed, not running forever
    from flowkernel.cli.runs_cmd import list_runs

    assert [run.status for run in list_runs(str(tmp_path / "root"), None, 0)] == ["failed"]


def _resume_clones_what_succeeded(root, fail_on, resume_on, item) -> None:
    failed = run_flow(root, "slow_foreach.py", *fail_on, env={"FLOWKERNEL_TEST_FAIL": item})
    assert failed.returncode == 1 and f"item {item} fails on purpose" in failed.stdout
    done = sorted(t.index for t in failed.run["work"] if t.successful)  # fail-fast may stop some
    assert int(item) not in done
    resumed = run_flow(root, "slow_foreach.py", *resume_on, command="resume").assert_ok()
    assert "Cloned from the origin run: start" in resumed.stdout
    run = resumed.run
    assert run["join"].task.data.squares == [0, 1, 4, 9]
    assert sorted(t.index for t in run["work"] if t.origin_pathspec) == done


def test_resume_moves_between_runtimes_both_ways(tmp_path, dask_cluster):
    local = ("--runtime", "local")
    _resume_clones_what_succeeded(tmp_path / "root", on(dask_cluster), local, "2")
    _resume_clones_what_succeeded(tmp_path / "root", local, on(dask_cluster), "0")


def test_the_embedded_cluster_runs_a_gang_and_leaves_nothing_behind(tmp_path, no_stray_steps):
    result = run_flow(tmp_path / "root", "gang.py", "--runtime", "dask", "--max-workers", "2")
    result.assert_ok()
    assert "Embedded Dask cluster: 2 workers, dashboard http://127.0.0.1:" in result.stdout
    assert result.run["join"].task.data.nodes_seen == [(0, 2), (1, 2)]


def test_max_num_splits_holds_on_the_cluster(tmp_path, dask_cluster):
    args = ("--items", "4", "--max-num-splits", "2", *on(dask_cluster))
    result = run_flow(tmp_path / "root", "slow_foreach.py", *args)
    assert result.returncode == 1, result.output
    assert "more than the maximum of 2" in result.stdout + result.stderr


def test_a_module_beside_the_flow_edited_between_runs_is_imported_anew(tmp_path, dask_cluster):
    """The workers' fork servers keep the flow's imports loaded; not from one run to the next."""
    src = tmp_path / "src"
    shutil.copytree(FLOWS / "packaged", src)
    args = ("--n", "3", *on(dask_cluster))
    first = run_flow(tmp_path / "root", src / "packaged_flow.py", *args).assert_ok()
    assert first.run["join"].task.data.values == [0, 1, 8]
    helper = src / "helper.py"
    helper.write_text(helper.read_text().replace("return x * x * x", "return -x"))
    second = run_flow(tmp_path / "root", src / "packaged_flow.py", *args).assert_ok()
    assert second.run["join"].task.data.values == [0, -1, -2]


def _waiting_for_a_lease(client) -> bool:
    """Whether a job of a run waits for a lease of the run's semaphore on the scheduler."""

    def pending(dask_scheduler) -> dict[str, int]:
        return dict(dask_scheduler.extensions["semaphores"].metrics["pending"])

    gauges = client.run_on_scheduler(pending)
    return any(n > 0 for name, n in gauges.items() if name.startswith("flowkernel-"))


def test_max_workers_bounds_the_running_steps_on_a_larger_cluster(tmp_path, dask_cluster):
    """Two worker threads, --max-workers 1: the next attempt waits on the cluster (for the
    run's semaphore) while a step runs, and no two steps ever run at once. Each step stays
    until another runs beside it or until the test, having seen the next one held back, says
    go: with the bound broken, a step sees company and records 2."""
    from distributed import Client

    markers = tmp_path / "markers"
    markers.mkdir()
    id_file = tmp_path / "run-id"
    args = ("--max-workers", "1", *on(dask_cluster), "--run-id-file", str(id_file))
    proc = subprocess.Popen(
        flow_command(tmp_path / "root", "run", "bounded.py", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(FLOWKERNEL_TEST_MARKERS=str(markers)),
    )
    held_back = False
    try:
        with Client(scheduler_file=str(dask_cluster.scheduler_file), timeout=60) as client:
            deadline = time.monotonic() + RUN_TIMEOUT  # a hang fails below, not here
            while proc.poll() is None and time.monotonic() < deadline:
                if _waiting_for_a_lease(client):
                    held_back = True
                    break
                time.sleep(0.05)
        (markers / "go").touch()
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        proc.kill()
    result = FlowResult(proc.returncode, stdout, stderr, tmp_path / "root", "DaskBoundedFlow",
                        id_file.read_text().strip())  # fmt: skip
    result.assert_ok()
    assert result.run["join"].task.data.together == [1, 1, 1]
    assert held_back  # the attempt after the running one was already on the cluster


def test_the_flow_is_imported_once_per_fork_server_with_the_runs_configs(tmp_path, dask_cluster):
    """The workers' fork servers import the flow as `flow step` would (the run's configs
    registered) and the steps they fork reuse it: no step imports the file itself."""
    imports = tmp_path / "imports"
    args = ("--config-value", "cfg", '{"label": "given"}', *on(dask_cluster))
    env = {"FLOWKERNEL_TEST_IMPORTS": str(imports)}
    result = run_flow(tmp_path / "root", "imported_once.py", *args, env=env).assert_ok()
    join = result.run["join"].task.data
    assert join.labels == ["given"] * 4  # the config, read while the class body ran
    importers = {int(pid) for pid in imports.read_text().split()}
    assert not importers & set(join.pids), (importers, join.pids)


def test_a_step_that_cannot_import_the_flow_fails_saying_why(tmp_path, dask_cluster):
    """The fork server's import fails, so the forked step imports the file itself, and
    reports the error in its own log as a `flow step` command line does."""
    logs = []
    for fork_server in ("1", "0"):  # 0: every step a fresh interpreter running `flow step`
        env = {"FLOWKERNEL_DASK_FORK_SERVER": fork_server}
        result = run_flow(tmp_path / fork_server, "controller_only.py", *on(dask_cluster), env=env)
        assert result.returncode == 1, result.output
        (task,) = result.run["start"]
        logs.append(task.stderr)
    assert "RuntimeError: this flow imports only where it is run" in logs[0]
    assert "Could not import the flow file: " in logs[0]
    assert logs[0] == logs[1]
