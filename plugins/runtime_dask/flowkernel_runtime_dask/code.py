"""The code a run's tasks import on the workers: the flow file where it is, or its code package.

With a local datastore root every worker shares the controller's filesystem, so tasks import
the flow file at its path. With a remote root (``s3://...``) the workers need nothing but the
datastore: the controller stores the flow's code package (:mod:`flowkernel.engine.packages`,
what ``flow package`` stores) once per run, and every task runs ``flow step --package KEY``,
which fetches and extracts it on the worker (once per worker machine and package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkernel.storage.backend import is_local_root

if TYPE_CHECKING:
    from flowkernel.engine.runs import RunContext


def code_package(ctx: RunContext) -> str | None:
    """Store the run's code package if its root is remote; its key (None: tasks use the file)."""
    if is_local_root(ctx.store.root) or not ctx.flow_file:
        return None
    from flowkernel.engine.packages import build_package, store_package
    from flowkernel.flow.config import flow_configs

    defaults = [c.default for c in flow_configs(ctx.flow_cls).values() if c.default]
    package = build_package(ctx.flow_file, ctx.flow_cls.__name__, extra_files=defaults)
    return store_package(ctx.store.root, package)
