"""Errors carry their culprit: a bad transition names its step and line; every error class of
the kernel is in flowkernel.errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flowkernel import FlowSpec, step
from flowkernel.engine.executor import _check_transition
from flowkernel.errors import InternalError, InvalidNextError
from flowkernel.kernel import Kernel

CORE = Path(__file__).resolve().parents[1] / "core"
HELLO = Path(__file__).resolve().parents[1] / "examples" / "hello.py"


class _Flow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


def test_a_bad_self_next_call_names_the_step_and_the_line():
    flow = object.__new__(_Flow)
    flow.__dict__["_current_step"] = "start"
    with pytest.raises(InvalidNextError) as info:
        flow.next(42)  # the line the error must name
    error = info.value
    line = test_a_bad_self_next_call_names_the_step_and_the_line.__code__.co_firstlineno + 4
    assert (error.step, error.line, error.file) == ("start", line, __file__)
    assert str(error).startswith(f"step 'start' (test_errors.py, line {line}): ")
    assert "is not a step of this flow" in str(error)


def test_a_transition_that_does_not_match_the_graph_names_the_step_and_line():
    from flowkernel.flow.loader import load_flow

    graph = Kernel.discover().build_graph(load_flow(str(HELLO)))
    node = graph[graph.start]
    with pytest.raises(InvalidNextError) as info:
        _check_transition(node, None)
    error = info.value
    assert isinstance(error, InternalError)  # what Metaflow raises there
    assert (error.step, error.line) == (node.name, node.next_lineno)
    assert f"(hello.py, line {node.next_lineno})" in str(error)
    assert "without calling self.next()" in str(error)


def test_every_error_class_of_the_kernel_is_in_errors_py():
    """Subpackages import their errors from flowkernel.errors (private helpers excepted)."""
    elsewhere = []
    for path in CORE.rglob("*.py"):
        if path.name in ("errors.py", "exception.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {ast.unparse(b) for b in node.bases}
                if node.name.endswith("Error") or any(b.endswith("Error") for b in bases):
                    elsewhere.append(f"{path.relative_to(CORE)}: {node.name}")
    assert elsewhere == []
