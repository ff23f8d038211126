"""Entry-point module: registers the ``argo-workflows`` deployer (light imports only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowkernel import hookimpl

if TYPE_CHECKING:
    from flowkernel.specs import DeployerSpec


def _python_side(spec: DeployerSpec, flow_file: str | None, deployer: Any, **kwargs: Any) -> Any:
    from flowkernel_deploy_argo.deployer import ArgoDeployer

    return ArgoDeployer(spec, flow_file, deployer, **kwargs)


@hookimpl
def flowkernel_deployers() -> list[DeployerSpec]:
    from flowkernel.specs import DeployerSpec
    from flowkernel_deploy_argo.commands import argo_workflows

    return [
        DeployerSpec(
            name="argo-workflows",
            cli=argo_workflows,
            factory=_python_side,
            description="Argo Workflows on Kubernetes: WorkflowTemplate, CronWorkflow, Workflow.",
        )
    ]
