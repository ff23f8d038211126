"""Rich display of a flow's graph in Jupyter: Markdown holding a Mermaid diagram, and an SVG.

JupyterLab (4.1+) and Notebook 7 render a ```` ```mermaid ```` block in Markdown output and
prefer Markdown to SVG; VS Code renders no Mermaid but shows the SVG. An NBRunner has
``_repr_markdown_`` and ``_repr_svg_``; a flow *class* cannot (IPython ignores display methods
looked up on a class), so :func:`register_formatter` teaches the running IPython to display
FlowSpec subclasses the same way. It runs when this package is imported in a kernel, and as
``%load_ext flowkernel_notebook``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
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


def graph_svg_of(flow_cls: type) -> str:
    """The graph of ``flow_cls`` as SVG (for front ends that do not render Mermaid)."""
    from flowkernel.graph.render import render_graph
    from flowkernel.kernel import Kernel

    return render_graph(Kernel.discover().build_graph(flow_cls), "svg")


def _flow_class(render: Callable[[type], str]) -> Callable[[Any], str | None]:
    def show(obj: Any) -> str | None:
        from flowkernel.flow.flowspec import FlowSpec

        if isinstance(obj, type) and issubclass(obj, FlowSpec) and obj is not FlowSpec:
            try:
                return render(obj)
            except Exception:  # a display must never break the cell; the plain repr still shows
                return None
        return None

    return show


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

    formatters = shell.display_formatter.formatters
    formatters["text/markdown"].for_type(type(FlowSpec), _flow_class(graph_markdown))
    formatters["image/svg+xml"].for_type(type(FlowSpec), _flow_class(graph_svg_of))
    return True
