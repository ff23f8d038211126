"""Navigating a flow's graph the way Metaflow code does: ``for step in flow``, ``flow._graph``."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowkernel.flow.loader import load_flow

FLOWS = Path(__file__).parent / "flows"


def _flow(path: str):
    return load_flow(str(FLOWS / path))(use_cli=False)


def test_iterating_a_flow_gives_its_steps_in_graph_order():
    flow = _flow("mfapi/surface_flow.py")
    names = [s.name for s in flow]
    assert names == ["start", "each", "gather", "fork", "left", "right", "meet", "end"]
    assert all(callable(s) for s in flow)  # the bound step methods, as in Metaflow


def test_nodes_carry_metaflow_types_and_links():
    flow = _flow("mfapi/surface_flow.py")
    graph = flow._graph
    assert graph.name == "SurfaceFlow"
    start, each, gather = graph["start"], graph["each"], graph["gather"]
    assert (start.type, start.foreach_param, start.matching_join) == ("foreach", "items", "gather")
    assert list(start.out_funcs) == ["each"] and list(start.in_funcs) == []
    assert each.type == "linear" and each.is_inside_foreach
    assert list(each.split_parents) == ["start"]
    assert gather.type == "join" and list(gather.in_funcs) == ["each"]
    fork, meet = graph["fork"], graph["meet"]
    assert (fork.type, fork.matching_join) == ("split", "meet")
    assert list(fork.out_funcs) == ["left", "right"]
    assert sorted(meet.in_funcs) == ["left", "right"] and meet.type == "join"
    assert graph["end"].type == "end" and not graph["end"].out_funcs
    assert graph["meet"].tail_next_lineno is not None and not graph["meet"].invalid_tail_next
    assert set(graph.nodes) == {s.name for s in flow}


@pytest.mark.parametrize(
    ("shape", "step", "kind"),
    [
        ("switch.py", "start", "split-switch"),
        ("recursive_switch.py", "loop", "split-switch"),
        ("linear.py", "start", "start"),
        ("parallel.py", "start", "foreach"),
    ],
)
def test_switch_parallel_and_start_types(shape, step, kind):
    flow = _flow(f"shapes/{shape}")
    assert flow._graph[step].type == kind


def test_a_parallel_split_is_marked_as_one():
    flow = _flow("shapes/parallel.py")
    assert flow._graph["start"].parallel_foreach
    assert flow._graph["train"].parallel_step


def test_the_class_shares_the_graph_its_instances_built():
    cls = load_flow(str(FLOWS / "mfapi/surface_flow.py"))
    graph = cls(use_cli=False)._graph
    assert cls._graph is graph


def test_a_running_step_can_iterate_its_own_flow(tmp_path):
    from flowkernel.kernel import Kernel

    run = Kernel.discover().run(str(FLOWS / "mfapi/surface_flow.py"), datastore_root=str(tmp_path))
    names = run["start"].task.data.step_names
    assert names == ["start", "each", "gather", "fork", "left", "right", "meet", "end"]
