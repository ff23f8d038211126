"""The Python side of the ``argo-workflows`` deployer: ``Deployer(...).argo_workflows(...)``.

Everything :class:`~flowkernel.deployer.DeployerImpl` offers, plus :meth:`ArgoDeployer.run_local`:
the workflow ``create`` would deploy, run on this machine (``flow argo-workflows run-local``).
"""

from __future__ import annotations

from typing import Any

from flowkernel.deployer import DeployerImpl, TriggeredRun


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
