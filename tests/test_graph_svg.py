"""``render_graph(graph, "svg")``: one SVG renderer for the notebook's display and the run
report, which draws the graph a run stored (``FlowGraph.from_dict``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from flowkernel.flow.loader import load_flow
from flowkernel.graph.model import FlowGraph
from flowkernel.graph.render import render_graph
from flowkernel.graph.svg import StepLook, graph_svg
from flowkernel.kernel import Kernel

SHAPES = Path(__file__).parent / "flows" / "shapes"
NS = "{http://www.w3.org/2000/svg}"


def _graph(shape: str) -> FlowGraph:
    return Kernel.discover().build_graph(load_flow(str(SHAPES / f"{shape}.py")))


@pytest.mark.parametrize("shape", sorted(p.stem for p in SHAPES.glob("*.py")))
def test_every_shape_draws_a_box_per_step_and_an_edge_per_transition(shape):
    graph = _graph(shape)
    root = ET.fromstring(render_graph(graph, "svg"))
    nodes = [g for g in root.iter(f"{NS}g") if g.get("class") == "node"]
    assert sorted(g.get("data-step") for g in nodes) == sorted(graph.nodes)
    edges = [e for e in root.iter() if e.get("class") == "edge"]
    assert len(edges) == sum(len(n.out_funcs) for n in graph.nodes.values())


@pytest.mark.parametrize("shape", ["recursive_switch_inside_foreach", "parallel", "switch"])
def test_a_stored_graph_draws_as_the_flow_does(shape):
    graph = _graph(shape)
    stored = FlowGraph.from_dict(graph.to_dict())
    assert stored.to_dict() == graph.to_dict()
    assert render_graph(stored, "svg") == render_graph(graph, "svg")


def test_each_step_can_have_its_own_look():
    def look(node):
        return StepLook(fill="#d13b3b", note=f"{node.name} note", data={"status": "failed"})

    svg = graph_svg(_graph("branch"), look, element_id="graph")
    root = ET.fromstring(svg)
    assert root.get("id") == "graph"
    start = next(g for g in root.iter(f"{NS}g") if g.get("data-step") == "start")
    assert start.get("data-status") == "failed"
    assert start.find(f"{NS}rect").get("fill") == "#d13b3b"
    assert [t.text for t in start.iter(f"{NS}text")] == ["start", "start note"]


def test_an_unknown_format_names_the_formats():
    with pytest.raises(ValueError, match=r"unknown graph format 'png'; choose one of .*svg"):
        render_graph(_graph("linear"), "png")


def test_flow_show_writes_the_svg(cli_runner):
    result = cli_runner(["show", str(SHAPES / "branch.py"), "--format", "svg"])
    assert result.exit_code == 0, result.output
    root = ET.fromstring(result.output)
    assert root.tag == f"{NS}svg" and root.find(f"{NS}title").text == "BranchFlow"
