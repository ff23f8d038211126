"""One ``test_hook_<name>`` per hook in hookspecs.py: the kernel facade calls it as documented.

test_every_hook_has_a_test fails when a hook is added to hookspecs.py without a test here.
"""

from __future__ import annotations

import inspect
import logging
import sys
from pathlib import Path

import click
import pluggy
import pytest

from flowkernel import hookimpl, hookspecs
from flowkernel.specs import DeployerSpec, RunInfo, RunResult, RuntimeSpec, TaskInfo
from flowkernel.testing import make_plugin

RUN = RunInfo(flow_name="HelloFlow", run_id="1", datastore_root="/tmp/ds")


def hook_names() -> list[str]:
    """Every hook specification in hookspecs.py."""
    return sorted(
        name
        for name, obj in vars(hookspecs).items()
        if name.startswith("flowkernel_") and hasattr(obj, f"{hookspecs.PROJECT}_spec")
    )


def test_every_hook_has_a_test():
    tests = {name for name, obj in globals().items() if inspect.isfunction(obj)}
    missing = [h for h in hook_names() if f"test_hook_{h}" not in tests]
    assert not missing, f"hooks without a test_hook_<name> in {__file__}: {missing}"


def test_every_hook_is_prefixed_and_exists_on_the_manager(kernel_factory):
    kernel = kernel_factory()
    for name in hook_names():
        assert name.startswith("flowkernel_")
        assert getattr(kernel.pm.hook, name).spec is not None


# -- configure -----------------------------------------------------------------------------------


class MyPluginSpecs:
    """Sub-hooks a plugin publishes through flowkernel_add_hookspecs."""

    @pluggy.HookspecMarker("flowkernel")
    def flowkernel_myplugin_colour(self, name):
        """A sub-hook."""


def test_hook_flowkernel_add_hookspecs(kernel_factory):
    seen = []

    def flowkernel_add_hookspecs(pluginmanager):
        seen.append(pluginmanager)
        pluginmanager.add_hookspecs(MyPluginSpecs)

    publisher = make_plugin(flowkernel_add_hookspecs)
    user = make_plugin(flowkernel_myplugin_colour=lambda name: f"{name} is blue")
    kernel = kernel_factory(plugins=[("publisher", publisher), ("user", user)])  # check_pending ok
    assert seen == [kernel.pm]
    assert kernel.pm.hook.flowkernel_myplugin_colour(name="sky") == ["sky is blue"]
    # historic: a plugin registered later is offered the hook too
    late_seen = []
    kernel.register(
        make_plugin(flowkernel_add_hookspecs=lambda pluginmanager: late_seen.append(pluginmanager)),
        "late",
    )
    assert late_seen == [kernel.pm]


def test_hook_flowkernel_configure(kernel_factory):
    seen = []
    kernel = kernel_factory(
        plugins=[make_plugin(flowkernel_configure=lambda kernel: seen.append(kernel))]
    )
    assert seen == [kernel]
    later = []
    kernel.register(make_plugin(flowkernel_configure=lambda kernel: later.append(kernel)), "later")
    assert later == [kernel]  # historic


# -- graph ---------------------------------------------------------------------------------------


def test_hook_flowkernel_build_graph(kernel_factory):
    class KnownFlow:
        pass

    class OtherFlow:
        pass

    graph = object()
    calls = []

    def flowkernel_build_graph(flow_cls):
        calls.append(flow_cls)
        return graph if flow_cls is KnownFlow else None

    declining = make_plugin(flowkernel_build_graph=lambda flow_cls: None)
    kernel = kernel_factory(plugins=[make_plugin(flowkernel_build_graph), declining])
    assert kernel.build_graph(KnownFlow) is graph
    assert kernel.build_graph(KnownFlow) is graph
    assert calls == [KnownFlow]  # cached per class
    try:
        kernel.build_graph(OtherFlow)
    except Exception as exc:
        assert "no graph builder recognised flow OtherFlow" in str(exc)
    else:
        raise AssertionError("expected MissingPluginError")


# -- schedule / poll / log / deploy ----------------------------------------------------------------


def test_hook_flowkernel_runtimes(kernel_factory):
    spec = RuntimeSpec(name="fake", factory=lambda kernel: None, description="for tests")
    kernel = kernel_factory(plugins=[make_plugin(flowkernel_runtimes=lambda: [spec])])
    assert kernel.runtimes() == {"fake": spec}
    assert kernel.runtime("fake") is spec


