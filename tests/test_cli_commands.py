"""Command-line details users hit: per-flow help, log pathspec forms, deployer commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from flowkernel.testing import build_kernel, make_plugin, run_cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def flow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowkernel.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def test_run_help_lists_the_flows_parameters(tmp_path):
    result = flow("run", str(EXAMPLES / "hello.py"), "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: flow run FILE [OPTIONS]")
    assert "--who TEXT" in result.stdout and "Whom to greet. [default: world]" in result.stdout
    assert "--max-workers" in result.stdout
    assert not (tmp_path / ".flowkernel").exists()  # help runs nothing


def test_unknown_run_option_is_a_usage_error(tmp_path):
    result = flow("run", str(EXAMPLES / "hello.py"), "--whom", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert "No such option '--whom'" in result.stderr
    assert not (tmp_path / ".flowkernel").exists()


def test_logs_accepts_every_pathspec_form(tmp_path):
    assert flow("run", str(EXAMPLES / "hello.py"), "--times", "1", cwd=tmp_path).returncode == 0
    run_id = (tmp_path / ".flowkernel" / "HelloFlow" / "latest_run").read_text()
    task_id = next((tmp_path / ".flowkernel" / "HelloFlow" / run_id / "shout").iterdir()).name
    for spec in (
        f"{run_id}/shout",
        f"{run_id}/shout/{task_id}",
        f"HelloFlow/{run_id}/shout",
        f"HelloFlow/{run_id}/shout/{task_id}",
    ):
        result = flow("logs", spec, cwd=tmp_path)
        assert result.returncode == 0, (spec, result.stderr)
        assert result.stdout == "hello, world!\n", spec
    with_file = flow("logs", str(EXAMPLES / "hello.py"), f"{run_id}/shout", cwd=tmp_path)
    assert with_file.stdout == "hello, world!\n"
    missing = flow("logs", f"{run_id}/nope", cwd=tmp_path)
    assert missing.returncode == 1 and "no tasks" in missing.stderr


def test_a_deployers_command_group_appears_in_flow():
    from flowkernel.specs import DeployerSpec

    @click.group(help="Deploy to the toy scheduler.")
    def toy():
        pass

    @toy.command()
    def create():
        click.echo("created")

    plugin = make_plugin(flowkernel_deployers=lambda: [DeployerSpec("toy", object, cli=toy)])
    kernel = build_kernel([("toy_deployer", plugin)])
    assert "toy" in run_cli(["--help"], kernel).stdout
    result = run_cli(["toy", "create"], kernel)
    assert result.exit_code == 0 and result.stdout == "created\n"


def test_a_flow_file_that_fails_to_import_shows_only_its_own_frames(tmp_path):
    bad = tmp_path / "imports.py"
    bad.write_text("import os\n\nimport not_a_module_xyz\n")
    result = flow("run", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert "Could not import the flow file" in result.stderr and str(bad) in result.stderr
    assert f'File "{bad}", line 3' in result.stderr
    assert "ModuleNotFoundError: No module named 'not_a_module_xyz'" in result.stderr
    assert "importlib" not in result.stderr and "flowkernel" not in result.stderr.lower()
    syntax = tmp_path / "syntax.py"
    syntax.write_text("from flowkernel import FlowSpec\n\nclass A(FlowSpec)\n    pass\n")
    result = flow("check", str(syntax), cwd=tmp_path)
    assert result.returncode == 2 and f"{syntax}:3: syntax error" in result.stderr
