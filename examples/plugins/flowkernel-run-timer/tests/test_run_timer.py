"""Tests of the run_timer example plugin, written with the fixtures of flowkernel.testing."""

from __future__ import annotations

import json

import pytest

from flowkernel.specs import RunInfo, RunResult, TaskInfo
from flowkernel_run_timer import hooks


@pytest.fixture
def kernel(kernel_factory):
    """A fresh kernel with only this plugin (no other installed plugin interferes)."""
    return kernel_factory(plugins=[("run_timer", hooks)])


def _run(kernel, root, run_id="1", success=True):
    run = RunInfo(flow_name="HelloFlow", run_id=run_id, datastore_root=str(root))
    kernel.run_started(run)
    for step in ("start", "end"):
        kernel.task_finished(TaskInfo(run=run, step=step, task_id="1", attempt=0, success=success))
    kernel.run_finished(run, RunResult(run=run, success=success))
    return run


def test_implements_the_lifecycle_hooks_and_a_command(kernel):
    record = next(r for r in kernel.records if r.name == "run_timer")
    assert record.hooks == (
        "flowkernel_cli",
        "flowkernel_run_finished",
        "flowkernel_run_started",
        "flowkernel_task_finished",
    )


def test_a_finished_run_leaves_a_report(kernel, tmp_path):
    _run(kernel, tmp_path)
    report = json.loads((tmp_path / ".run_timer" / "HelloFlow" / "1.json").read_text())
    assert report["success"] is True
    assert [t["step"] for t in report["tasks"]] == ["start", "end"]
    assert report["seconds"] >= 0


def test_timer_report_command(kernel, cli_runner, tmp_path):
    _run(kernel, tmp_path, "1")
    _run(kernel, tmp_path, "2", success=False)
    result = cli_runner(["timer-report", "--root", str(tmp_path)], kernel)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("HelloFlow/1 ") and lines[0].endswith("2 tasks  ok")
    assert lines[1].endswith("FAILED")


def test_timer_report_with_no_runs(kernel, cli_runner, tmp_path):
    result = cli_runner(["timer-report", "--root", str(tmp_path)], kernel)
    assert result.stdout == f"No timed runs under {tmp_path}.\n"


def test_command_is_listed_in_help(kernel, cli_runner):
    assert "timer-report" in cli_runner(["--help"], kernel).stdout


def test_loads_from_its_entry_point(clean_plugin_env):
    from importlib.metadata import entry_points

    from flowkernel.kernel import Kernel

    if not [ep for ep in entry_points(group="flowkernel.plugins") if ep.name == "run_timer"]:
        pytest.skip("flowkernel-run-timer is not installed (only importable)")
    kernel = Kernel.discover(only=["run_timer"], strict=True)  # raises if it cannot load
    assert "run_timer" in kernel.plugin_names()
