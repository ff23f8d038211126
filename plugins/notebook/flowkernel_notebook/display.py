"""Rich display of a flow's graph in Jupyter: Markdown holding a Mermaid diagram.

JupyterLab (4.1+), Notebook 7 and VS Code render a ```` ```mermaid ```` block in Markdown output;
other front ends show the Mermaid text, which is still readable. An NBRunner has
``_repr_markdown_``; a flow *class* cannot (IPython ignores display methods looked up on a
class), so :func:`register_formatter` teaches the running IPython to display FlowSpec
subclasses the same way. It runs when this package is imported in a kernel, and as
``%load_ext flowkernel_notebook``.
"""

from __future__ import annotations

import sys
from typing import Any


def graph_markdown(flow_cls: type, title: str | None = None) -> str:
    """Markdown for ``flow_cls``: a title, its Mermaid graph and any validation problems."""
    from flowkernel.graph.render import render_graph
    from flowkernel.kernel import Kernel

    kernel = Kernel.discover()
    graph = kernel.build_graph(flow_cls)
    problems = kernel.check_flow(flow_cls)
    parts = [f"**{title or flow_cls.__name__}**", "", "```mermaid", render_graph(graph, "mermaid")]
    parts.append("```")
    if problems:
        parts += ["", "Problems found:", ""]
        parts += [f"- {p.step or 'flow'}: {p.message}" for p in problems]
    return "\n".join(parts)


def _flow_class_markdown(obj: Any) -> str | None:
    from flowkernel.flow.flowspec import FlowSpec

    if isinstance(obj, type) and issubclass(obj, FlowSpec) and obj is not FlowSpec:
        try:
            return graph_markdown(obj)
        except Exception:  # a display must never break the cell; the plain repr still shows
            return None
    return None


def register_formatter(shell: Any = None) -> bool:
    """Display FlowSpec subclasses as their graph in ``shell`` (default: the running IPython).

    Returns False outside IPython. Formatters are looked up by the type of the displayed object,
    which for a class is its metaclass; every other class still gets its usual display.
    """
    if shell is None:
        ipython = sys.modules.get("IPython")  # only where IPython runs: never import it here
        shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    from flowkernel.flow.flowspec import FlowSpec

    formatter = shell.display_formatter.formatters["text/markdown"]
    formatter.for_type(type(FlowSpec), _flow_class_markdown)
    return True
