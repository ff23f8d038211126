"""NBDeployer with the argo-workflows deployer, in a real Jupyter kernel: create and trigger
against the fake Kubernetes API server, then the same flow run through ``run-local``, as a
notebook user sees them."""

from __future__ import annotations

import sys

from .conftest import REPO

sys.path.insert(0, str(REPO / "plugins" / "deploy_argo" / "tests"))

from fake_kube import FakeKube  # the deploy_argo tests' fake API server

CELLS = [
    """
    import json
    from flowkernel import FlowSpec, NBDeployer, Parameter, step
    """,
    """
    class CountFlow(FlowSpec):
        n = Parameter("n", default=2)

        @step
        def start(self):
            self.items = list(range(self.n))
            self.next(self.end)

        @step
        def end(self):
            self.encoded = json.dumps({"items": self.items})
    """,
    """
    deployer = NBDeployer(CountFlow, datastore_root=ROOT)
    deployed = deployer.argo_workflows(name="nb-count").create()
    print("deployed:", deployed.name, deployed.flow_name, deployed.additional_info["namespace"])
    triggered = deployed.trigger(n=3)
    print("triggered:", triggered.pathspec, triggered.status)
    """,
    """
    ran = deployer.argo_workflows().run_local(n=4)
    print("run-local:", ran.status, ran.pathspec.startswith("CountFlow/argo-countflow-"))
    print("data:", ran.run.data.encoded)
    deployer.cleanup()
    """,
]


def test_nbdeployer_creates_triggers_and_runs_locally_with_argo(
    run_notebook, s3_root, tmp_path, monkeypatch
):
    kube = FakeKube().start()
    try:
        config = kube.kubeconfig(str(tmp_path / "kubeconfig"), namespace="team-a")
        monkeypatch.setenv("KUBECONFIG", config)
        monkeypatch.setenv("FLOWKERNEL_ARGO_IMAGE", "registry.example/flows:1")
        done = run_notebook([*CELLS[:2], CELLS[2].replace("ROOT", repr(s3_root)), CELLS[3]])
    finally:
        kube.stop()
    assert "deployed: nb-count CountFlow team-a" in done.text(2)
    template = kube.objects[("workflowtemplates", "team-a", "nb-count")]
    assert template["metadata"]["annotations"]["flowkernel/flow_name"] == "CountFlow"
    (workflow,) = [o for (plural, _, _), o in kube.objects.items() if plural == "workflows"]
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "nb-count"}
    assert workflow["spec"]["arguments"]["parameters"] == [{"name": "n", "value": "3"}]
    name = workflow["metadata"]["name"]
    assert f"triggered: CountFlow/argo-{name} pending" in done.text(2)
    assert "run-local: successful True" in done.text(3)
    assert 'data: {"items": [0, 1, 2, 3]}' in done.text(3)
    assert list(tmp_path.glob("CountFlow_nb_*.py")) == []  # cleanup removed the flow file
