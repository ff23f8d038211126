"""Real plugins, really installed, seen by the real ``flow`` in a subprocess.

Each distribution is built and installed with ``pip install --no-deps --target DIR`` and put on
the subprocess's PYTHONPATH, so the test environment itself is never modified.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "flowkernel-broken-demo"
version = "0.3.0"
dependencies = ["flowkernel"]

[project.entry-points."flowkernel.plugins"]
broken_demo = "flowkernel_broken_demo.hooks"

[tool.setuptools]
packages = ["flowkernel_broken_demo"]
"""


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory, install_distributions):
    """A plugin whose entry-point module imports a dependency that is not installed."""
    src = tmp_path_factory.mktemp("broken") / "flowkernel-broken-demo"
    (src / "flowkernel_broken_demo").mkdir(parents=True)
    (src / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (src / "flowkernel_broken_demo" / "__init__.py").write_text("")
    (src / "flowkernel_broken_demo" / "hooks.py").write_text(
        "import flowkernel_dependency_that_is_not_installed  # noqa: F401\n"
    )
    return install_distributions(src)


@pytest.fixture(scope="module")
def timer_site(install_distributions, repo_root):
    """The example plugin of docs/writing-a-plugin.md."""
    return install_distributions(repo_root / "examples" / "plugins" / "flowkernel-run-timer")


@pytest.fixture
def flow(venv_bin, clean_env, repo_root):
    """Run the installed ``flow`` with ``site`` on PYTHONPATH (``None``: nothing extra)."""
    exe = venv_bin("flow")

    def run(*args, site=None, **env):
        extra = {"PYTHONPATH": str(site)} if site else {}
        return subprocess.run(
            [str(exe), *args],
            cwd=repo_root,
            env=clean_env(**extra, **env),
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def _records(proc):
    assert proc.returncode == 0, proc.stderr
    return {r["name"]: r for r in json.loads(proc.stdout)}


# -- a plugin that fails to import ----------------------------------------------------------------


def test_broken_plugin_is_listed_as_failed(flow, broken_site):
    proc = flow("plugins", site=broken_site)
    assert proc.returncode == 0, proc.stderr
    assert "broken_demo  failed  flowkernel-broken-demo 0.3.0" in proc.stdout
    assert (
        "error: ModuleNotFoundError: No module named 'flowkernel_dependency_that_is_not_installed'"
        in proc.stdout
    )
    assert "could not load plugin broken_demo from flowkernel-broken-demo 0.3.0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_broken_plugin_json_and_help_keep_working(flow, broken_site):
    records = _records(flow("plugins", "--json", site=broken_site))
    assert records["broken_demo"]["status"] == "failed"
    assert "flowkernel_dependency_that_is_not_installed" in records["broken_demo"]["error"]
    assert all(r["status"] == "loaded" for name, r in records.items() if name != "broken_demo")
    help_proc = flow("--help", site=broken_site)
    assert help_proc.returncode == 0, help_proc.stderr
    assert "plugins" in help_proc.stdout and "show" in help_proc.stdout


def test_broken_plugin_does_not_change_flow_show(flow, broken_site):
    baseline = flow("show", "examples/hello.py")
    with_broken = flow("show", "examples/hello.py", site=broken_site)
    assert "Traceback" not in with_broken.stderr
    assert with_broken.returncode == baseline.returncode
    assert with_broken.stdout == baseline.stdout


def test_broken_plugin_is_fatal_in_strict_mode_and_no_plugins_repairs(flow, broken_site):
    strict = flow("plugins", site=broken_site, FLOWKERNEL_STRICT_PLUGINS="1")
    assert strict.returncode == 1
    assert "Plugin error: could not load plugin broken_demo" in strict.stderr
    repaired = flow("--no-plugins", "plugins", "--json", site=broken_site)
    assert {r["status"] for r in _records(repaired).values()} == {"blocked"}


# -- a working third-party plugin --------------------------------------------------------------


def test_installed_plugin_is_discovered_with_distribution_and_version(flow, timer_site):
    rec = _records(flow("plugins", "--json", site=timer_site))["run_timer"]
    assert rec["status"] == "loaded"
    assert (rec["distribution"], rec["version"]) == ("flowkernel-run-timer", "0.1.0")
    assert rec["module"] == "flowkernel_run_timer.hooks"
    assert "flowkernel_run_finished" in rec["hooks"] and "flowkernel_cli" in rec["hooks"]
    version = flow("--version", site=timer_site)
    assert "  run_timer: flowkernel-run-timer 0.1.0" in version.stdout.splitlines()


def test_installed_plugin_hooks_and_command_work(flow, timer_site, clean_env, tmp_path):
    assert "timer-report" in flow("--help", site=timer_site).stdout
    empty = flow("timer-report", "--root", str(tmp_path), site=timer_site)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.startswith("No timed runs")
    # drive the lifecycle hooks through a kernel discovered from the installed entry points
    script = textwrap.dedent(
        f"""
        from flowkernel.kernel import Kernel
        from flowkernel.specs import RunInfo, RunResult, TaskInfo
        kernel = Kernel.discover()
        run = RunInfo(flow_name="HelloFlow", run_id="7", datastore_root={str(tmp_path)!r})
        kernel.run_started(run)
        kernel.task_finished(TaskInfo(run=run, step="start", task_id="1", attempt=0, success=True))
        kernel.run_finished(run, RunResult(run=run, success=True))
        """
    )
    env = clean_env(PYTHONPATH=str(timer_site))
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    report = flow("timer-report", "--root", str(tmp_path), site=timer_site)
    assert report.returncode == 0, report.stderr
    assert report.stdout.startswith("HelloFlow/7 ")
    assert report.stdout.rstrip().endswith("1 tasks  ok")


def test_disable_plugins_blocks_the_installed_plugin(flow, timer_site):
    env = {"FLOWKERNEL_DISABLE_PLUGINS": "run_timer"}
    assert _records(flow("plugins", "--json", site=timer_site, **env))["run_timer"] == {
        "name": "run_timer",
        "status": "blocked",
        "distribution": "flowkernel-run-timer",
        "version": "0.1.0",
        "module": "flowkernel_run_timer.hooks",
        "hooks": [],
        "error": None,
        "declines": [],
    }
    assert "timer-report" not in flow("--help", site=timer_site, **env).stdout
    gone = flow("timer-report", site=timer_site, **env)
    assert gone.returncode == 2
    assert "No such command 'timer-report'" in gone.stderr


def test_example_plugin_own_tests_pass_when_installed(timer_site, clean_env, repo_root):
    tests = repo_root / "examples" / "plugins" / "flowkernel-run-timer" / "tests"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=repo_root,
        env=clean_env(PYTHONPATH=str(timer_site)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
