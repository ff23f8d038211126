"""flowkernel plugin: run flows defined in Jupyter notebooks (NBRunner, NBDeployer).

Imported in a running kernel, it also makes flow classes display as their graph.
``%load_ext flowkernel_notebook`` does only that.
"""

from __future__ import annotations

from typing import Any

from flowkernel_notebook.deployer import NBDeployer
from flowkernel_notebook.display import register_formatter
from flowkernel_notebook.runner import NBRunner
from flowkernel_notebook.source import NotebookSourceError

__all__ = ["NBDeployer", "NBRunner", "NotebookSourceError", "load_ipython_extension"]


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext flowkernel_notebook``: display flow classes as their graph."""
    register_formatter(shell)


register_formatter()
