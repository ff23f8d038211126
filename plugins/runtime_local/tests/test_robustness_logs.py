"""Task logs: exact bytes per attempt, prefixed console echo, readable while the run is live."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

FLOW = rh.flow_file("logs_flow.py")
NAME = "LogsFlow"


def _payload() -> tuple[bytes, bytes]:
    spec = importlib.util.spec_from_file_location("robust_logs_payload", FLOW)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(rh.FLOWS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(rh.FLOWS))
    return module.STDOUT_BYTES, module.STDERR_BYTES


@pytest.fixture(scope="module", params=["fork", "spawn"])
def live_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run LogsFlow; `live` prints a line and waits until `flow logs` has shown it."""
    world = rh.Env(tmp_path_factory.mktemp("logs"))
    id_file = world.base / "id"
    proc = world.start("run", FLOW, "--run-id-file", str(id_file), "--isolation", request.param)
    try:
        run_id = rh.wait_for(lambda: id_file.exists() and id_file.read_text())

        def shown() -> str | None:
            got = world.flow("logs", f"{run_id}/live")
            return got.stdout if got.returncode == 0 and "live line 1" in got.stdout else None

        seen_live = rh.wait_for(shown, timeout=30, interval=0.05, what="the live line")
        still_running = proc.poll() is None
        world.release(f"release.{run_id}")
        code, out, err = rh.communicate(proc)
    finally:
        rh.kill_tagged(world.tag)
    return {
        "world": world,
        "run_id": run_id,
        "code": code,
        "out": out,
        "err": err,
        "seen_live": seen_live,
        "still_running": still_running,
    }


def test_the_run_succeeds(live_run: dict) -> None:
    assert live_run["code"] == 0, live_run["out"] + live_run["err"]


def test_per_attempt_log_files_hold_the_exact_bytes(live_run: dict) -> None:
    stdout, stderr = _payload()
    world, run_id = live_run["world"], live_run["run_id"]
    tdir = world.task_dirs(NAME, run_id, "start")[0]
    assert (tdir / "0.stdout.log").read_bytes() == stdout
    assert (tdir / "0.stderr.log").read_bytes() == stderr
    cli = world.flow("logs", f"{run_id}/start")
    assert cli.returncode == 0 and cli.stdout.encode("utf-8", "surrogateescape") == stdout
    cli = world.flow("logs", f"{run_id}/start", "--stderr")
    assert cli.returncode == 0 and cli.stdout.encode("utf-8", "surrogateescape") == stderr
    task = world.client().Run(f"{NAME}/{run_id}")["start"].task
    assert task.stderr == stderr.decode()
    assert task.stdout.startswith("héllo wörld ✓ 🚀 — ünïcödé\n")
    # output that does not end with a newline is stored without one
    end = world.task_dirs(NAME, run_id, "end")[0]
    assert (end / "0.stdout.log").read_bytes() == b"first\nthe end, without a newline"


def test_the_console_prefixes_every_task_line(live_run: dict) -> None:
    stdout, stderr = _payload()
    run_id = live_run["run_id"]
    task_id = live_run["world"].task_dirs(NAME, run_id, "start")[0].name
    prefix = f" [{run_id}/start/{task_id}] "
    console = live_run["out"].splitlines()
    echoed = [line.split(prefix, 1)[1] for line in console if prefix in line]
    for raw in (stdout + stderr).decode("utf-8", "surrogateescape").splitlines():
        assert raw in echoed, raw[:80]
    assert f" [{run_id}/live/" in live_run["out"]
    assert "live line 1" in live_run["out"]


def test_logs_are_readable_while_the_run_is_live(live_run: dict) -> None:
    assert live_run["still_running"]
    assert live_run["seen_live"] == "live line 1\n"  # `live` was still waiting
    world = live_run["world"]
    final = world.flow("logs", f"{live_run['run_id']}/live")
    assert final.stdout == "live line 1\nlive line 2\n"


def test_no_engine_message_is_mixed_into_task_logs(live_run: dict) -> None:
    world, run_id = live_run["world"], live_run["run_id"]
    logs = list(world.run_dir(NAME, run_id).glob("*/*/*.log"))
    assert logs
    for path in logs:
        text = path.read_bytes()
        for engine in (b"Task is starting", b"Task finished", b"retrying", b"Workflow"):
            assert engine not in text, path


def test_retries_keep_per_attempt_logs(live_run: dict) -> None:
    world, run_id = live_run["world"], live_run["run_id"]
    client = world.client()
    task = client.Run(f"{NAME}/{run_id}")["flaky"].task
    assert task.current_attempt == 1
    assert task.stdout == "attempt 1\n"
    assert task.stderr == ""
    first = client.Task(task.pathspec, attempt=0)
    assert first.stdout == "attempt 0\n"
    assert "ConnectionError: not ready on attempt 0" in first.stderr
    latest = world.flow("logs", f"{run_id}/flaky/{task.id}")
    assert latest.stdout == "attempt 1\n"
    attempt0 = world.flow("logs", f"{run_id}/flaky/{task.id}", "--attempt", "0", "--stderr")
    assert "Traceback (most recent call last)" in attempt0.stdout
    assert "ConnectionError: not ready on attempt 0" in attempt0.stdout
