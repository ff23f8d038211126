"""Every good flow shape parses to the right nodes and edges and passes validation."""

from __future__ import annotations

from pathlib import Path

import pytest

SHAPES = Path(__file__).resolve().parents[3] / "tests" / "flows" / "shapes"

# step: (type, out_funcs, in_funcs)
EXPECTED = {
    "linear": {
        "start": ("start", ["double"], []),
        "double": ("linear", ["end"], ["start"]),
        "end": ("end", [], ["double"]),
    },
    "branch": {
        "start": ("split", ["add_one", "add_two"], []),
        "add_one": ("linear", ["join"], ["start"]),
        "add_two": ("linear", ["join"], ["start"]),
        "join": ("join", ["end"], ["add_one", "add_two"]),
        "end": ("end", [], ["join"]),
    },
    "nested_branches": {
        "start": ("split", ["left", "right"], []),
        "left": ("split", ["left_a", "left_b"], ["start"]),
        "left_a": ("linear", ["left_join"], ["left"]),
        "left_b": ("linear", ["left_join"], ["left"]),
        "left_join": ("join", ["join"], ["left_a", "left_b"]),
        "right": ("linear", ["join"], ["start"]),
        "join": ("join", ["end"], ["left_join", "right"]),
        "end": ("end", [], ["join"]),
    },
    "foreach": {
        "start": ("foreach", ["square"], []),
        "square": ("linear", ["join"], ["start"]),
        "join": ("join", ["end"], ["square"]),
        "end": ("end", [], ["join"]),
    },
    "nested_foreach": {
        "start": ("foreach", ["per_letter"], []),
        "per_letter": ("foreach", ["per_number"], ["start"]),
        "per_number": ("linear", ["join_numbers"], ["per_letter"]),
        "join_numbers": ("join", ["join_letters"], ["per_number"]),
        "join_letters": ("join", ["end"], ["join_numbers"]),
        "end": ("end", [], ["join_letters"]),
    },
    "foreach_in_branch": {
        "start": ("split", ["fan_out", "constant"], []),
        "fan_out": ("foreach", ["work"], ["start"]),
        "work": ("linear", ["gather"], ["fan_out"]),
        "gather": ("join", ["join"], ["work"]),
        "constant": ("linear", ["join"], ["start"]),
        "join": ("join", ["end"], ["constant", "gather"]),
        "end": ("end", [], ["join"]),
    },
    "branch_in_foreach": {
        "start": ("foreach", ["each"], []),
        "each": ("split", ["plus", "times"], ["start"]),
        "plus": ("linear", ["inner_join"], ["each"]),
        "times": ("linear", ["inner_join"], ["each"]),
        "inner_join": ("join", ["outer_join"], ["plus", "times"]),
        "outer_join": ("join", ["end"], ["inner_join"]),
        "end": ("end", [], ["outer_join"]),
    },
    "switch": {
        "start": ("split-switch", ["small", "large"], []),
        "small": ("linear", ["end"], ["start"]),
        "large": ("linear", ["end"], ["start"]),
        "end": ("end", [], ["large", "small"]),
    },
    "switch_in_foreach": {
        "start": ("foreach", ["classify"], []),
        "classify": ("split-switch", ["even", "odd"], ["start"]),
        "even": ("linear", ["join"], ["classify"]),
        "odd": ("linear", ["join"], ["classify"]),
        "join": ("join", ["end"], ["even", "odd"]),
        "end": ("end", [], ["join"]),
    },
    "switch_nested": {
        "start": ("split-switch", ["animal", "plant"], []),
        "animal": ("split-switch", ["dog", "cat"], ["start"]),
        "dog": ("linear", ["report"], ["animal"]),
        "cat": ("linear", ["report"], ["animal"]),
        "plant": ("linear", ["report"], ["start"]),
        "report": ("linear", ["end"], ["cat", "dog", "plant"]),
        "end": ("end", [], ["report"]),
    },
    "recursive_switch": {
        "start": ("start", ["loop"], []),
        "loop": ("split-switch", ["loop", "end"], ["start"]),
        "end": ("end", [], ["loop"]),
    },
    "recursive_switch_inside_foreach": {
        "start": ("foreach", ["prepare"], []),
        "prepare": ("linear", ["countdown"], ["start"]),
        "countdown": ("split-switch", ["countdown", "finish"], ["prepare"]),
        "finish": ("linear", ["join"], ["countdown"]),
        "join": ("join", ["end"], ["finish"]),
        "end": ("end", [], ["join"]),
    },
    "parallel": {
        "start": ("foreach", ["train"], []),
        "train": ("linear", ["join"], ["start"]),
        "join": ("join", ["end"], ["train"]),
        "end": ("end", [], ["join"]),
    },
    "single_step": {"only": ("end", [], [])},
}

