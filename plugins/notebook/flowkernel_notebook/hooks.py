"""Entry point of the notebook plugin.

NBRunner is library API (``from flowkernel import NBRunner``), not a hook. The one hook makes
flow classes display as their graph in a Jupyter kernel that builds a flowkernel Kernel, even
before NBRunner is imported. It stays light: IPython is never imported here.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from flowkernel import hookimpl

if TYPE_CHECKING:
    from flowkernel.kernel import Kernel


@hookimpl
def flowkernel_configure(kernel: Kernel) -> None:
    """Inside a running IPython, display FlowSpec subclasses as their graph."""
    if "IPython" in sys.modules:
        from flowkernel_notebook.display import register_formatter

        register_formatter()
