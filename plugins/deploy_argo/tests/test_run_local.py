"""``flow argo-workflows run-local``: the compiled manifest's commands really run the flow, with
the artifacts, exit status and client view that ``flow run`` gives (failures included)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from argo_test_paths import FLOWS, SHAPES

from flowkernel.client import Run
from flowkernel.deployer import Deployer

SHAPE_FILES = sorted(p for p in SHAPES.glob("*.py") if p.stem != "parallel")


def _start(tmp_path, root, *args):
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(root), *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )


def _finish(proc, timeout=300):
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _flow(tmp_path, root, *args, timeout=300):
    return _finish(_start(tmp_path, root, *args), timeout)


def _run(tmp_path, root, run_id_file, flow_name):
    run_id = (tmp_path / run_id_file).read_text().strip()
    return Run(f"{flow_name}/{run_id}", _namespace_check=False, _root=str(root))


def _view(run):
    """What a user reads back: per step, each task's artifacts (in task order)."""
    steps = {}
    for step in run:
        tasks = sorted(
            (sorted((a.id, repr(a.data)) for a in task) for task in step.tasks()), key=repr
        )
        steps[step.id] = tasks
    return run.successful, steps


def both(tmp_path, flow_file, *params):
    """Run ``flow_file`` with ``flow run`` and with ``run-local``; returns both (proc, run)."""
    from flowkernel.flow.loader import load_flow

    flow_name = load_flow(str(flow_file)).__name__
    # side by side: separate roots, and the test waits for the slower one only
    local = _start(tmp_path, tmp_path / "a", "run", str(flow_file), *params,
                   "--run-id-file", "a.id", "--quiet")  # fmt: skip
    argo = _start(tmp_path, tmp_path / "b", "argo-workflows", "run-local", str(flow_file),
                  *params, "--run-id-file", "b.id")  # fmt: skip
    local, argo = _finish(local), _finish(argo)
    return (
        (local, _run(tmp_path, tmp_path / "a", "a.id", flow_name)),
        (argo, _run(tmp_path, tmp_path / "b", "b.id", flow_name)),
    )


@pytest.mark.parametrize(
    "flow_file", [*SHAPE_FILES, FLOWS / "loop_after_foreach_flow.py"], ids=lambda p: p.stem
)
def test_every_shape_runs_as_flow_run_does(flow_file, tmp_path):
    (local, local_run), (argo, argo_run) = both(tmp_path, flow_file)
    assert local.returncode == 0, local.stderr
    assert argo.returncode == 0, argo.stdout + argo.stderr
    assert argo_run.id.startswith("argo-")
    assert _view(argo_run) == _view(local_run)


@pytest.mark.parametrize("route", ["fan", "pair", "skip"])
def test_switches_around_splits_and_foreaches(route, tmp_path):
    flow = FLOWS / "switch_shapes_flow.py"
    (local, local_run), (argo, argo_run) = both(tmp_path, flow, "--route", route)
    assert (local.returncode, argo.returncode) == (0, 0), argo.stdout + argo.stderr
    assert _view(argo_run) == _view(local_run)
    expected = {"fan": "[9, 1, 4]", "pair": "['p1', 'p2']", "skip": "skipped"}[route]
    assert argo_run["join"].task.data.results == sorted(["None", expected])