MATCHING_JOINS = {
    "branch": {"start": "join"},
    "nested_branches": {"start": "join", "left": "left_join"},
    "foreach": {"start": "join"},
    "nested_foreach": {"start": "join_letters", "per_letter": "join_numbers"},
    "foreach_in_branch": {"start": "join", "fan_out": "gather"},
    "branch_in_foreach": {"start": "outer_join", "each": "inner_join"},
    "switch_in_foreach": {"start": "join"},
    "recursive_switch_inside_foreach": {"start": "join"},
    "parallel": {"start": "join"},
}

INSIDE_FOREACH = {
    "foreach": {"square"},
    "nested_foreach": {"per_letter", "per_number", "join_numbers"},
    "foreach_in_branch": {"work"},
    "branch_in_foreach": {"each", "plus", "times", "inner_join"},
    "switch_in_foreach": {"classify", "even", "odd"},
    "recursive_switch_inside_foreach": {"prepare", "countdown", "finish"},
    "parallel": {"train"},
}


def test_every_shape_has_a_file():
    assert {p.stem for p in SHAPES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("shape", sorted(EXPECTED))
def test_shape_graph(shape, load):
    flow_cls, graph, problems = load(SHAPES / f"{shape}.py")
    assert problems == []
    expected = EXPECTED[shape]
    assert list(graph.nodes) == list(expected)  # definition order
    actual = {n.name: (n.type, list(n.out_funcs), list(n.in_funcs)) for n in graph}
    assert actual == expected
    joins = {n.name: n.matching_join for n in graph if n.matching_join}
    assert joins == MATCHING_JOINS.get(shape, {})
    assert {n.name for n in graph if n.is_inside_foreach} == INSIDE_FOREACH.get(shape, set())
    assert graph.source_file == str(SHAPES / f"{shape}.py")
    assert graph.flow_name == flow_cls.__name__


@pytest.mark.parametrize("shape", sorted(EXPECTED))
def test_sorted_nodes_are_topological(shape, load):
    _, graph, _ = load(SHAPES / f"{shape}.py")
    order = list(graph.sorted_nodes)
    assert sorted(order) == sorted(graph.nodes)
    assert order[0] == graph.start
    assert order[-1] == graph.end
    for node in graph:
        for child in node.out_funcs:
            if child != node.name:
                assert order.index(node.name) < order.index(child)


def test_sorted_nodes_follow_source_order(load):
    _, graph, _ = load(SHAPES / "nested_branches.py")
    assert graph.sorted_nodes == (
        "start",
        "left",
        "left_a",
        "left_b",
        "left_join",
        "right",
        "join",
        "end",
    )


def test_split_parents(load):
    _, graph, _ = load(SHAPES / "branch_in_foreach.py")
    assert graph["start"].split_parents == ()
    assert graph["each"].split_parents == ("start",)
    assert graph["plus"].split_parents == ("start", "each")
    # a join's stack still holds the split it closes
    assert graph["inner_join"].split_parents == ("start", "each")
    assert graph["outer_join"].split_parents == ("start",)
    assert graph["end"].split_parents == ()


def test_split_branches_name_the_branch_taken_at_each_enclosing_split(load):
    _, graph, _ = load(SHAPES / "branch_in_foreach.py")
    branches = {name: graph[name].split_branches for name in graph.sorted_nodes}
    assert branches == {
        "start": (),
        "each": ("each",),  # the foreach's only branch
        "plus": ("each", "plus"),
        "times": ("each", "times"),
        "inner_join": ("each",),  # one fewer than split_parents: the closed split's is gone
        "outer_join": (),
        "end": (),
    }


def test_transition_details(load):
    _, graph, _ = load(SHAPES / "foreach.py")
    assert graph["start"].foreach_param == "numbers"
    _, graph, _ = load(SHAPES / "parallel.py")
    start, train = graph["start"], graph["train"]
    assert start.num_parallel == 4 and start.is_parallel_split
    assert train.parallel_step and train.decorators == ("parallel",)
    assert train.doc == "Each node of the gang works on its own index."
    _, graph, _ = load(SHAPES / "recursive_switch.py")
    loop = graph["loop"]
    assert loop.condition == "status"
    assert loop.switch_cases == (("again", "loop"), ("done", "end"))
    assert loop.is_recursive_switch


def test_line_numbers(load):
    _, graph, _ = load(SHAPES / "parallel.py")
    lines = (SHAPES / "parallel.py").read_text().splitlines()
    train = graph["train"]
    assert lines[train.func_lineno - 1].strip() == "@parallel"
    assert lines[train.def_lineno - 1].strip() == "def train(self):"
    assert lines[train.next_lineno - 1].strip() == "self.next(self.join)"
    assert lines[graph.class_lineno - 1].startswith("class ParallelFlow(FlowSpec):")


def test_single_step_is_start_and_end(load):
    _, graph, _ = load(SHAPES / "single_step.py")
    assert graph.start == graph.end == "only"
    assert graph.sorted_nodes == ("only",)
