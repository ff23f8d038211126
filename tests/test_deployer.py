"""Deployer / DeployedFlow / TriggeredRun, driven through the tutorial deployer, really installed.

``examples/plugins/flowkernel-local-deployer`` is built and installed into a directory that is put
on ``sys.path`` (this process: the registry) and on ``PYTHONPATH`` (the ``flow`` commands the
Deployer runs); the test environment itself is never modified.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
import venv
from pathlib import Path

import click
import pytest

from flowkernel.deployer import (
    DeployedFlow,
    Deployer,
    DeployerError,
    option_args,
    stand_in_source,
)

pytestmark = pytest.mark.slow

FLOWS = Path(__file__).parent / "flows" / "deployer"
ALPHA = str(FLOWS / "alpha_flow.py")


@pytest.fixture(scope="module")
def deployer_site(install_distributions, repo_root):
    return install_distributions(repo_root / "examples" / "plugins" / "flowkernel-local-deployer")


@pytest.fixture
def installed(deployer_site, monkeypatch, tmp_path):
    """The tutorial deployer visible here and in child processes; returns Deployer kwargs."""
    for var in ("FLOWKERNEL_PLUGINS", "FLOWKERNEL_DISABLE_PLUGINS", "FLOWKERNEL_DATASTORE_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.syspath_prepend(str(deployer_site))
    monkeypatch.setenv("PYTHONPATH", str(deployer_site))  # for DeployedFlow.from_deployment
    importlib.invalidate_caches()
    return {
        "show_output": False,
        "env": {"PYTHONPATH": str(deployer_site)},
        "cwd": str(tmp_path),
        "datastore_root": "ds",
    }


@pytest.fixture
def no_process(monkeypatch):
    """Fail the test if a deployer command would start."""

    def refuse(self):
        raise AssertionError(f"a process was started: {self.argv}")

    monkeypatch.setattr("flowkernel.runner.procs.CommandProcess.start", refuse)


def _until_finished(triggered, timeout=120):
    deadline = time.monotonic() + timeout
    while (state := triggered.status) in ("pending", "running"):
        assert time.monotonic() < deadline, f"{triggered} still {state}"
        time.sleep(0.5)
    return state


def test_create_trigger_and_read_the_run(installed, tmp_path):
    deployer = Deployer(ALPHA, **installed)
    deployed = deployer.local_deployer(name="alpha-prod").create(max_workers=4, tags=["nightly"])
    root = tmp_path / "ds"
    assert (deployed.name, deployed.flow_name) == ("alpha-prod", "AlphaFlow")
    assert deployed.metadata == f"local@{root}"
    assert deployed.additional_info == {"max_workers": 4, "tags": ["nightly"]}
    assert deployed.deployer.TYPE == "local-deployer"
    record = json.loads(
        (root / ".deployments/local-deployer/alpha-prod/deployment.json").read_text()
    )
    assert record["flow_name"] == "AlphaFlow"

    triggered = deployed.trigger(alpha=6)
    run = triggered.wait_for_run(timeout=60)
    assert triggered.pathspec == f"AlphaFlow/{run.id}"
    assert _until_finished(triggered) == "successful"
    assert triggered.run.successful
    assert run["join"].task.data.squares == [0, 1, 4, 9, 16, 25]
    assert run["end"].task.data.total == 55
    assert set(run.tags) >= {"nightly", "deployment:alpha-prod"}

    # the same deployment and run, found by name
    found = DeployedFlow.from_deployment(
        "alpha-prod", metadata=deployed.metadata, impl="local-deployer"
    )
    assert (found.name, found.flow_name) == ("alpha-prod", "AlphaFlow")
    again = DeployedFlow.get_triggered_run(
        "alpha-prod", run.id, metadata=deployed.metadata, impl="local_deployer"
    )
    assert again.status == "successful" and again.run["end"].task.data.total == 55
    listed = DeployedFlow.list_deployed_flows(impl="local-deployer", metadata=deployed.metadata)
    assert [d.name for d in listed] == ["alpha-prod"]

    assert deployed.delete() is True
    assert not (root / ".deployments/local-deployer/alpha-prod").exists()
    assert run.successful  # deleting a deployment keeps its runs
    with pytest.raises(DeployerError, match="no local-deployer deployment named 'alpha-prod'"):
        DeployedFlow.from_deployment(
            "alpha-prod", metadata=deployed.metadata, impl="local-deployer"
        )


def test_deployed_code_is_the_code_that_runs(installed, tmp_path):
    """A deployment runs the file as it was at create time, not later edits."""
    flow = tmp_path / "alpha_flow.py"
    flow.write_text(Path(ALPHA).read_text())
    deployed = Deployer(str(flow), **installed).local_deployer().create()
    assert deployed.name == "AlphaFlow"  # the default name
    flow.write_text(flow.read_text().replace("self.input**2", "self.input**3"))
    triggered = deployed.trigger(alpha=3, label="from python")
    assert _until_finished(triggered) == "successful"
    assert triggered.run["end"].task.data.total == 0 + 1 + 4
    assert "total 5 from python" in triggered.run["end"].task.stdout


def test_a_failing_create_raises_with_the_commands_own_error(installed):
    deployer = Deployer(str(FLOWS / "broken_flow.py"), **installed).local_deployer()
    with pytest.raises(DeployerError) as info:
        deployer.create()
    message = str(info.value)
    assert message.startswith("`flow local-deployer create` failed (exit code 1):")
    assert "broken_flow.py:7: step 'start': step 'start' goes to 'nowhere'" in message
    assert info.value.returncode == 1


def test_a_failing_run_reads_as_failed_and_terminate_stops_a_run(installed):
    deployed = Deployer(str(FLOWS / "sleepy_flow.py"), **installed).local_deployer().create()
    triggered = deployed.trigger(seconds=300)
    assert triggered.status == "running"
    assert triggered.terminate() is True
    assert triggered.status == "terminated"
    assert triggered.terminate() is False  # nothing left to stop
    bad = deployed.trigger(seconds=-1)  # time.sleep(-1) raises in the start step
    assert _until_finished(bad) == "failed"
    assert bad.run is not None and not bad.run.successful


def test_everything_is_checked_before_a_process_starts(installed, no_process):
    deployer = Deployer(ALPHA, **installed)
    with pytest.raises(ValueError, match="unknown option 'colour' for `flow local-deployer`"):
        deployer.local_deployer(colour="red")
    impl = deployer.local_deployer(name="x")
    with pytest.raises(ValueError, match=r"unknown option 'workers' .*known options: max_workers"):
        impl.create(workers=4)
    with pytest.raises(ValueError, match=r"option 'max_workers' .*'four' is not a valid integer"):
        impl.create(max_workers="four")
    with pytest.raises(ValueError, match=r"option 'max_workers' .*0 is not in the range x>=1"):
        impl.create(max_workers=0)
    deployed = DeployedFlow(impl, {"name": "x", "flow_name": "AlphaFlow"})
    with pytest.raises(TypeError, match="parameter 'alpha' expects int, got str 'six'"):
        deployed.trigger(alpha="six")
    with pytest.raises(ValueError, match=r"unknown parameter 'beta'; .* alpha, label"):
        deployed.trigger(beta=1)
    with pytest.raises(TypeError, match="option 'datastore_root' expects str"):
        Deployer(ALPHA, datastore_root=3)
    with pytest.raises(ValueError, match="unknown option 'runtime'"):
        Deployer(ALPHA, runtime="local")


def test_deployer_methods_come_from_the_registry_at_call_time(installed, monkeypatch):
    deployer = Deployer(ALPHA, **installed)
    assert "local_deployer" in dir(deployer)
    assert callable(deployer.local_deployer)
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGINS", "local_deployer")
    with pytest.raises(AttributeError, match="no deployer 'local_deployer' is installed"):
        deployer.local_deployer  # noqa: B018
    assert "local_deployer" not in dir(deployer)
    with pytest.raises(ValueError, match="no deployer named 'local-deployer'; installed"):
        DeployedFlow.from_deployment("x", impl="local-deployer")


# -- pieces without processes ----------------------------------------------------------------------


def test_option_args_follow_the_commands_options():
    @click.command()
    @click.option("--max-workers", type=int)
    @click.option("--tag", "tags", multiple=True)
    @click.option("--fast/--slow", default=True)
    @click.option("--only-json", is_flag=True)
    def create(**_kw):
        pass

    args = option_args(
        create, {"max_workers": 3, "tags": ["a", "b c"], "fast": False, "only_json": True}, "c"
    )
    assert args == ["--max-workers", "3", "--tag", "a", "--tag", "b c", "--slow", "--only-json"]
    assert option_args(create, {"only_json": False, "max_workers": None}, "c") == []


def test_stand_in_flow_declares_the_parameters(tmp_path):
    from flowkernel.flow.loader import load_flow
    from flowkernel.flow.parameters import JSONType, flow_parameters

    declared = [
        {"name": "alpha", "type": "int"},
        {"name": "the-label", "type": "str"},
        {"name": "config", "type": "JSON"},
    ]
    path = tmp_path / "stand_in.py"
    path.write_text(stand_in_source("AlphaFlow", declared))
    flow_cls = load_flow(str(path))
    assert flow_cls.__name__ == "AlphaFlow"
    params = {p.name: p.type for p in flow_parameters(flow_cls).values()}
    assert params == {"alpha": int, "the-label": str, "config": JSONType}
    with pytest.raises(ValueError, match="not a flow name"):
        stand_in_source("Alpha Flow; import os", [])


# -- the wheel, in a fresh environment -------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory, copy_source, repo_root):
    """A new virtual environment with the tutorial deployer's wheel pip-installed into it.

    flowkernel itself and the standard plugins come from the test environment (a ``.pth`` file
    adds its site-packages), so only the deployer is new and it is nowhere else.
    """
    work = tmp_path_factory.mktemp("fresh")
    src = copy_source(
        repo_root / "examples" / "plugins" / "flowkernel-local-deployer", work / "src"
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(work)]
    subprocess.run([*build, str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = work.glob("flowkernel_local_deployer-0.1.0-*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site_dir = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    test_site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (Path(site_dir) / "test_env.pth").write_text(f"import site; site.addsitedir({test_site!r})\n")
    install = [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    return python


SCRIPT = """
import json, sys, time
import flowkernel_local_deployer
from flowkernel import Deployer
deployer = Deployer(sys.argv[1], show_output=False, datastore_root="ds")
deployed = deployer.local_deployer(name="tutorial").create()
triggered = deployed.trigger(alpha=6)
run = triggered.wait_for_run(timeout=60)
while triggered.status == "running":
    time.sleep(0.5)
