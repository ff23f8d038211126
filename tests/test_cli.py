"""The plugin side of the command line: ``flow plugins``, ``--version``, ``--no-plugins``."""

from __future__ import annotations

import json
import os

import pytest

from flowkernel.testing import FakeEntryPoint, make_plugin


@pytest.fixture
def installed(fake_entry_points):
    """Three fake installed plugins: one working, one broken, one with a runtime."""
    from flowkernel.specs import RuntimeSpec

    spec = RuntimeSpec(name="fake", factory=object)
    fake_entry_points(
        FakeEntryPoint("good", make_plugin(flowkernel_cli=lambda cli: None), dist="fk-good"),
        FakeEntryPoint("broken", ImportError("No module named 'missing_dep'"), dist="fk-broken"),
        FakeEntryPoint("rt", make_plugin(flowkernel_runtimes=lambda: [spec]), dist="fk-rt"),
    )


def _json(result):
    assert result.exit_code == 0, result.output
    return {r["name"]: r for r in json.loads(result.stdout)}


def test_plugins_lists_status_distribution_and_error(installed, cli_runner):
    result = cli_runner(["plugins"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "good  loaded  fk-good 1.0" in lines
    assert "broken  failed  fk-broken 1.0" in lines
    assert "    error: ImportError: No module named 'missing_dep'" in lines
    assert "    hooks: flowkernel_runtimes" in lines
    assert "builtins" not in result.stdout


def test_plugins_json(installed, cli_runner):
    records = _json(cli_runner(["plugins", "--json"]))
    assert set(records) == {"good", "broken", "rt"}
    assert records["broken"]["status"] == "failed"
    assert records["broken"]["error"] == "ImportError: No module named 'missing_dep'"
    assert records["good"] == {
        "name": "good",
        "status": "loaded",
        "distribution": "fk-good",
        "version": "1.0",
        "module": "fake_good.hooks",
        "hooks": ["flowkernel_cli"],
        "error": None,
        "declines": [],
    }


def test_plugins_all_includes_builtins(installed, cli_runner):
    records = _json(cli_runner(["plugins", "--json", "--all"]))
    assert records["builtins"]["status"] == "builtin"
    assert "flowkernel_make_poller" in records["builtins"]["hooks"]


def test_plugins_hook_filter(installed, cli_runner):
    assert set(_json(cli_runner(["plugins", "--json", "--hook", "flowkernel_runtimes"]))) == {"rt"}
    assert _json(cli_runner(["plugins", "--json", "--hook", "flowkernel_nothing"])) == {}


def test_plugins_with_nothing_installed(fake_entry_points, cli_runner):
    fake_entry_points()
    result = cli_runner(["plugins"])
    assert result.exit_code == 0
    assert result.stdout == "No plugins installed.\n"


def test_disable_plugins_shows_blocked(installed, cli_runner, monkeypatch):
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGINS", "good")
    assert _json(cli_runner(["plugins", "--json"]))["good"]["status"] == "blocked"


def test_no_plugins_flag_loads_none_and_is_undone_afterwards(installed, cli_runner):
    records = _json(cli_runner(["--no-plugins", "plugins", "--json"]))
    assert {r["status"] for r in records.values()} == {"blocked"}
    assert "FLOWKERNEL_PLUGINS" not in os.environ
    assert _json(cli_runner(["plugins", "--json"]))["good"]["status"] == "loaded"


def test_no_plugins_flag_repairs_a_broken_install_in_strict_mode(
    installed, cli_runner, monkeypatch
):
    monkeypatch.setenv("FLOWKERNEL_STRICT_PLUGINS", "1")
    broken = cli_runner(["plugins"])
    assert broken.exit_code != 0
    assert "could not load plugin broken" in str(broken.exception) + broken.output
    assert cli_runner(["--no-plugins", "plugins"]).exit_code == 0


def test_version_lists_plugins(installed, cli_runner):
    result = cli_runner(["--version"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("flowkernel ")
    assert "  good: fk-good 1.0" in lines
    assert "  broken: fk-broken 1.0 [failed]" in lines


def test_cli_runner_restores_the_process_kernel(kernel_factory, cli_runner):
    from flowkernel.cli import context

    before = context._KERNEL
    cli_runner(["plugins"], kernel_factory())
    assert context._KERNEL is before


def test_missing_runtime_is_a_clean_error(kernel_factory, cli_runner, tmp_path):
    flow = tmp_path / "f.py"
    flow.write_text("from flowkernel import FlowSpec\n")
    result = cli_runner(["run", str(flow), "--runtime", "nope"], kernel_factory())
    assert result.exit_code != 0
    assert "Traceback" not in result.output
