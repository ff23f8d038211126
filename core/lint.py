"""Flow validation (placeholder: being written)."""

from __future__ import annotations

from flowkernel.graph import FlowGraph, GraphProblem


def check_flow(flow_cls: type, graph: FlowGraph) -> list[GraphProblem]:
    return list(graph.problems)