def test_a_project_flow_runs_in_the_branch_it_was_deployed_to(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWKERNEL_USER", "alice")
    flow = FLOWS / "project_flow.py"
    (local, local_run), (argo, argo_run) = both(tmp_path, flow, "--branch", "Feature_1")
    assert (local.returncode, argo.returncode) == (0, 0), argo.stdout + argo.stderr
    assert argo_run.id.startswith("argo-fk-demo.test.feature-1.projectflow-")
    assert _view(argo_run) == _view(local_run)
    assert argo_run["start"].task.data.where == (
        "fk_demo", "test.Feature_1", False, False, "fk_demo.test.Feature_1.ProjectFlow", "alice"
    )  # fmt: skip
    assert argo_run["end"].task.data.branch_at_end == "test.Feature_1"
    tags = {"project:fk_demo", "project_branch:test.Feature_1", "user:alice"}
    assert tags <= set(argo_run.system_tags)


def test_a_failing_step_fails_the_run_as_flow_run_does(tmp_path):
    (local, _local_run), (argo, argo_run) = both(tmp_path, FLOWS / "failing_flow.py")
    assert local.returncode == 1 and argo.returncode == 1
    assert "Workflow failingflow-" in argo.stderr and ": Failed" in argo.stderr
    assert not argo_run.successful and not argo_run.finished
    failed = [t for t in argo_run["work"].tasks() if not t.successful]
    assert len(failed) == 1 and "item 2 is bad" in failed[0].stderr
    assert "join" not in [s.id for s in argo_run]  # failFast: nothing after the failure


def test_decorators_parameters_and_configs_behave_as_in_flow_run(tmp_path):
    flow = FLOWS / "decorated_flow.py"
    params = ("--alpha", "5", "--free-text", "free", "--options", '{"z": 1}')
    (local, local_run), (argo, argo_run) = both(tmp_path, flow, *params)
    assert (local.returncode, argo.returncode) == (0, 0), argo.stdout + argo.stderr
    end = argo_run["end"].task.data
    assert end.summary == (5, 0.5, "plain", False, {"z": 1}, "free")
    assert end.summary == local_run["end"].task.data.summary
    start = argo_run["start"].task
    assert start.data.attempts == 2  # @retry: the first attempt failed on purpose
    work = argo_run["work"].task.data
    assert work.greeting == "hello $(HOME)"  # not expanded by Kubernetes' $(VAR) rule
    assert work.templated == "{{not.argo}}"
    assert work.mode == "fast"  # the Config value fixed at create time
    assert "caught by @catch" in repr(work.problem)


def test_an_unbounded_foreach_fails_the_run_saying_why(tmp_path):
    flow = SHAPES.parent / "mfapi" / "unbounded_flow.py"
    proc = _flow(tmp_path, tmp_path / "b", "argo-workflows", "run-local", str(flow))
    assert proc.returncode == 1
    assert (
        "step 'start': a foreach over an UnboundedForeachInput cannot run on Argo Workflows"
    ) in proc.stderr


def test_timeout_kills_the_step(tmp_path):
    """@timeout(seconds=3) on a step that sleeps 60 s: killed, the run fails (a hang fails at
    _flow's bound)."""
    proc = _flow(tmp_path, tmp_path / "b", "argo-workflows", "run-local",
                 str(FLOWS / "slow_flow.py"), "--seconds", "60",
                 "--run-id-file", "b.id")  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    start = _run(tmp_path, tmp_path / "b", "b.id", "SlowFlow")["start"].task
    assert not start.finished  # killed mid-sleep: a step left to sleep would have finished


NASTY = (
    'it\'s "quoted" `touch {dir}/backtick` $(touch {dir}/dollar) ${{HOME}} $HOME '
    "{{{{workflow.name}}}} {{{{=toBase64('x')}}}} ; rm -rf / \\ \\n\nline two\ttab "
    "ünïcødé ✓ 🚀 %s %(x)s"
)


def test_parameter_values_arrive_intact_and_run_nothing(tmp_path):
    value = NASTY.format(dir=tmp_path)
    doc = {"{{workflow.name}}": ["$(id)", "`id`", {"nested": "}}{{"}], "n": 1.5}
    import json

    proc = _flow(tmp_path, tmp_path / "b", "argo-workflows", "run-local",
                 str(FLOWS / "echo_flow.py"), "--value", value, "--doc", json.dumps(doc),
                 "--run-id-file", "b.id")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = _run(tmp_path, tmp_path / "b", "b.id", "EchoFlow")["start"].task.data
    assert data.seen == value
    assert data.seen_doc == doc
    assert not (tmp_path / "backtick").exists() and not (tmp_path / "dollar").exists()


def test_a_100_kb_value_arrives_intact(tmp_path):
    value = ("0123456789abcdef{}$'\"" * 5000)[:100_000]
    proc = _flow(tmp_path, tmp_path / "b", "argo-workflows", "run-local",
                 str(FLOWS / "echo_flow.py"), "--value", value,
                 "--run-id-file", "b.id")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = _run(tmp_path, tmp_path / "b", "b.id", "EchoFlow")["start"].task.data
    assert data.seen == value


def test_bad_parameters_are_refused_before_anything_runs(tmp_path):
    proc = _flow(tmp_path, tmp_path / "b", "argo-workflows", "run-local",
                 str(SHAPES / "linear.py"), "--beta", "1")  # fmt: skip
    assert proc.returncode == 2
    assert "No such option '--beta'" in proc.stderr
    # a flow without @project has no branch: --branch is one of its parameters, or unknown
    proc = _flow(tmp_path, tmp_path / "b", "argo-workflows", "run-local",
                 str(SHAPES / "linear.py"), "--branch", "dev")  # fmt: skip
    assert proc.returncode == 2 and "No such option '--branch'" in proc.stderr
    assert not (tmp_path / "b").exists()
    # from Python: Deployer(...).argo_workflows().run_local() checks before any process starts
    deployer = Deployer(str(SHAPES / "linear.py"), show_output=False, cwd=str(tmp_path),
                        datastore_root=str(tmp_path / "b")).argo_workflows()  # fmt: skip
    with pytest.raises(ValueError, match="unknown parameter 'beta'; the flow's parameters"):
        deployer.run_local(beta=1)
    with pytest.raises(ValueError, match="unknown option 'workers' for `flow argo-workflows run"):
        deployer.run_local(run_options={"workers": 2})
    assert not (tmp_path / "b").exists()


def test_run_local_against_an_s3_root_runs_from_the_code_package(s3_root, tmp_path):
    """The tasks run from the code package stored in the s3:// root, as pods would."""
    flow = SHAPES / "nested_foreach.py"
    local = _start(tmp_path, tmp_path / "a", "run", str(flow), "--run-id-file", "a.id", "--quiet")
    argo = _start(tmp_path, s3_root, "argo-workflows", "run-local", str(flow),
                  "--run-id-file", "b.id")  # fmt: skip
    local, argo = _finish(local), _finish(argo)
    assert (local.returncode, argo.returncode) == (0, 0), argo.stdout + argo.stderr
    argo_run = _run(tmp_path, s3_root, "b.id", "NestedForeachFlow")
    local_run = _run(tmp_path, tmp_path / "a", "a.id", "NestedForeachFlow")
    assert _view(argo_run) == _view(local_run)
    # the client says so: the run's code is the package (a local run has none)
    assert argo_run.code.script_name == "nested_foreach.py" and local_run.code is None
    assert "class NestedForeachFlow" in argo_run["end"].task.code.flowspec