print(json.dumps({
    "module": flowkernel_local_deployer.__file__,
    "status": triggered.status,
    "squares": run["join"].task.data.squares,
    "total": run["end"].task.data.total,
}))
"""


def test_wheel_installed_in_a_fresh_environment(fresh_env, clean_env, tmp_path):
    env = clean_env()

    def flow(*args):
        cmd = [str(fresh_env), "-m", "flowkernel.cli", *args]
        return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True)

    help_text = flow("--help")
    assert help_text.returncode == 0, help_text.stderr
    assert "local-deployer  Deploy flows as records in the datastore" in help_text.stdout
    plugins = {r["name"]: r for r in json.loads(flow("plugins", "--json").stdout)}
    assert plugins["local_deployer"]["status"] == "loaded"
    assert plugins["local_deployer"]["distribution"] == "flowkernel-local-deployer"
    assert plugins["local_deployer"]["hooks"] == ["flowkernel_deployers"]
    script = tmp_path / "deploy.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [str(fresh_env), str(script), ALPHA],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["module"].startswith(str(fresh_env.parent.parent))
    assert result["status"] == "successful"
    assert (result["squares"], result["total"]) == ([0, 1, 4, 9, 16, 25], 55)


def test_tutorial_deployer_own_tests_pass_when_installed(deployer_site, clean_env, repo_root):
    tests = repo_root / "examples" / "plugins" / "flowkernel-local-deployer" / "tests"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=repo_root,
        env=clean_env(PYTHONPATH=str(deployer_site)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
