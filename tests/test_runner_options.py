"""Runner as Metaflow's: run options and parameters in one call, resume(step_to_rerun=,
origin_run_id=), Metaflow's top-level options, ExecutingRun.command_obj."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flowkernel import Runner

FLOWS = Path(__file__).parent / "flows"


@pytest.fixture
def copy(tmp_path):
    def make(rel: str) -> str:
        dest = tmp_path / Path(rel).name
        shutil.copy(FLOWS / rel, dest)
        for extra in (FLOWS / rel).parent.glob("*.json"):
            shutil.copy(extra, tmp_path / extra.name)
        return str(dest)

    return make


def test_run_takes_parameters_and_run_options_together(copy, tmp_path):
    id_file = tmp_path / "run-id"
    runner = Runner(copy("runner/params_flow.py"), show_output=False, cwd=str(tmp_path))
    done = runner.run(
        alpha=4, label="y", max_workers=2, max_num_splits=5, tags=["刺身 means sashimi", "b"],
        run_id_file=str(id_file),
    )  # fmt: skip
    assert done.status == "successful", done.stderr
    assert done.run["end"].task.data.summary[:3] == (4, 0.5, "y")
    assert {"刺身 means sashimi", "b"} <= done.run.user_tags
    assert id_file.read_text() == done.run.id


def test_metaflows_top_level_options_are_accepted(copy, tmp_path):
    runner = Runner(
        copy("runner/params_flow.py"), show_output=False, cwd=str(tmp_path),
        metadata="local", datastore="local", environment="local", pylint=False,
        event_logger="nullSidecarLogger", monitor="nullSidecarMonitor", quiet=True,
        decospecs=["retry:times=1"],
    )  # fmt: skip
    done = runner.run()
    assert done.status == "successful", done.stderr
    obj = done.command_obj
    assert obj.process.returncode == 0 and obj.pid == obj.process.pid
    assert "run" in obj.command and "--with" in obj.command


def test_config_values_travel_from_the_runner(copy, tmp_path):
    runner = Runner(
        copy("config/config_flow.py"), show_output=False, cwd=str(tmp_path),
        config_value=[("settings", {"items": [1, 2], "count": 7, "retries": 0})],
    )  # fmt: skip
    done = runner.run()
    assert done.status == "successful", done.stderr
    assert done.run["join"].task.data.outs == [10, 20]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"environment": "conda"}, "environment='conda' is not supported"),
        ({"metadata": "service"}, "metadata='service' is not supported"),
        ({"datastore": "s3"}, "datastore_root"),
        ({"max_wrkers": 2}, "unknown option 'max_wrkers'"),
    ],
)
def test_options_that_cannot_be_honoured_are_value_errors(copy, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Runner(copy("runner/params_flow.py"), **kwargs)


def test_run_rejects_unknown_names_and_wrong_types_before_starting(copy, tmp_path):
    runner = Runner(copy("runner/params_flow.py"), show_output=False, cwd=str(tmp_path))
    with pytest.raises(ValueError, match=r"unknown parameter 'alhpa'.*run options: .*max_workers"):
        runner.run(alhpa=1)
    with pytest.raises(TypeError, match="max_workers"):
        runner.run(max_workers="many")
    assert not (tmp_path / ".flowkernel").exists()


def test_resume_with_step_to_rerun_origin_and_options(copy, tmp_path):
    path = copy("runner/failing_flow.py")
    failed = Runner(path, show_output=False, cwd=str(tmp_path)).run()
    assert failed.status == "failed"
    ok = Runner(path, show_output=False, cwd=str(tmp_path), env={"FIXED": "1"})
    first = ok.run()
    assert first.status == "successful"
    again = ok.resume(step_to_rerun="boom", origin_run_id=failed.run.id, tags=["resumed"])
    assert again.status == "successful", again.stderr
    assert again.run.origin_pathspec == failed.run.pathspec
    assert "resumed" in again.run.user_tags
    assert again.run["start"].task.origin_pathspec is not None  # cloned
    assert again.run["boom"].task.origin_pathspec is None  # ran again
    with pytest.raises(ValueError, match="resume reuses the parameters"):
        Runner(copy("runner/params_flow.py"), show_output=False).resume(alpha=3)


def test_max_log_size_cuts_each_stored_log_and_says_so(copy, tmp_path):
    runner = Runner(copy("runner/log_and_namespace_flow.py"), show_output=False, cwd=str(tmp_path))
    done = runner.run(lines=1500, max_log_size=1)  # 1.5 MB printed, 1 MB kept
    assert done.status == "successful", done.stderr
    lines = done.run["start"].task.stdout.splitlines()
    assert lines[-1] == "[TRUNCATED - MAXIMUM LOG FILE SIZE REACHED]"
    assert lines[0].startswith("00000") and len(lines) - 1 == (1024 * 1024) // 1000
    assert "01499" in done.stdout  # the console still shows every line


def test_user_namespace_is_what_the_client_sees_inside_the_steps(copy, tmp_path):
    runner = Runner(copy("runner/log_and_namespace_flow.py"), show_output=False, cwd=str(tmp_path))
    team = runner.run(user_namespace="team:search")
    assert team.run["start"].task.data.seen_namespace == "team:search"
    assert "team:search" not in team.run.tags  # the run's tags do not change
    everything = runner.run(user_namespace="")
    assert everything.run["start"].task.data.seen_namespace is None
    default = runner.run()
    assert default.run["start"].task.data.seen_namespace.startswith("user:")
