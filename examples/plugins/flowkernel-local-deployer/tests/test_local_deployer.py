"""Tests of the tutorial deployer, written with the fixtures of flowkernel.testing.

The commands run in-process (``cli_runner``) with a kernel holding this plugin and the graph
builder; ``trigger`` starts a real detached ``flow run``.
"""

from __future__ import annotations

import json
import time

import pytest

from flowkernel.client import Run
from flowkernel_local_deployer import hooks

FLOW = """\
from flowkernel import FlowSpec, Parameter, step


class TinyFlow(FlowSpec):
    alpha = Parameter("alpha", default=1)

    @step
    def start(self):
        self.doubled = self.alpha * 2
        self.next(self.end)

    @step
    def end(self):
        pass
"""


@pytest.fixture
def kernel(kernel_factory):
    """This plugin, plus the installed graph builder (create validates the flow)."""
    from flowkernel_graph_ast import hooks as graph_ast

    return kernel_factory(plugins=[("graph_ast", graph_ast), ("local_deployer", hooks)])


@pytest.fixture
def flow(kernel, cli_runner, tmp_path):
    """``flow --datastore-root ROOT local-deployer ARGS``; returns (result, attributes)."""
    flow_file = tmp_path / "tiny.py"
    flow_file.write_text(FLOW)

    def run(*args):
        attr_file = tmp_path / "attributes.json"
        attr_file.unlink(missing_ok=True)
        argv = ["--datastore-root", str(tmp_path / "ds"), "local-deployer", *args]
        argv = [a if a != "FILE" else str(flow_file) for a in argv]
        result = cli_runner([*argv, "--deployer-attribute-file", str(attr_file)], kernel)
        attributes = json.loads(attr_file.read_text()) if attr_file.exists() else None
        return result, attributes

    return run


def test_registers_one_deployer(kernel):
    spec = kernel.deployers()["local-deployer"]
    assert spec.cli.name == "local-deployer"
    assert sorted(spec.cli.commands) == [
        "create", "delete", "describe", "list", "status", "terminate", "trigger",
    ]  # fmt: skip


def test_create_records_the_deployment(flow, tmp_path):
    result, attributes = flow("--name", "tiny", "create", "FILE", "--tag", "t1")
    assert result.exit_code == 0, result.output
    assert attributes["name"] == "tiny" and attributes["flow_name"] == "TinyFlow"
    assert attributes["metadata"] == f"local@{tmp_path / 'ds'}"
    assert attributes["parameters"] == [
        {"name": "alpha", "type": "int", "default": 1, "help": "", "required": False}
    ]
    result, listed = flow("list")
    assert result.stdout == "tiny  TinyFlow\n"
    assert [d["name"] for d in listed["deployments"]] == ["tiny"]
    _, described = flow("--name", "tiny", "describe")
    assert described == attributes


def test_trigger_starts_a_detached_run(flow, tmp_path):
    flow("create", "FILE")
    result, triggered = flow("trigger", "FILE", "--alpha", "21")
    assert result.exit_code == 0, result.output
    assert triggered["name"] == "TinyFlow" and triggered["pathspec"].startswith("TinyFlow/")
    run = Run(triggered["pathspec"], _namespace_check=False, _root=str(tmp_path / "ds"))
    deadline = time.monotonic() + 60
    while flow("status", triggered["pathspec"])[1]["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert flow("status", triggered["pathspec"])[1] == {"status": "successful"}
    assert run["start"].task.data.doubled == 42


def test_a_bad_parameter_fails_the_trigger_with_the_runs_message(flow):
    flow("create", "FILE")
    result, attributes = flow("trigger", "FILE", "--alpha", "many")
    assert result.exit_code == 1 and attributes is None
    assert "'many' is not a valid integer" in result.stderr


def test_clear_errors(flow):
    result, _ = flow("--name", "nothing-here", "delete")
    assert result.exit_code == 2
    assert "no local-deployer deployment named 'nothing-here'" in result.stderr
    result, _ = flow("--name", "../escape", "create", "FILE")
    assert result.exit_code == 2 and "invalid deployment name '../escape'" in result.stderr
    result, _ = flow("describe")
    assert "say which deployment: flow local-deployer --name NAME" in result.stderr
