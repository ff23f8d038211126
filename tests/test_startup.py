"""The ``flow`` command pauses the garbage collector while it starts (flowkernel.startup): the
user's code, and every command's own work, run with it on."""

from __future__ import annotations

import gc
import subprocess

import pytest

from flowkernel import hookimpl, startup

FLOW = """\
import gc

from flowkernel import FlowSpec, step

AT_IMPORT = gc.isenabled()


class GcFlow(FlowSpec):
    @step
    def start(self):
        print("collector on at import:", AT_IMPORT, "in the step:", gc.isenabled())
        self.next(self.end)

    @step
    def end(self):
        pass
"""


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_the_flow_file_and_its_steps_run_with_the_collector_on(
    tmp_path, venv_bin, clean_env, isolation
):
    (tmp_path / "gcflow.py").write_text(FLOW)
    proc = subprocess.run(
        [venv_bin("flow"), "run", "gcflow.py", "--isolation", isolation],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "collector on at import: True in the step: True" in proc.stdout


@pytest.fixture
def paused():
    """The collector paused as the ``flow`` console script pauses it; put back afterwards."""
    startup.pause_gc()
    try:
        yield
    finally:
        startup._paused = False
        gc.enable()
        gc.unfreeze()


class _Probe:
    """A plugin command that notes whether the collector is on when it runs."""

    seen: list[bool] = []

    @hookimpl
    def flowkernel_cli(self, cli):
        @cli.command("gc-probe")
        def probe():
            self.seen.append(gc.isenabled())


def test_a_command_that_runs_no_flow_turns_the_collector_on(paused, cli_runner, kernel_factory):
    probe = _Probe()
    result = cli_runner(["gc-probe"], kernel_factory(plugins=[probe]))
    assert result.exit_code == 0, result.output
    assert probe.seen == [True]


def test_resume_gc_does_nothing_unless_paused():
    assert gc.isenabled()
    startup.resume_gc()
    assert gc.isenabled() and gc.get_freeze_count() == 0