def test_hook_flowkernel_storage_backends(kernel_factory, tmp_path):
    from flowkernel.errors import PluginError, StorageBackendMissingError
    from flowkernel.specs import StorageBackendSpec
    from flowkernel.storage import LocalBackend, open_backend
    from flowkernel.storage.backend import forget_backends

    def factory(root):  # a "mem://" root served by the local backend under tmp_path
        backend = LocalBackend(str(tmp_path))
        backend.root = root
        return backend

    spec = StorageBackendSpec(name="mem", factory=factory, description="for tests")
    kernel = kernel_factory(plugins=[make_plugin(flowkernel_storage_backends=lambda: [spec])])
    assert kernel.storage_backends()["mem"] is spec
    assert set(kernel.storage_backends()) == {"file", "mem"}  # the kernel serves plain paths
    backend = open_backend("mem://bucket/x/", kernel)
    assert backend.root == "mem://bucket/x"  # normalized: no trailing slash
    assert open_backend("mem://bucket/x", kernel) is backend  # cached per root
    with pytest.raises(StorageBackendMissingError, match="install flowkernel-storage-s3"):
        open_backend("s3://bucket/prefix", kernel)
    forget_backends()
    again = make_plugin(flowkernel_storage_backends=lambda: [spec])
    kernel = kernel_factory(
        plugins=[make_plugin(flowkernel_storage_backends=lambda: [spec]), again]
    )
    with pytest.raises(PluginError, match="two plugins register a storage backend named 'mem'"):
        kernel.storage_backends()


def test_hook_flowkernel_make_poller(kernel_factory):
    poller = object()
    first = make_plugin(flowkernel_make_poller=lambda: None)  # declines
    second = make_plugin(flowkernel_make_poller=lambda: poller)
    assert kernel_factory(plugins=[second, first]).make_poller() is poller
    # the kernel's selectors fallback is trylast: it never wins over a plugin, whatever the order
    assert kernel_factory(plugins=[first]).make_poller().name == "selectors"


def test_hook_flowkernel_log_sinks(kernel_factory, tmp_path):
    run = RunInfo(flow_name="HelloFlow", run_id="1", datastore_root=str(tmp_path))
    got = []

    def flowkernel_log_sinks(run):
        got.append(run)
        return ["sink-a", "sink-b"]

    others = make_plugin(flowkernel_log_sinks=lambda run: [])
    kernel = kernel_factory(plugins=[make_plugin(flowkernel_log_sinks), others])
    sinks = kernel.log_sinks(run)  # flattened over every plugin, the kernel's own sinks included
    assert [s for s in sinks if isinstance(s, str)] in (["sink-a", "sink-b"], ["sink-b", "sink-a"])
    assert got == [run]
    for sink in sinks:
        if not isinstance(sink, str):
            sink.close()


def test_hook_flowkernel_deployers(kernel_factory):
    spec = DeployerSpec(name="argo", factory=object, cli=click.Group("argo"))
    kernel = kernel_factory(plugins=[make_plugin(flowkernel_deployers=lambda: [spec])])
    assert kernel.deployers() == {"argo": spec}
    assert kernel.deployer("argo") is spec


# -- CLI -----------------------------------------------------------------------------------------


def test_hook_flowkernel_cli(kernel_factory, cli_runner):
    def flowkernel_cli(cli):
        @cli.command("hello-plugin")
        @click.option("--name", default="world")
        def hello(name):
            """Say hello from a plugin."""
            click.echo(f"hello {name} from a plugin")

    kernel = kernel_factory(plugins=[make_plugin(flowkernel_cli)])
    help_result = cli_runner(["--help"], kernel)
    assert help_result.exit_code == 0, help_result.output
    assert "hello-plugin" in help_result.stdout
    assert "Say hello from a plugin." in help_result.stdout
    result = cli_runner(["hello-plugin", "--name", "tests"], kernel)
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello tests from a plugin\n"
    # the command belongs to that kernel only
    assert "hello-plugin" not in cli_runner(["--help"], kernel_factory()).stdout


def test_hook_flowkernel_cli_plugin_that_raises_does_not_break_flow(
    kernel_factory, cli_runner, caplog
):
    def flowkernel_cli(cli):
        raise RuntimeError("cannot add my commands")

    def good_cli(cli):
        cli.add_command(click.Command("still-here", callback=lambda: click.echo("yes")))

    broken = make_plugin(flowkernel_cli, name="broken_cli")
    good = make_plugin(flowkernel_cli=good_cli)
    kernel = kernel_factory(plugins=[("broken_cli", broken), ("good", good)])
    with caplog.at_level(logging.WARNING, logger="flowkernel.kernel"):
        help_result = cli_runner(["--help"], kernel)
    assert help_result.exit_code == 0, help_result.output
    assert "plugins" in help_result.stdout and "still-here" in help_result.stdout
    assert "plugin broken_cli could not add its commands: cannot add my commands" in caplog.text
    assert cli_runner(["still-here"], kernel).stdout == "yes\n"
    assert cli_runner(["plugins", "--all"], kernel).exit_code == 0


