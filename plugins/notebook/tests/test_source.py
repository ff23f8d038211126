"""From a class compiled like a notebook cell to a flow file (in-process, no kernel needed)."""

from __future__ import annotations

import linecache
import sys
import textwrap
import threading
import types
from pathlib import Path

import pytest

from flowkernel_notebook.source import (
    NotebookSourceError,
    defining_cell,
    find_cell,
    flow_module,
    foreign_names,
)

CELL = textwrap.dedent(
    """
    get_ipython().run_line_magic('time', 'x = 1')
    import os
    from flowkernel import FlowSpec, step

    LIMIT = 3


    class OtherFlow(FlowSpec):
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass


    @some_decorator
    class CellFlow(FlowSpec):
        @step
        def start(self):
            self.value = helper(LIMIT) + len(json.dumps(os.sep))
            self.next(self.end)

        @step
        def end(self):
            pass

    print("after the class")
    """
)


def execute_cell(text: str, filename: str, namespace: dict, register: bool = True) -> None:
    """What IPython does with a cell: compile it under a pseudo file name known to linecache."""
    if register:
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    exec(compile(text, filename, "exec"), namespace)


@pytest.fixture
def notebook():
    """A fake kernel: history ``_ih`` and a user namespace after running four cells."""
    shell = types.SimpleNamespace(run_line_magic=lambda *args: None)
    namespace: dict = {"__name__": "__main__", "get_ipython": lambda: shell}
    namespace["some_decorator"] = lambda cls: cls
    history = [
        "",
        "import json\nimport not_installed_module_xyz",  # the second import failed
        "def helper(x):\n    return x + 1\n",
        CELL,
    ]
    exec("import json", namespace)
    exec(history[2], namespace)
    execute_cell(CELL, "/tmp/ipykernel_1/cell3.py", namespace)
    yield history, namespace
    linecache.cache.pop("/tmp/ipykernel_1/cell3.py", None)


def test_the_cell_is_found_from_a_step_and_labelled_by_its_execution_count(notebook):
    history, ns = notebook
    cell = find_cell(ns["CellFlow"], history)
    assert cell.label == "In [3]" and cell.node.name == "CellFlow"


def test_the_flow_file_has_every_working_import_and_the_cell_up_to_the_class(notebook):
    history, ns = notebook
    text = flow_module(ns["CellFlow"], find_cell(ns["CellFlow"], history), history, ns)
    assert "import json" in text and "import os" in text
    assert "not_installed_module_xyz" not in text  # that import failed in the notebook
    assert "get_ipython" not in text  # the %time line
    assert "class OtherFlow" not in text  # another flow of the same cell
    assert "@some_decorator\nclass CellFlow(FlowSpec):" in text
    assert "LIMIT = 3" in text and "after the class" not in text
    assert text.rstrip().endswith('if __name__ == "__main__":\n    CellFlow()')
    compile(text, "flow.py", "exec")


def test_names_from_other_cells_are_found_with_their_cell(notebook):
    history, ns = notebook
    text = flow_module(ns["CellFlow"], find_cell(ns["CellFlow"], history), history, ns)
    assert foreign_names(text, "CellFlow", ns) == ["helper"]  # json, os, LIMIT are in the file
    assert defining_cell("helper", history) == "In [2]"


def test_history_is_the_fallback_when_linecache_was_cleared(notebook):
    history, ns = notebook
    linecache.cache.pop("/tmp/ipykernel_1/cell3.py")
    cell = find_cell(ns["CellFlow"], history)
    assert cell.label == "In [3]" and cell.node.name == "CellFlow"


def test_a_class_from_exec_has_no_source(notebook):
    history, ns = notebook
    execute_cell(CELL.replace("CellFlow", "HiddenFlow"), "<string>", ns, register=False)
    with pytest.raises(NotebookSourceError, match="cannot find the source of flow class HiddenF"):
        find_cell(ns["HiddenFlow"], history)


