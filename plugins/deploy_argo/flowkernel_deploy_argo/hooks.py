"""Entry-point module: registers the ``argo-workflows`` deployer (light imports only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkernel import hookimpl

if TYPE_CHECKING:
    from flowkernel.specs import DeployerSpec


@hookimpl
def flowkernel_deployers() -> list[DeployerSpec]:
    from flowkernel.specs import DeployerSpec
    from flowkernel_deploy_argo.commands import argo_workflows

    return [
        DeployerSpec(
            name="argo-workflows",
            cli=argo_workflows,
            description="Argo Workflows on Kubernetes: WorkflowTemplate, CronWorkflow, Workflow.",
        )
    ]