def test_flowkernel_cli_impl_may_omit_its_argument(kernel_factory, cli_runner):
    called = []
    kernel = kernel_factory(plugins=[make_plugin(flowkernel_cli=lambda: called.append(1))])
    assert cli_runner(["--help"], kernel).exit_code == 0
    assert called == [1]


# -- lifecycle -----------------------------------------------------------------------------------


class Recorder:
    """A class-based plugin recording every lifecycle event."""

    def __init__(self):
        self.events = []

    @hookimpl
    def flowkernel_run_started(self, run):
        self.events.append(("started", run))

    @hookimpl
    def flowkernel_task_finished(self, task):
        self.events.append(("task", task))

    @hookimpl
    def flowkernel_run_finished(self, run, result):
        self.events.append(("finished", run, result))


def test_hook_flowkernel_run_started(kernel_factory):
    rec = Recorder()
    kernel_factory(plugins=[rec]).run_started(RUN)
    assert rec.events == [("started", RUN)]


def test_hook_flowkernel_task_finished(kernel_factory):
    rec = Recorder()
    task = TaskInfo(run=RUN, step="start", task_id="1", attempt=0, success=True, returncode=0)
    kernel_factory(plugins=[rec]).task_finished(task)
    assert rec.events == [("task", task)]


def test_hook_flowkernel_run_finished(kernel_factory):
    rec = Recorder()
    result = RunResult(run=RUN, success=False, message="boom", failed_steps=("shout",))
    kernel_factory(plugins=[rec]).run_finished(RUN, result)
    assert rec.events == [("finished", RUN, result)]


def test_event_hook_return_values_are_ignored(kernel_factory):
    kernel = kernel_factory(plugins=[make_plugin(flowkernel_run_started=lambda run: "ignored")])
    assert kernel.run_started(RUN) is None


def test_module_plugin_records_its_hooks(kernel_factory):
    kernel = kernel_factory(plugins=[Recorder()])
    rec = next(r for r in kernel.records if r.name == "Recorder")
    assert rec.hooks == (
        "flowkernel_run_finished",
        "flowkernel_run_started",
        "flowkernel_task_finished",
    )
    assert rec.module == __name__ or rec.module in sys.modules


# -- the whole sequence (tox-style) --------------------------------------------------------------


class OrderRecorder:
    """Records every hook call (declining where it could change the outcome)."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def flowkernel_configure(self, kernel):
        self.calls.append("configure")

    @hookimpl
    def flowkernel_build_graph(self, flow_cls):
        self.calls.append("build_graph")

    @hookimpl
    def flowkernel_runtimes(self):
        self.calls.append("runtimes")
        return []

    @hookimpl
    def flowkernel_make_poller(self):
        self.calls.append("make_poller")

    @hookimpl
    def flowkernel_log_sinks(self, run):
        self.calls.append("log_sinks")
        return []

    @hookimpl
    def flowkernel_run_started(self, run):
        self.calls.append("run_started")

    @hookimpl
    def flowkernel_task_finished(self, task):
        self.calls.append(f"task_finished:{task.step}")

    @hookimpl
    def flowkernel_run_finished(self, run, result):
        self.calls.append(f"run_finished:{'ok' if result.success else 'failed'}")


def test_hook_order_during_a_local_run(kernel_factory, tmp_path):
    from importlib.metadata import entry_points

    from flowkernel.kernel import ENTRY_POINT_GROUP

    needed = {"graph_ast", "runtime_local"}
    if not needed <= {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}:
        pytest.skip("needs the graph_ast and runtime_local plugins installed")
    recorder = OrderRecorder()
    kernel = kernel_factory(plugins=[recorder], load_entrypoints=True, only=needed)
    hello = Path(__file__).resolve().parents[1] / "examples" / "hello.py"
    kernel.run(str(hello), datastore_root=str(tmp_path), quiet=True)
    assert recorder.calls == [
        "configure",
        "build_graph",
        "runtimes",
        "make_poller",
        "log_sinks",
        "run_started",
        "task_finished:start",
        "task_finished:shout",
        "task_finished:end",
        "run_finished:ok",
    ]
