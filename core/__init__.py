"""flowkernel: workflows as Python classes, on a pluggy microkernel.

Every public name is loaded on first use (PEP 562), so ``flow --help`` and plugin entry points
do not pay for the flow-authoring API, the client or the runner unless they use them.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowkernel.client import (
        DataArtifact,
        Flow,
        Metaflow,
        Run,
        Step,
        Task,
        default_metadata,
        default_namespace,
        get_metadata,
        get_namespace,
        metadata,
        namespace,
    )
    from flowkernel.deployer import DeployedFlow, Deployer
    from flowkernel.flow.config import Config, config_expr
    from flowkernel.flow.current import current
    from flowkernel.flow.decorators import (
        catch,
        environment,
        parallel,
        resources,
        retry,
        step,
        timeout,
    )
    from flowkernel.flow.flowspec import FlowSpec
    from flowkernel.flow.parameters import IncludeFile, JSONType, Parameter
    from flowkernel.flow.project import project
    from flowkernel.flow.schedule import schedule
    from flowkernel.hookspecs import hookimpl
    from flowkernel.kernel import Kernel
    from flowkernel.runner import Runner

#: Metaflow's exception names (flowkernel.exception.METAFLOW_NAMES), importable from here too.
_EXCEPTIONS = (
    "MetaflowException",
    "MetaflowInternalError",
    "MetaflowNotFound",
    "MetaflowInvalidPathspec",
    "MetaflowNamespaceMismatch",
    "MetaflowTaggingError",
    "MetaflowExceptionWrapper",
    "InvalidNextException",
    "UnhandledInMergeArtifactsException",
    "MissingInMergeArtifactsException",
    "BadStepDecoratorException",
    "UnknownStepDecoratorException",
    "InvalidDecoratorAttribute",
    "ParameterFieldFailed",
    "ParameterFieldTypeMismatch",
    "TimeoutException",
    "FailureHandledByCatch",
)

_LAZY = {
    "FlowSpec": "flowkernel.flow.flowspec",
    "current": "flowkernel.flow.current",
    "Parameter": "flowkernel.flow.parameters",
    "JSONType": "flowkernel.flow.parameters",
    "IncludeFile": "flowkernel.flow.parameters",
    "Config": "flowkernel.flow.config",
    "config_expr": "flowkernel.flow.config",
    "step": "flowkernel.flow.decorators",
    "retry": "flowkernel.flow.decorators",
    "catch": "flowkernel.flow.decorators",
    "timeout": "flowkernel.flow.decorators",
    "resources": "flowkernel.flow.decorators",
    "environment": "flowkernel.flow.decorators",
    "parallel": "flowkernel.flow.decorators",
    "project": "flowkernel.flow.project",
    "schedule": "flowkernel.flow.schedule",
    "hookimpl": "flowkernel.hookspecs",
    "Kernel": "flowkernel.kernel",
    "Flow": "flowkernel.client",
    "Run": "flowkernel.client",
    "Step": "flowkernel.client",
    "Task": "flowkernel.client",
    "DataArtifact": "flowkernel.client",
    "Metaflow": "flowkernel.client",
    "namespace": "flowkernel.client",
    "metadata": "flowkernel.client",
    "get_metadata": "flowkernel.client",
    "get_namespace": "flowkernel.client",
    "default_namespace": "flowkernel.client",
    "default_metadata": "flowkernel.client",
    "Runner": "flowkernel.runner",
    "Deployer": "flowkernel.deployer",
    "DeployedFlow": "flowkernel.deployer",
    **{name: "flowkernel.exception" for name in _EXCEPTIONS},
}

__all__ = [
    *_EXCEPTIONS,
    "Config",
    "DataArtifact",
    "DeployedFlow",
    "Deployer",
    "Flow",
    "FlowSpec",
    "IncludeFile",
    "JSONType",
    "Kernel",
    "Metaflow",
    "Parameter",
    "Run",
    "Runner",
    "Step",
    "Task",
    "__version__",
    "catch",
    "config_expr",
    "current",
    "default_metadata",
    "default_namespace",
    "environment",
    "get_metadata",
    "get_namespace",
    "hookimpl",
    "metadata",
    "namespace",
    "parallel",
    "project",
    "resources",
    "retry",
    "schedule",
    "step",
    "timeout",
]


#: Names provided by plugins when they are installed: name -> (import package, distribution).
_FROM_PLUGINS = {
    "NBRunner": ("flowkernel_notebook", "flowkernel-notebook"),
    "NBDeployer": ("flowkernel_notebook", "flowkernel-notebook"),
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("flowkernel")
    if name in _FROM_PLUGINS:
        package, dist = _FROM_PLUGINS[name]
        try:
            module = importlib.import_module(package)
        except ModuleNotFoundError as exc:
            if exc.name != package:
                raise
            raise ImportError(f"{name} comes with a plugin: pip install {dist}") from None
        return getattr(module, name)
    module = _LAZY.get(name)
    if module is None:
        from flowkernel.not_provided import not_provided_error

        error = not_provided_error(name)
        # a Metaflow name we do not have: `from flowkernel import X` raises an ImportError that
        # says so (it would turn an AttributeError into a bare "cannot import name"), while
        # hasattr() and getattr(flowkernel, X, default) see an attribute that is not there
        if error is not None and _importing_from():
            raise error
        message = str(error) if error else f"module 'flowkernel' has no attribute '{name}'"
        raise AttributeError(message, name=name, obj=sys.modules[__name__])
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def _importing_from() -> bool:
    """Whether the caller of this module's ``__getattr__`` runs ``from flowkernel import``."""
    from opcode import opmap

    caller = sys._getframe(2)
    return caller.f_code.co_code[caller.f_lasti] == opmap["IMPORT_FROM"]


def __dir__() -> list[str]:
    return sorted(__all__)