def test_flowkernel_reexports_nbrunner_and_says_how_to_get_it(monkeypatch):
    import flowkernel
    from flowkernel_notebook import NBRunner

    assert flowkernel.NBRunner is NBRunner
    monkeypatch.setitem(sys.modules, "flowkernel_notebook", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install flowkernel-notebook"):
        flowkernel.NBRunner  # noqa: B018


def test_command_output_is_relayed_in_the_calling_thread():
    from flowkernel.runner.procs import CommandProcess

    code = "import sys; print('one', flush=True); print('two', file=sys.stderr); print('three')"
    seen: list[tuple[str, str, str]] = []
    with CommandProcess([sys.executable, "-c", code]) as proc:
        proc.follow(lambda s, line: seen.append((threading.current_thread().name, s, line)))
    assert {t for t, _, _ in seen} == {threading.current_thread().name}
    assert [(s, line) for _, s, line in seen if s == "stdout"] == [
        ("stdout", "one"),
        ("stdout", "three"),
    ]
    assert ("stderr", "two") in [(s, line) for _, s, line in seen]


def test_a_kernel_built_inside_ipython_makes_flow_classes_display_as_graphs(monkeypatch):
    from flowkernel import step
    from flowkernel.flow.flowspec import FlowSpec
    from flowkernel.kernel import Kernel

    registered: dict = {}

    class Formatter:
        def __init__(self, mime):
            self.mime = mime

        def for_type(self, kind, func):
            registered[self.mime, kind] = func

    formatters = {mime: Formatter(mime) for mime in ("text/markdown", "image/svg+xml")}
    shell = types.SimpleNamespace(display_formatter=types.SimpleNamespace(formatters=formatters))
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    Kernel.discover(only=["notebook", "graph_ast"])
    show = registered["text/markdown", type(FlowSpec)]
    assert show(int) is None  # other classes keep their usual display

    class ShownFlow(FlowSpec):
        @step
        def start(self):
            self.next(self.end)

        @step
        def end(self):
            pass

    assert "step_start --> step_end" in show(ShownFlow)
    assert ">start</text>" in registered["image/svg+xml", type(FlowSpec)](ShownFlow)


def test_a_name_set_by_a_magic_line_of_the_class_cell_is_reported_as_such(notebook):
    from flowkernel_notebook.flowfile import _notebook_text

    history, ns = notebook
    cell = "get_ipython().run_line_magic('time', 'x = 1')\n" + CELL.replace("LIMIT)", "x)")
    history.append(cell)
    execute_cell(cell, "/tmp/ipykernel_1/cell4.py", ns)
    ns["x"] = 1  # what %time x = 1 does
    shell = types.SimpleNamespace(user_ns={**ns, "_ih": history})
    fake = types.SimpleNamespace(get_ipython=lambda: shell)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "IPython", fake)
        with pytest.raises(NotebookSourceError) as caught:
            _notebook_text(ns["CellFlow"])
    message = str(caught.value)
    assert "CellFlow (cell In [4]) uses names defined in other cells" in message
    assert (
        "helper (In [2])" in message
        and "x (set by no plain statement of any cell: by a magic line or exec())" in message
    )


def test_the_svg_graph_has_a_box_per_step_and_an_arrow_per_edge():
    import xml.etree.ElementTree as ET

    from flowkernel.flow.loader import load_flow
    from flowkernel.graph.render import render_graph
    from flowkernel.kernel import Kernel

    flows = Path(__file__).resolve().parents[3] / "tests" / "flows" / "shapes"
    graph = Kernel.discover().build_graph(load_flow(str(flows / "recursive_switch.py")))
    root = ET.fromstring(render_graph(graph, "svg"))
    ns = "{http://www.w3.org/2000/svg}"
    names = [t.text for t in root.iter(f"{ns}text") if t.get("font-size") is None]
    assert sorted(names) == sorted(graph.nodes)
    edges = list(root.iter(f"{ns}line")) + list(root.iter(f"{ns}path"))[1:]  # [0]: the arrowhead
    assert len(edges) == sum(len(n.out_funcs) for n in graph.nodes.values())
