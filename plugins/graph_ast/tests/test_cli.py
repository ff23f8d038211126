"""``flow check`` and ``flow show`` on good and bad flows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SHAPES = HERE.parents[2] / "tests" / "flows" / "shapes"
SHAPE_FILES = sorted(p.name for p in SHAPES.glob("*.py"))


@pytest.fixture
def flow(cli_runner, graph_kernel):
    def run(*args: str):
        return cli_runner(list(args), graph_kernel)

    return run


@pytest.mark.parametrize("name", SHAPE_FILES)
def test_check_good_flow_exits_0(flow, name):
    result = flow("check", str(SHAPES / name))
    assert result.exit_code == 0, result.output
    assert "looks good" in result.output


def test_check_reports_every_problem_and_exits_1(flow):
    path = HERE / "bad_flows" / "bad_several_problems.py"
    result = flow("check", str(path))
    assert result.exit_code == 1
    output = result.output
    assert "4 problems" in output
    for line, rule in (
        (14, "reserved-step-name"),
        (10, "invalid-step-name"),
        (15, "unknown-target"),
        (18, "missing-next"),
    ):
        assert f"{path}:{line}:" in output
        assert f"[{rule}]" in output
    assert "hint: did you mean self.finish?" not in output  # no such step: no guess
    assert output.count("hint:") == 4


def test_show_refuses_an_invalid_flow(flow):
    result = flow("show", str(HERE / "bad_flows" / "bad_cycle.py"))
    assert result.exit_code == 1
    assert "[cycle]" in result.output


@pytest.mark.parametrize("name", SHAPE_FILES)
@pytest.mark.parametrize("fmt", ["text", "mermaid", "dot"])
def test_show_mentions_every_step(flow, graph_kernel, name, fmt):
    from flowkernel.flow.loader import load_flow

    graph = graph_kernel.build_graph(load_flow(str(SHAPES / name)))
    result = flow("show", str(SHAPES / name), "--format", fmt)
    assert result.exit_code == 0, result.output
    for step in graph.nodes:
        token = {"text": f"Step {step}", "mermaid": f"step_{step}", "dot": f'"{step}"'}[fmt]
        assert token in result.output
    if fmt == "mermaid":
        assert result.output.startswith("flowchart TD")
    if fmt == "dot":
        assert result.output.startswith("digraph ") and result.output.rstrip().endswith("}")


@pytest.mark.parametrize("name", SHAPE_FILES)
def test_show_json_round_trips(flow, graph_kernel, name):
    from flowkernel.flow.loader import load_flow

    graph = graph_kernel.build_graph(load_flow(str(SHAPES / name)))
    result = flow("show", str(SHAPES / name), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == graph.to_dict()


def test_show_text_layout(flow):
    result = flow("show", str(SHAPES / "parallel.py"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:8] == [
        "A gang of four @parallel tasks, joined.",
        "",
        "Step start",
        "    ?",
        "    => train (num_parallel=4)",
        "",
        "@parallel",
        "Step train",
    ]
