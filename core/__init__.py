"""flowkernel: workflows as Python classes, on a pluggy microkernel.

The flow-authoring API (``FlowSpec``, ``step``, ``Parameter``, decorators, ``current``) is
imported eagerly and stays light; the client API and the library API load on first use.
"""

from __future__ import annotations

from typing import Any

from flowkernel.config import Config, config_expr
from flowkernel.current import current
from flowkernel.decorators import catch, environment, parallel, resources, retry, step, timeout
from flowkernel.flowspec import FlowSpec
from flowkernel.hookspecs import hookimpl
from flowkernel.parameters import IncludeFile, JSONType, Parameter

_LAZY = {
    "Kernel": "flowkernel.kernel",
    "Flow": "flowkernel.client",
    "Run": "flowkernel.client",
    "Step": "flowkernel.client",
    "Task": "flowkernel.client",
    "DataArtifact": "flowkernel.client",
    "Metaflow": "flowkernel.client",
    "namespace": "flowkernel.client",
    "get_namespace": "flowkernel.client",
    "default_namespace": "flowkernel.client",
    "Runner": "flowkernel.runner",
}

__all__ = [
    "Config",
    "FlowSpec",
    "IncludeFile",
    "JSONType",
    "Parameter",
    "__version__",
    "catch",
    "config_expr",
    "current",
    "environment",
    "hookimpl",
    "parallel",
    "resources",
    "retry",
    "step",
    "timeout",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("flowkernel")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowkernel' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(module), name)
