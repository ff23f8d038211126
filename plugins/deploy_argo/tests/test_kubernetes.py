"""The Kubernetes calls, through the Deployer API, against a fake API server (the one mock):
exactly which objects are created, read, listed, patched and deleted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from argo_test_paths import FLOWS, IMAGE, ROOT, SHAPES
from fake_kube import FakeKube

from flowkernel.deployer import DeployedFlow, Deployer, DeployerError

WT = "/apis/argoproj.io/v1alpha1/namespaces/team-a/workflowtemplates"
WF = "/apis/argoproj.io/v1alpha1/namespaces/team-a/workflows"
CW = "/apis/argoproj.io/v1alpha1/namespaces/team-a/cronworkflows"


@pytest.fixture(scope="module")
def server():
    fake = FakeKube().start()
    yield fake
    fake.stop()


@pytest.fixture
def kube(server, tmp_path, monkeypatch):
    """The fake server, empty, as the current kubeconfig (namespace team-a)."""
    server.reset()
    config = server.kubeconfig(str(tmp_path / "kubeconfig"), namespace="team-a")
    monkeypatch.setenv("KUBECONFIG", config)
    monkeypatch.delenv("FLOWKERNEL_ARGO_IMAGE", raising=False)
    monkeypatch.setenv("FLOWKERNEL_USER", "alice")
    for name in ("FLOWKERNEL_BRANCH", "FLOWKERNEL_PRODUCTION"):
        monkeypatch.delenv(name, raising=False)
    return server


def _deployer(flow_file, tmp_path, root):
    return Deployer(str(flow_file), show_output=False, cwd=str(tmp_path), datastore_root=root)


def _calls(kube):
    return [(r["method"], r["path"]) for r in kube.requests]


def test_create_puts_exactly_the_compiled_template(kube, s3_root, tmp_path, compile_only, validate):
    flow = FLOWS / "decorated_flow.py"
    deployed = (
        _deployer(flow, tmp_path, s3_root).argo_workflows(name="decorated").create(image=IMAGE)
    )
    assert (deployed.name, deployed.flow_name) == ("decorated", "DecoratedFlow")
    assert deployed.metadata == s3_root
    assert deployed.additional_info == {"namespace": "team-a", "owner": "alice"}
    # no @schedule: a CronWorkflow left by an earlier deployment would be removed
    assert _calls(kube) == [("GET", f"{WT}/decorated"), ("POST", WT), ("DELETE", f"{CW}/decorated")]
    posted = kube.requests[1]
    assert posted["query"] == {"fieldValidation": "Strict"}
    expected = compile_only(flow, group=["--name", "decorated"], root=s3_root)
    assert posted["body"] == expected
    assert validate(posted["body"]) == []

    # creating again replaces it, with the stored object's resourceVersion
    _deployer(flow, tmp_path, s3_root).argo_workflows(name="decorated").create(
        image=IMAGE, max_workers=3
    )
    assert _calls(kube)[3:5] == [("GET", f"{WT}/decorated"), ("PUT", f"{WT}/decorated")]
    replaced = kube.requests[4]["body"]
    assert replaced["metadata"]["resourceVersion"] == "1"
    assert replaced["spec"]["parallelism"] == 3


def test_trigger_creates_a_workflow_with_the_arguments(kube, s3_root, tmp_path, validate):
    deployed = (
        _deployer(FLOWS / "decorated_flow.py", tmp_path, s3_root)
        .argo_workflows()
        .create(image=IMAGE)
    )
    assert deployed.name == "decoratedflow"
    kube.requests.clear()
    triggered = deployed.trigger(alpha=3, label="it's {{x}} $(y)")
    assert _calls(kube) == [("GET", f"{WT}/decoratedflow"), ("POST", WF)]
    workflow = kube.requests[1]["body"]
    assert validate(workflow) == []
    assert workflow["spec"] == {
        "workflowTemplateRef": {"name": "decoratedflow"},
        "arguments": {
            "parameters": [
                {"name": "alpha", "value": "3"},
                {"name": "label", "value": '"it\'s \\u007b\\u007bx\\u007d\\u007d \\u0024(y)"'},
            ]
        },
    }
    assert json.loads(workflow["spec"]["arguments"]["parameters"][1]["value"]) == "it's {{x}} $(y)"
    (stored,) = [o for (p, _, _), o in kube.objects.items() if p == "workflows"]
    name = stored["metadata"]["name"]
    assert name.startswith("decoratedflow-")
    assert triggered.pathspec == f"DecoratedFlow/argo-{name}"

    # the state comes from the Workflow's status.phase
    assert triggered.status == "pending"
    stored["status"] = {"phase": "Running"}
    assert triggered.status == "running"
    assert triggered.terminate() is True
    assert kube.requests[-1]["method"] == "PATCH"
    assert kube.requests[-1]["body"] == {"spec": {"shutdown": "Terminate"}}
    stored = kube.objects[("workflows", "team-a", name)]
    stored["status"] = {"phase": "Failed"}
    assert triggered.status == "terminated"
    assert triggered.terminate() is False  # finished: nothing is patched
    assert kube.requests[-1]["method"] == "GET"


def test_list_describe_and_delete(kube, s3_root, tmp_path):
    for flow, name in ((SHAPES / "linear.py", "one"), (SHAPES / "branch.py", "two")):
        _deployer(flow, tmp_path, s3_root).argo_workflows(name=name).create(image=IMAGE)
    listed = DeployedFlow.list_deployed_flows(impl="argo-workflows")
    assert sorted((d.name, d.flow_name) for d in listed) == [
        ("one", "LinearFlow"),
        ("two", "BranchFlow"),
    ]
    list_call = next(r for r in kube.requests if r["method"] == "GET" and r["path"] == WT)
    assert list_call["query"]["labelSelector"] == "app.kubernetes.io/part-of=flowkernel"
    only = DeployedFlow.list_deployed_flows(flow_name="BranchFlow", impl="argo-workflows")
    assert [d.name for d in only] == ["two"]

    found = DeployedFlow.from_deployment("one", impl="argo_workflows")
    assert (found.name, found.flow_name) == ("one", "LinearFlow")
    assert found.delete() is True
    assert _calls(kube)[-2:] == [("DELETE", f"{CW}/one"), ("DELETE", f"{WT}/one")]
    assert ("workflowtemplates", "team-a", "one") not in kube.objects
    with pytest.raises(DeployerError, match="no WorkflowTemplate 'one' in namespace team-a"):
        DeployedFlow.from_deployment("one", impl="argo-workflows")


def test_a_deployment_found_by_name_triggers_with_its_parameters(kube, s3_root, tmp_path):
    """from_deployment has no flow file: a stand-in built from the template's annotation
    checks the parameters and the trigger goes through."""
    _deployer(FLOWS / "echo_flow.py", tmp_path, s3_root).argo_workflows(name="echo").create(
        image=IMAGE
    )
    found = DeployedFlow.from_deployment("echo", impl="argo-workflows")
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        found.trigger(nope=1)
    triggered = found.trigger(value="hi")
    assert triggered.pathspec.startswith("EchoFlow/argo-echo-")
    posted = kube.requests[-1]["body"]["spec"]["arguments"]["parameters"]
    assert posted == [{"name": "value", "value": '"hi"'}]


def test_trigger_of_a_missing_template_and_a_local_root_fail_clearly(kube, s3_root, tmp_path):
    deployer = _deployer(SHAPES / "linear.py", tmp_path, s3_root).argo_workflows(name="ghost")
    deployed = DeployedFlow(deployer, {"name": "ghost", "flow_name": "LinearFlow"})
    with pytest.raises(DeployerError, match="no WorkflowTemplate 'ghost' in namespace team-a"):
        deployed.trigger()
    local = Deployer(str(SHAPES / "linear.py"), show_output=False, cwd=str(tmp_path),
                     datastore_root=str(tmp_path))  # fmt: skip
    with pytest.raises(DeployerError, match="cannot see the local datastore root"):
        local.argo_workflows().create(image=IMAGE)
    assert [r for r in kube.requests if r["method"] != "GET"] == []


def test_create_only_json_gives_the_objects_without_a_cluster(tmp_path, monkeypatch, compile_only):
    """Nothing is sent or stored: no Kubernetes configuration exists, and the datastore root is
    a bucket no server holds; the deployment comes back with the compiled objects."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # nothing listens there
    flow = FLOWS / "scheduled_flow.py"
    deployer = _deployer(flow, tmp_path, ROOT).argo_workflows(namespace="team-a")
    deployed = deployer.create(image=IMAGE, only_json=True)
    assert (deployed.name, deployed.flow_name, deployed.metadata) == (
        "scheduledflow",
        "ScheduledFlow",
        ROOT,
    )
    assert deployed.additional_info["namespace"] == "team-a"
    printed = compile_only(flow, group=["--namespace", "team-a"])
    assert [deployed.workflow_template, deployed.cron_workflow] == printed
    plain = _deployer(SHAPES / "linear.py", tmp_path, ROOT).argo_workflows()
    linear = plain.create(image=IMAGE, only_json=True)
    assert linear.workflow_template == compile_only(SHAPES / "linear.py")
    assert linear.cron_workflow is None
    with pytest.raises(DeployerError, match="no Kubernetes configuration"):
        linear.trigger()  # it was not deployed: triggering needs the cluster


