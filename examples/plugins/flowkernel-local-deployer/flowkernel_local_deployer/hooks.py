"""Entry-point module: registers the ``local-deployer`` deployer (light imports only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkernel import hookimpl

if TYPE_CHECKING:
    from flowkernel.specs import DeployerSpec


@hookimpl
def flowkernel_deployers() -> list[DeployerSpec]:
    from flowkernel.specs import DeployerSpec
    from flowkernel_local_deployer.commands import local_deployer

    return [
        DeployerSpec(
            name="local-deployer",
            cli=local_deployer,
            description="Deployments kept in the datastore, triggered as detached local runs.",
        )
    ]
