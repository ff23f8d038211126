"""Runner / ExecutingRun / the kernel API, with real subprocesses (issue: library use)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowkernel import Runner, testing_procs
from flowkernel.runner import FlowStartError
from flowkernel.testing_procs import processes_mentioning

FLOWS = Path(__file__).parent / "flows" / "runner"


@pytest.fixture
def flow_copy(tmp_path):
    """Copy a test flow into tmp_path, so processes of this test can be told apart by path."""

    def copy(name: str) -> str:
        dest = tmp_path / name
        shutil.copy(FLOWS / name, dest)
        return str(dest)

    return copy


def wait_until_gone(path: str, timeout: float = 10.0) -> list:
    """The processes of a flow run from ``path`` still alive after ``timeout`` seconds."""
    return testing_procs.wait_until_gone(timeout=timeout, also=lambda: processes_mentioning(path))


def test_run_returns_successful_run_with_every_artifact(flow_copy, tmp_path):
    runner = Runner(flow_copy("params_flow.py"), show_output=False, cwd=str(tmp_path))
    with runner:
        params = {"ratio": 2.5, "label": "hi", "flag": True, "options": {"a": [1]}}
        done = runner.run(alpha=3, words=["x", "y"], **params)
        assert done.status == "successful" and done.returncode == 0
        run = done.run
        assert run.successful
        assert run["start"].task.data.doubled == 6
        assert run.data.summary == (3, 2.5, "hi", True, {"a": [1]}, ["x", "y"])
        assert "alpha is 3" in run["start"].task.stdout
        assert "Done!" in done.stdout
    assert (tmp_path / ".flowkernel" / "ParamsFlow").is_dir()  # cwd decides the root


def test_failed_run_is_a_failed_executing_run(flow_copy, tmp_path):
    done = Runner(flow_copy("failing_flow.py"), show_output=False, cwd=str(tmp_path)).run()
    assert done.status == "failed" and done.returncode == 1
    task = done.run["boom"].task
    assert "KeyError" in task.stderr and "Traceback" in task.stderr
    assert "KeyError: 'Something has gone wrong'" in done.stdout + done.stderr
    assert done.run["start"].task.data.before == "kept"


def test_parameter_errors_name_the_parameter_before_anything_starts(
    flow_copy, tmp_path, monkeypatch
):
    import flowkernel.runner.procs

    def no_process(self):
        raise AssertionError("a process was started")

    monkeypatch.setattr(flowkernel.runner.procs.CommandProcess, "start", no_process)
    runner = Runner(flow_copy("params_flow.py"), show_output=False, cwd=str(tmp_path))
    with pytest.raises(ValueError, match=r"unknown parameter 'alpah'.*alpha"):
        runner.run(alpah=3)
    with pytest.raises(TypeError, match="parameter 'alpha' expects int"):
        runner.run(alpha="three")
    with pytest.raises(TypeError, match="parameter 'flag' expects bool"):
        runner.run(flag="yes")
    with pytest.raises(ValueError, match="unknown option 'max_wrkers'"):
        Runner(flow_copy("params_flow.py"), max_wrkers=2)
    assert not (tmp_path / ".flowkernel").exists()


def test_flow_that_cannot_start_raises_with_its_own_error(flow_copy, tmp_path):
    runner = Runner(flow_copy("invalid_flow.py"), show_output=False, cwd=str(tmp_path))
    with pytest.raises(FlowStartError) as info:
        runner.run()
    assert info.value.returncode == 1
    assert "unknown-target" in str(info.value) and "invalid_flow.py:7" in str(info.value)


def test_async_run_streams_lines_while_the_run_is_live(flow_copy, tmp_path):
    async def scenario():
        runner = Runner(flow_copy("slow_flow.py"), cwd=str(tmp_path), env={"SLOW_SECONDS": "1.5"})
        running = await runner.async_run()
        assert running.status == "running"
        seen = None
        async for _, line in running.stream_log("stdout"):
            if "is sleeping" in line:
                seen = running.status
                break
        await running.wait()
        runner.cleanup()
        return seen, running

    seen, running = asyncio.run(scenario())
    assert seen == "running"  # the line arrived before the run ended
    assert running.status == "successful"


@pytest.mark.parametrize("how", ["terminate", "timeout"])
def test_terminate_and_timeout_leave_nothing_running_and_can_be_resumed(how, flow_copy, tmp_path):
    path = flow_copy("slow_flow.py")
    runner = Runner(path, show_output=False, cwd=str(tmp_path))
    if how == "terminate":
        running = asyncio.run(runner.async_run())
        assert running.proc.wait_for(lambda: "b is sleeping" in running.stdout, 20)
        running.terminate()
        assert running.status == "failed"
    else:
        running = asyncio.run(runner.async_run())
        assert running.proc.wait_for(lambda: "b is sleeping" in running.stdout, 20)
        running.wait(timeout=0.5)
        assert running.status == "timeout"
    assert wait_until_gone(path) == []
    run = running.run
    assert not run.successful and not run.finished
    fast = {"SLOW_SECONDS": "0"}
    resumed = Runner(path, show_output=False, cwd=str(tmp_path), env=fast).resume()
    assert resumed.status == "successful"
    assert resumed.run.origin_pathspec == run.pathspec
    assert resumed.run["start"].task.origin_pathspec is not None  # start was cloned


def test_keyboard_interrupt_in_the_caller_stops_the_run(flow_copy, tmp_path):
    path = flow_copy("slow_flow.py")
    script = tmp_path / "caller.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from flowkernel import Runner
            try:
                Runner({path!r}, show_output=True).run()
            except KeyboardInterrupt:
                print("caller interrupted", flush=True)
                raise SystemExit(130)
            """
        )
    )
    caller = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=testing_procs.default_sigint,  # Ctrl-C reaches it even if pytest ignores it
    )
    for line in caller.stdout:
        if "is sleeping" in line:
            break
    caller.send_signal(signal.SIGINT)
    out, _ = caller.communicate(timeout=30)
    assert caller.returncode == 130 and "caller interrupted" in out
    assert wait_until_gone(path) == []


def test_ten_concurrent_runners_get_distinct_runs(flow_copy, tmp_path):
    path = flow_copy("params_flow.py")

    async def scenario():
        runners = [Runner(path, cwd=str(tmp_path)) for _ in range(10)]
        runs = await asyncio.gather(*(r.async_run(alpha=i) for i, r in enumerate(runners)))
        await asyncio.gather(*(r.wait() for r in runs))
        for r in runners:
            r.cleanup()
        return runs

    runs = asyncio.run(scenario())
    assert [r.status for r in runs] == ["successful"] * 10
    assert len({r.run_id for r in runs}) == 10
    assert sorted(r.run["start"].task.data.doubled for r in runs) == [2 * i for i in range(10)]


def test_kernel_api_runs_a_flow_in_process(tmp_path):
    from flowkernel.errors import UsageError
    from flowkernel.kernel import Kernel

    kernel = Kernel.discover()
    root = str(tmp_path / "store")
    run = kernel.run(str(FLOWS / "params_flow.py"), datastore_root=root, alpha=4, label="k")
    assert run.successful
    assert run.data.summary[:3] == (4, 0.5, "k")
    with pytest.raises(UsageError, match="unknown parameter 'bogus'"):
        kernel.run(str(FLOWS / "params_flow.py"), datastore_root=root, bogus=1)