def test_the_deployed_template_is_readable_from_a_deployment_found_by_name(kube, s3_root, tmp_path):
    flow = SHAPES / "linear.py"
    created = _deployer(flow, tmp_path, s3_root).argo_workflows().create(image=IMAGE)
    posted = kube.objects[("workflowtemplates", "team-a", "linearflow")]
    assert created.workflow_template["spec"] == posted["spec"]
    found = DeployedFlow.from_deployment("linearflow", impl="argo-workflows")
    assert found.workflow_template == posted
    (listed,) = DeployedFlow.list_deployed_flows(impl="argo-workflows")
    assert listed.workflow_template == posted  # read with describe


def test_no_kubeconfig_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", ROOT, "argo-workflows",
           "create", str(SHAPES / "linear.py"), "--image", IMAGE]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert "Kubernetes error: no Kubernetes configuration: set KUBECONFIG" in proc.stderr


def test_a_scheduled_flow_gets_a_cron_workflow(kube, s3_root, tmp_path, validate, compile_only):
    flow = FLOWS / "scheduled_flow.py"
    printed = compile_only(flow, root=s3_root)
    assert [o["kind"] for o in printed] == ["WorkflowTemplate", "CronWorkflow"]
    cron = printed[1]
    assert all(validate(o) == [] for o in printed)
    assert cron["spec"]["schedules"] == ["*/15 * * * ?"]
    assert cron["spec"]["timezone"] == "Europe/Paris"
    assert cron["spec"]["workflowSpec"] == {"workflowTemplateRef": {"name": "scheduledflow"}}
    _deployer(flow, tmp_path, s3_root).argo_workflows().create(image=IMAGE)
    assert ("POST", CW) in _calls(kube)
    assert kube.objects[("cronworkflows", "team-a", "scheduledflow")]["spec"] == cron["spec"]
    # deployed again without @schedule (same name): the schedule goes
    plain = tmp_path / "scheduled_flow.py"
    plain.write_text(
        flow.read_text().replace('@schedule(cron="*/15 * * * ? *", timezone="Europe/Paris")\n', "")
    )
    _deployer(plain, tmp_path, s3_root).argo_workflows().create(image=IMAGE)
    assert ("cronworkflows", "team-a", "scheduledflow") not in kube.objects
    assert ("workflowtemplates", "team-a", "scheduledflow") in kube.objects


