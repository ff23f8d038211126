"""Where a task may run on the cluster: ``@resources`` as Dask worker resources, and the
workers a ``@parallel`` gang is pinned to."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import attrs

from flowkernel.errors import FlowkernelError
from flowkernel.flow.decorators import step_decorators

if TYPE_CHECKING:
    from flowkernel.engine.runs import RunContext


class UnplaceableStep(FlowkernelError):
    """A step asks for more than any worker of the cluster offers (exit code 1)."""

    headline = "The Dask cluster cannot run this flow"


#: @resources attributes that become Dask resources when the cluster's workers declare them.
MAPPED = ("cpu", "gpu", "memory")


@attrs.frozen
class Placement:
    """Per-step Dask resources and per-host worker threads, computed once when a run starts."""

    step_resources: dict[str, dict[str, float]]
    threads_by_host: dict[str, list[tuple[str, int]]]  #: host -> [(worker address, nthreads)]

    @classmethod
    def of(cls, client: Any, ctx: RunContext) -> Placement:
        """Read the cluster's workers; map every step's ``@resources`` onto what they declare.

        :raises UnplaceableStep: a step asks for more of a resource than any worker declares (Dask
            would wait for such a worker forever).
        """
        workers = client.scheduler_info(n_workers=-1)["workers"]
        declared: dict[str, float] = {}
        hosts: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for address, info in workers.items():
            for name, amount in (info.get("resources") or {}).items():
                declared[name] = max(declared.get(name, 0.0), float(amount))
            hosts[urlparse(address).hostname or address].append((address, info["nthreads"]))
        steps = {}
        for node in ctx.graph:
            decos = step_decorators(getattr(ctx.flow_cls, node.name))
            if "resources" in decos:
                steps[node.name] = _map(node.name, decos["resources"].attributes, declared)
        return cls(steps, dict(hosts))

    def resources(self, step: str) -> dict[str, float]:
        return self.step_resources.get(step, {})

    def gang_refusal(self, step: str, nodes: int) -> str | None:
        """Why a gang of ``nodes`` cannot run here (None: it can). Every node of a gang must
        run at once, on one host (``current.parallel.main_ip`` is that host's loopback)."""
        if self.gang_workers(nodes):
            return None
        best = max((sum(n for _, n in ws) for ws in self.threads_by_host.values()), default=0)
        return (
            f"Step {step} is a @parallel gang of {nodes} nodes, but no host of the Dask "
            f"cluster has {nodes} worker threads (the most on one host is {best}); add workers "
            "or run the flow with --runtime local"
        )

    def gang_workers(self, nodes: int) -> list[str] | None:
        """The workers of the first host with at least ``nodes`` threads."""
        for host in sorted(self.threads_by_host):
            workers = self.threads_by_host[host]
            if sum(n for _, n in workers) >= nodes:
                return [address for address, _ in workers]
        return None


def _map(step: str, attributes: dict[str, Any], declared: dict[str, float]) -> dict[str, float]:
    by_lower = {name.lower(): name for name in declared}
    mapped = {}
    for attr in MAPPED:
        value = attributes.get(attr)
        name = by_lower.get(attr)
        if value is None or name is None:
            continue  # the cluster does not track this resource: no constraint
        amount = float(value)
        if amount > declared[name]:
            raise UnplaceableStep(
                f"step {step} has @resources({attr}={value}), but no worker of the Dask "
                f"cluster declares more than {name}={declared[name]:g}"
            )
        mapped[name] = amount
    return mapped
