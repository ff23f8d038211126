"""Entry point of the graph_ast plugin: builds a flow's graph from its steps' source."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowkernel import hookimpl

if TYPE_CHECKING:
    from flowkernel.graph.model import FlowGraph


@hookimpl
def flowkernel_build_graph(flow_cls: type) -> FlowGraph | None:
    """Parse each step method of ``flow_cls`` with :mod:`ast`; decline anything not a class."""
    if not isinstance(flow_cls, type):
        return None
    from flowkernel_graph_ast.builder import build_graph

    return build_graph(flow_cls)