def test_a_required_parameter_without_default_cannot_be_scheduled(tmp_path):
    flow = str(FLOWS / "unschedulable_flow.py")
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", ROOT, "argo-workflows",
           "create", flow, "--only-json", "--image", IMAGE]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert "parameter 'needed' is required and has no default: a scheduled run" in proc.stderr


def test_a_project_flow_deploys_and_triggers_under_its_branch(kube, s3_root, tmp_path):
    flow = FLOWS / "project_flow.py"
    deployed = (
        _deployer(flow, tmp_path, s3_root).argo_workflows().create(image=IMAGE, branch="feature")
    )
    assert deployed.name == "fk-demo.test.feature.projectflow"
    assert deployed.additional_info == {
        "namespace": "team-a",
        "owner": "alice",
        "project_name": "fk_demo",
        "branch_name": "test.feature",
        "project_flow_name": "fk_demo.test.feature.ProjectFlow",
    }
    triggered = deployed.trigger()
    assert kube.requests[-1]["body"]["spec"]["workflowTemplateRef"] == {"name": deployed.name}
    assert triggered.pathspec.startswith("ProjectFlow/argo-fk-demo.test.feature.projectflow-")

    prod = _deployer(flow, tmp_path, s3_root).argo_workflows().create(image=IMAGE, production=True)
    assert prod.name == "fk-demo.prod.projectflow"
    # the command line finds a branch's deployment as create named it
    cmd = [sys.executable, "-m", "flowkernel.cli", "argo-workflows", "trigger", str(flow)]
    proc = subprocess.run([*cmd, "--production"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    posted = kube.requests[-1]["body"]
    assert posted["spec"]["workflowTemplateRef"] == {"name": "fk-demo.prod.projectflow"}
    assert "started: run ProjectFlow/argo-fk-demo.prod.projectflow-" in proc.stderr
