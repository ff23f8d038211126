"""What a new user hits in the first hour: listing runs, finding logs, and the messages that
say what went wrong and what to type instead."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

FAILING = """\
from flowkernel import FlowSpec, step


class FailingFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.boom)

    @step
    def boom(self):
        print("about to fail")
        raise ValueError("kaboom")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FailingFlow()
"""


def flow(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "flowkernel.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=60, env=env)


def python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """One tagged successful FanoutFlow run and one failed FailingFlow run, in one root."""
    base = tmp_path_factory.mktemp("first_hour")
    (base / "failing.py").write_text(FAILING)
    fanout = str(EXAMPLES / "fanout.py")
    ok = flow("run", fanout, "--count", "3", "--tag", "exp", "--tag", "v2", cwd=base)
    assert ok.returncode == 0, ok.stderr
    bad = flow("run", "failing.py", cwd=base)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    store = base / ".flowkernel"
    return {
        "base": base,
        "fanout_id": (store / "FanoutFlow" / "latest_run").read_text(),
        "failing_id": (store / "FailingFlow" / "latest_run").read_text(),
        "failed": bad,
    }


# -- flow runs -------------------------------------------------------------------------------


def test_runs_lists_every_flows_runs_newest_first(runs):
    result = flow("runs", cwd=runs["base"])
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["RUN", "STATUS", "STARTED", "DURATION", "TAGS"]
    assert rows[0].split()[:2] == [f"FailingFlow/{runs['failing_id']}", "failed"]
    assert rows[1].split()[:2] == [f"FanoutFlow/{runs['fanout_id']}", "succeeded"]
    assert rows[1].endswith("exp, v2")


def test_runs_json_for_one_flow(runs):
    result = flow("runs", "FanoutFlow", "--json", cwd=runs["base"])
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(result.stdout)
    assert run["run_id"] == runs["fanout_id"] and run["status"] == "succeeded"
    assert run["tags"] == ["exp", "v2"]
    assert 0 < run["duration"] < 60 and run["finished_at"] > run["started_at"]
    unknown = flow("runs", "NoSuchFlow", cwd=runs["base"])
    assert unknown.returncode == 1
    assert f"no runs of flow NoSuchFlow under {runs['base'] / '.flowkernel'}" in unknown.stderr


# -- flow logs -------------------------------------------------------------------------------


def test_logs_of_a_whole_run_by_flow_and_run_or_run_alone(runs):
    squares = "1^2 = 1\n2^2 = 4\n3^2 = 9\n"
    for spec in (f"FanoutFlow/{runs['fanout_id']}", runs["fanout_id"], "FanoutFlow"):
        result = flow("logs", spec, cwd=runs["base"])
        assert result.returncode == 0, (spec, result.stderr)
        assert result.stdout == squares + "sum of squares: 14\n", spec
        headers = result.stderr.splitlines()
        assert headers[0] == f"--- FanoutFlow/{runs['fanout_id']}/start/1 (attempt 0) ---"
        assert headers[-1].startswith(f"--- FanoutFlow/{runs['fanout_id']}/end/")


def test_logs_latest_and_where_it_looked(runs):
    latest = flow("logs", "FanoutFlow/latest/end", cwd=runs["base"])
    assert latest.returncode == 0 and latest.stdout == "sum of squares: 14\n", latest.stderr
    root = runs["base"] / ".flowkernel"
    missing = flow("logs", "123456/end", cwd=runs["base"])
    assert missing.returncode == 1
    assert f"no flow or run named 123456 under {root}" in missing.stderr
    assert "flows there: FailingFlow, FanoutFlow" in missing.stderr
    no_run = flow("logs", "FanoutFlow/123456", cwd=runs["base"])
    assert f"no run FanoutFlow/123456 under {root}" in no_run.stderr
    bare_latest = flow("logs", "latest/end", cwd=runs["base"])
    assert bare_latest.returncode == 2 and "'latest' needs a flow" in bare_latest.stderr


# -- a failed run ----------------------------------------------------------------------------


def test_a_failed_run_ends_with_how_to_resume_on_stderr(runs):
    failed = runs["failed"]
    assert "Workflow failed" not in failed.stdout
    summary, hint = failed.stderr.strip().splitlines()[-2:]
    assert summary.endswith("Workflow failed: Step boom (task-id 2) failed.")
    assert hint == "To resume from the failed step: flow resume failing.py"


def test_resume_names_the_root_it_searched(tmp_path):
    (tmp_path / "failing.py").write_text(FAILING)
    result = flow("--datastore-root", "elsewhere", "resume", "failing.py", cwd=tmp_path)
    assert result.returncode == 2
    assert f"no previous run of FailingFlow to resume under {tmp_path / 'elsewhere'}" in (
        result.stderr
    )


# -- messages --------------------------------------------------------------------------------


def test_python_flow_py_with_a_typo_suggests_the_command(tmp_path):
    result = python(str(EXAMPLES / "fanout.py"), "rnu", cwd=tmp_path)
    assert result.returncode == 2
    assert "No such command 'rnu'. Did you mean 'run'?" in result.stderr


def test_python_flow_py_with_a_parameter_but_no_command_says_where_it_goes(tmp_path):
    result = python(str(EXAMPLES / "fanout.py"), "--count", "3", cwd=tmp_path)
    assert result.returncode == 2
    assert "--count is not an option of fanout.py itself" in result.stderr
    assert "python fanout.py run --count 3" in result.stderr
    assert not (tmp_path / ".flowkernel").exists()


def test_python_flow_py_root_options_before_the_command_still_work(tmp_path):
    fanout = str(EXAMPLES / "fanout.py")
    result = python(fanout, "--datastore-root", "ds", "run", "--count", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ds" / "FanoutFlow").is_dir()
    checked = python(fanout, cwd=tmp_path)  # no command: check, as Metaflow does
    assert checked.returncode == 0 and "looks good" in checked.stdout


def test_options_before_the_flow_file_say_the_file_comes_first(tmp_path):
    result = flow("run", "--count", "5", "fanout.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "the flow file comes right after 'run'" in result.stderr
    assert "flow run fanout.py --count 5" in result.stderr


def test_a_root_option_after_the_command_says_it_goes_before(tmp_path):
    result = flow("run", str(EXAMPLES / "fanout.py"), "--datastore-root", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert "--datastore-root is an option of flow itself and goes before the command" in (
        result.stderr
    )


def test_a_bad_parameter_from_the_environment_names_the_variable(tmp_path, clean_env):
    env = clean_env(FLOWKERNEL_RUN_COUNT="abc")
    result = flow("run", str(EXAMPLES / "fanout.py"), cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "environment variable FLOWKERNEL_RUN_COUNT (parameter --count)" in result.stderr
    on_line = flow("run", str(EXAMPLES / "fanout.py"), "--count", "x", cwd=tmp_path, env=env)
    assert "Invalid value for '--count'" in on_line.stderr  # the command line's value is named


def test_check_hints_at_an_undecorated_end_and_reports_a_join_without_inputs(tmp_path):
    (tmp_path / "undecorated.py").write_text(
        "from flowkernel import FlowSpec, step\n"
        "\n"
        "class U(FlowSpec):\n"
        "    @step\n"
        "    def start(self):\n"
        "        self.next(self.a, self.b)\n"
        "    @step\n"
        "    def a(self):\n"
        "        self.next(self.j)\n"
        "    @step\n"
        "    def b(self):\n"
        "        self.next(self.j)\n"
        "    @step\n"
        "    def j(self):\n"
        "        self.next(self.end)\n"
        "    def end(self):\n"
        "        pass\n"
    )
    result = flow("check", "undecorated.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "hint: 'end' (line 16) is a method without @step: add @step above it" in (result.stderr)
    assert "end=True" not in result.stderr
    assert "step 'j' is reached from 'a', 'b', which run in parallel, but it is not a join" in (
        result.stderr
    )
    assert "hint: make it a join that receives them: def j(self, inputs)" in result.stderr


def test_plugins_shows_a_plugin_that_declines_on_this_platform(cli_runner, kernel_factory):
    from flowkernel.testing import make_plugin

    declining = make_plugin(flowkernel_make_poller=lambda: None)
    kernel = kernel_factory(plugins=[("nopoll", declining)])
    result = cli_runner(["plugins", "--all", "--json"], kernel)
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert records["nopoll"]["declines"] == ["flowkernel_make_poller"]
    assert records["builtins"]["declines"] == []  # it answers with a poller


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kqueue declines on Linux only")
def test_procpoll_darwin_is_shown_declining_on_linux(tmp_path):
    result = flow("plugins", cwd=tmp_path)
    lines = result.stdout.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("procpoll_darwin ")))
    assert lines[at + 1] == "    declines here (linux): flowkernel_make_poller"


# -- honest compatibility --------------------------------------------------------------------


def test_every_metaflow_name_we_lack_is_an_import_error_pointing_to_the_docs(repo_root):
    import flowkernel
    from flowkernel.not_provided import NOT_PROVIDED

    doc = (repo_root / "docs" / "compatibility.md").read_text()
    provided = set(NOT_PROVIDED) & (set(flowkernel._LAZY) | set(flowkernel._FROM_PLUGINS))
    assert not provided, f"provided now: remove from NOT_PROVIDED and the doc: {provided}"
    missing = list(NOT_PROVIDED)
    assert {"conda", "card", "pypi", "kubernetes", "batch", "S3", "trigger"} <= set(missing)
    for name in missing:
        with pytest.raises(ImportError) as info:
            exec(f"from flowkernel import {name}", {})
        message = str(info.value)
        assert f"flowkernel does not provide Metaflow's '{name}'" in message
        assert "docs/compatibility.md" in message
        assert f"| `{name}` |" in doc, f"{name} is missing from docs/compatibility.md"
    assert not hasattr(flowkernel, "no_such_name")  # other names stay AttributeErrors


def test_hasattr_is_false_for_a_metaflow_name_we_lack():
    """Code probing for an optional Metaflow feature (`hasattr(metaflow, "conda")`) must get
    False, not an ImportError; `from flowkernel import conda` keeps the message."""
    import flowkernel

    assert not hasattr(flowkernel, "conda")
    assert getattr(flowkernel, "card", None) is None
    with pytest.raises(AttributeError, match="flowkernel does not provide Metaflow's 'conda'"):
        flowkernel.conda  # noqa: B018 - the attribute access is the test


def test_the_readme_links_the_compatibility_page(repo_root):
    assert "(docs/compatibility.md)" in (repo_root / "README.md").read_text()
