"""Parsing details: inheritance, transition keywords, switch keys, decorators, the hook."""

from __future__ import annotations

import textwrap

import pytest

HEADER = "from flowkernel import FlowSpec, Parameter, catch, parallel, retry, step\n\n\n"


@pytest.fixture
def flow_file(tmp_path, load):
    """``flow_file(body, name=...)`` writes a flow file (header added) and loads it."""

    def write(body: str, name: str = "fk_inline_flow"):
        path = tmp_path / f"{name}.py"
        path.write_text(HEADER + textwrap.dedent(body))
        return (path, *load(path))

    return write


def test_steps_are_inherited(tmp_path, flow_file):
    (tmp_path / "fk_base_flow.py").write_text(
        HEADER
        + textwrap.dedent(
            """
            class BaseFlow(FlowSpec):
                @step
                def start(self):
                    self.next(self.end)

                @step
                def end(self):
                    pass
            """
        )
    )
    path, _, graph, problems = flow_file(
        """
        from fk_base_flow import BaseFlow


        class ChildFlow(BaseFlow):
            @step
            def start(self):
                self.next(self.middle)

            @step
            def middle(self):
                self.next(self.end)
        """,
        name="fk_child_flow",
    )
    assert problems == []
    assert list(graph.nodes) == ["start", "end", "middle"]
    assert graph["start"].out_funcs == ("middle",)
    assert graph["start"].source_file == str(path)
    assert graph["end"].source_file == str(tmp_path / "fk_base_flow.py")
    assert graph.source_file == str(path)
    assert graph.sorted_nodes == ("start", "middle", "end")


def test_keyword_forms(flow_file):
    _, _, graph, problems = flow_file(
        """
        N = 3
        ITEMS = "xs"


        class KeywordFlow(FlowSpec):
            @step
            def start(self):
                self.xs = [1, 2]
                self.next(self.each, foreach=ITEMS)

            @step
            def each(self):
                self.next(self.join)

            @step
            def join(self, inputs):
                self.next(self.launch)

            @step
            def launch(self):
                self.next(self.gang, num_parallel=N)

            @parallel
            @step
            def gang(self):
                self.next(self.gang_join)

            @step
            def gang_join(self, inputs):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    assert problems == []
    assert graph["start"].type == "foreach"
    assert graph["start"].foreach_param is None  # not a literal: still a foreach
    assert graph["launch"].type == "foreach"
    assert graph["launch"].num_parallel == "N"


def test_switch_keys(flow_file):
    _, _, graph, problems = flow_file(
        """
        class KeysFlow(FlowSpec):
            @step
            def start(self):
                self.mode = 1
                self.next(
                    {1: self.a, -2: self.b, 2.5: self.a, "s": self.b, self.cfg.fast: self.a},
                    condition="mode",
                )

            @step
            def a(self):
                self.next(self.end)

            @step
            def b(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    assert problems == []
    start = graph["start"]
    assert start.switch_cases == (
        (1, "a"),
        (-2, "b"),
        (2.5, "a"),
        ("s", "b"),
        ("config:cfg.fast", "a"),
    )
    assert start.out_funcs == ("a", "b")
    assert start.next_lineno == start.def_lineno + 2  # the first line of a multi-line call


def test_decorators_docs_and_annotations(flow_file):
    _, _, graph, problems = flow_file(
        '''
        class DecoratedFlow(FlowSpec):
            """Flow doc."""

            @retry(times=1)
            @catch
            @step(start=True)
            def begin(self):
                """First line.

                More.
                """
                self.next(self.finish)

            @step(end=True)
            def finish(self):
                pass
        '''
    )
    assert problems == []
    begin = graph["begin"]
    assert graph.start == "begin" and graph.end == "finish"
    assert begin.type == "start" and begin.is_start_annotated
    assert graph["finish"].is_end_annotated
    assert begin.decorators == ("retry", "catch")
    assert begin.doc == "First line.\n\nMore."
    assert graph.doc == "Flow doc."
    assert begin.def_lineno == begin.func_lineno + 3


def test_parameter_problems_point_at_the_parameter(flow_file):
    path, _, _, problems = flow_file(
        """
        class ParamFlow(FlowSpec):
            alpha = Parameter("alpha", default=1)
            with_ = Parameter("with", default=1)

            @step
            def start(self):
                self.next(self.end)

            @step
            def end(self):
                pass
        """
    )
    assert [(p.rule, p.line) for p in problems] == [("bad-parameter", 7)]
    assert path.read_text().splitlines()[6].strip().startswith("with_ = Parameter(")


def test_hook_declines_what_is_not_a_class():
    from flowkernel_graph_ast.hooks import flowkernel_build_graph

    assert flowkernel_build_graph(flow_cls="not a class") is None


def test_plugin_is_found_through_its_entry_point(kernel_factory, tmp_path):
    from flowkernel.flow.loader import load_flow

    path = tmp_path / "fk_ep_flow.py"
    path.write_text(
        HEADER
        + textwrap.dedent(
            """
            class EpFlow(FlowSpec):
                @step
                def start(self):
                    pass
            """
        )
    )
    kernel = kernel_factory(load_entrypoints=True, only=["graph_ast"])
    graph = kernel.validated_graph(load_flow(str(path)))
    assert graph.start == graph.end == "start"
