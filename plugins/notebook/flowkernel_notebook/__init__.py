"""flowkernel plugin: run flows defined in Jupyter notebooks (NBRunner, NBDeployer).

Imported in a running kernel, it also makes flow classes display as their graph.
``%load_ext flowkernel_notebook`` does only that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flowkernel_notebook.display import register_formatter

if TYPE_CHECKING:
    from flowkernel_notebook.deployer import NBDeployer
    from flowkernel_notebook.runner import NBRunner
    from flowkernel_notebook.source import NotebookSourceError

__all__ = ["NBDeployer", "NBRunner", "NotebookSourceError", "load_ipython_extension"]

#: Imported when first used: every ``flow`` start imports this package (its entry point is
#: ``flowkernel_notebook.hooks``), and the runner pulls in asyncio, psutil and the Runner.
_LAZY = {
    "NBDeployer": "flowkernel_notebook.deployer",
    "NBRunner": "flowkernel_notebook.runner",
    "NotebookSourceError": "flowkernel_notebook.source",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext flowkernel_notebook``: display flow classes as their graph."""
    register_formatter(shell)


register_formatter()
