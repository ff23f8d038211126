"""Graph rendering (placeholder: being written)."""

from __future__ import annotations

import json

from flowkernel.graph import FlowGraph


def render_graph(graph: FlowGraph, fmt: str) -> str:
    return json.dumps(graph.to_dict(), indent=2)
