"""Shared helpers of the graph_ast tests: load a flow file and build and check its graph."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def graph_kernel(kernel_factory):
    """A fresh kernel with only the graph_ast plugin."""
    from flowkernel_graph_ast import hooks

    return kernel_factory(plugins=[("graph_ast", hooks)])


@pytest.fixture
def load(graph_kernel):
    """``load(path) -> (flow_cls, graph, problems)`` for a flow file."""
    from flowkernel.flow.loader import load_flow

    def load_file(path: Path):
        flow_cls = load_flow(str(path))
        return flow_cls, graph_kernel.build_graph(flow_cls), graph_kernel.check_flow(flow_cls)

    return load_file
