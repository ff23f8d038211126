"""Flows defined where the class source cannot be found (Jupyter cells, exec'd code)."""

from __future__ import annotations

import inspect
import linecache
import sys
import textwrap

import pytest

from flowkernel.graph.lint import check_flow

CELL = textwrap.dedent(
    """
    from flowkernel import FlowSpec, Parameter, step


    class CellFlow(FlowSpec):
        tags = Parameter("tags", default="x")

        @step
        def start(self):
            self.items = [1, 2]
            self.next(self.each, foreach="items")

        @step
        def each(self):
            self.next(self.join)

        @step
        def join(self, inputs):
            self.next(self.end)

        @step
        def end(self):
            pass

        @step
        def dangling(self):
            pass
    """
)


def exec_cell(source: str, filename: str, register: bool = True) -> type:
    """Run ``source`` the way IPython runs a cell: compiled under a pseudo-file name."""
    if register:
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {"__name__": "fk_not_a_module"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace["CellFlow"]


def test_graph_of_a_flow_defined_in_a_cell():
    from flowkernel_graph_ast.builder import build_graph

    filename = "<ipython-input-7-0123abcd>"
    flow_cls = exec_cell(CELL, filename)
    try:
        if sys.version_info < (3, 13):  # 3.13 can find a class by __firstlineno__
            with pytest.raises((OSError, TypeError)):
                inspect.getsource(flow_cls)
        graph = build_graph(flow_cls)
        assert graph.source_file == filename
        assert graph.class_lineno == 5
        assert graph["start"].type == "foreach"
        assert graph["start"].next_lineno == 11
        assert graph["join"].matching_join is None and graph["start"].matching_join == "join"
        problems = check_flow(flow_cls, graph)
        assert [(p.rule, p.line, p.file) for p in problems] == [
            ("missing-next", 26, filename),
            ("bad-parameter", 6, filename),
        ]
    finally:
        linecache.cache.pop(filename, None)


def test_a_flow_without_source_is_reported_not_raised():
    from flowkernel_graph_ast.builder import build_graph

    flow_cls = exec_cell(CELL, "<no source anywhere>", register=False)
    graph = build_graph(flow_cls)
    problems = check_flow(flow_cls, graph)
    rules = [p.rule for p in problems]
    assert rules.count("source-unavailable") == 5
    assert "missing-next" not in rules
