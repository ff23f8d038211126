"""The Python side of the ``argo-workflows`` deployer: ``Deployer(...).argo_workflows(...)``.

Everything :class:`~flowkernel.deployer.DeployerImpl` offers, plus :meth:`ArgoDeployer.run_local`:
the workflow ``create`` would deploy, run on this machine (``flow argo-workflows run-local``).
"""

from __future__ import annotations

from typing import Any

from flowkernel.deployer import DeployedFlow, DeployerImpl, TriggeredRun


class ArgoDeployedFlow(DeployedFlow):
    """A deployment on Argo Workflows; ``create(only_json=True)`` makes one too, without a
    cluster: its objects are compiled (and printed) but neither sent nor stored.

    ``workflow_template`` is the WorkflowTemplate as a dict, ``cron_workflow`` the CronWorkflow
    of a flow with ``@schedule`` (None without one, or for a deployment found by name).
    """

    def __init__(self, deployer: DeployerImpl, attributes: dict[str, Any]):
        super().__init__(deployer, attributes)
        self._template: dict[str, Any] | None = attributes.get("workflow_template")
        self.cron_workflow: dict[str, Any] | None = attributes.get("cron_workflow")

    @property
    def workflow_template(self) -> dict[str, Any]:
        """The WorkflowTemplate: as ``create`` compiled it, else read from the cluster."""
        if self._template is None:
            self._template = self.deployer.call("describe", [])["workflow_template"]
        return self._template


class LocalRun(TriggeredRun):
    """A workflow :meth:`ArgoDeployer.run_local` ran to its end: ``run`` is the finished run;
    ``status`` is ``successful`` or ``failed``, read from the run."""

    @property
    def status(self) -> str:
        run = self.run
        return "successful" if run is not None and run.successful else "failed"

    def terminate(self) -> bool:
        return False  # it has finished


class ArgoDeployer(DeployerImpl):
    """``Deployer(flow_file).argo_workflows(name=..., namespace=...)``."""

    deployed_flow_class = ArgoDeployedFlow

    def run_local(self, run_options: dict[str, Any] | None = None, **params: Any) -> LocalRun:
        """Compile the flow as ``create`` would and run the workflow here, each step a local
        process (``flow argo-workflows run-local``); returns once it has finished.

        :param run_options: ``run-local``'s options (``max_workers``, ``branch``, ``tags``...).
        :param params: the flow's parameters (checked against the flow first).
        :raises DeployerError: the flow could not be compiled or its run could not start.
        """
        from flowkernel.deployer import option_args
        from flowkernel.runner.runner import parameter_args

        if self.flow_file is None:
            raise ValueError("run_local needs a flow file: use Deployer(flow_file)")
        command = self.spec.cli.commands["run-local"]
        args = option_args(command, run_options or {}, f"`flow {self.TYPE} run-local`")
        args += parameter_args(self.flow_file, params)
        attributes = self.call("run-local", [self.flow_file, *args], allow_failure=True)
        flow_name = attributes["pathspec"].split("/", 1)[0]
        deployed = self.deployed_flow_class(
            self,
            {
                "name": attributes["name"],
                "flow_name": flow_name,
                "metadata": attributes["metadata"],
            },
        )
        return LocalRun(deployed, attributes)
