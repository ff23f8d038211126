"""Registries and facade calls go through the plugin manager's hooks: FLOWKERNEL_TRACE_HOOKS and
hook wrappers see them; a plugin that fails in a hook is named, with the hook and what to do."""

from __future__ import annotations

import logging

import click
import pytest

from flowkernel import hookimpl
from flowkernel.errors import PluginError
from flowkernel.specs import DeployerSpec, RuntimeSpec
from flowkernel.testing import make_plugin


def _runtime(name: str) -> RuntimeSpec:
    return RuntimeSpec(name=name, factory=lambda kernel: None)


def test_trace_hooks_sees_every_facade_call(kernel_factory, monkeypatch, caplog):
    monkeypatch.setenv("FLOWKERNEL_TRACE_HOOKS", "1")
    plugin = make_plugin(
        flowkernel_runtimes=lambda: [_runtime("traced")],
        flowkernel_deployers=lambda: [DeployerSpec(name="d", factory=object)],
        flowkernel_cli=lambda cli: None,
    )
    with caplog.at_level(logging.DEBUG, logger="flowkernel.hooks"):
        kernel = kernel_factory(plugins=[("traced_plugin", plugin)])
        assert "traced" in kernel.runtimes()
        kernel.deployers()
        kernel.extend_cli(click.Group())
        kernel.make_poller().close()
    traced = caplog.text
    for hook in ("flowkernel_runtimes", "flowkernel_deployers", "flowkernel_cli"):
        assert hook in traced, hook
    assert "flowkernel_make_poller" in traced


def test_a_wrapper_sees_the_runtime_registry(kernel_factory):
    class Wrapper:
        @hookimpl(wrapper=True)
        def flowkernel_runtimes(self):
            found = yield
            return [*found, [_runtime("added-by-wrapper")]]

    plugins = [("base", make_plugin(flowkernel_runtimes=lambda: [_runtime("base")]))]
    kernel = kernel_factory(plugins=[*plugins, ("wrapper", Wrapper())])
    assert list(kernel.runtimes()) == ["added-by-wrapper", "base"]


def test_a_plugin_failing_in_a_hook_is_named_with_the_hook_and_the_fix(kernel_factory):
    def flowkernel_runtimes():
        raise ValueError("no config file")

    kernel = kernel_factory(plugins=[("fine", make_plugin(flowkernel_runtimes=lambda: [])),
                                     ("broken_rt", make_plugin(flowkernel_runtimes))])  # fmt: skip
    with pytest.raises(PluginError) as info:
        kernel.runtimes()
    error = info.value
    assert (error.plugin, error.hook) == ("broken_rt", "flowkernel_runtimes")
    message = str(error)
    assert "plugin broken_rt failed in flowkernel_runtimes: ValueError: no config file" in message
    assert "FLOWKERNEL_DISABLE_PLUGINS=broken_rt" in message


def test_a_duplicate_name_says_how_to_resolve_it(kernel_factory):
    plugins = [(n, make_plugin(flowkernel_runtimes=lambda: [_runtime("x")])) for n in ("p", "q")]
    with pytest.raises(PluginError, match=r"runtime named 'x': (p and q|q and p)") as info:
        kernel_factory(plugins=plugins).runtimes()
    assert "hook flowkernel_runtimes" in str(info.value)
    assert "FLOWKERNEL_DISABLE_PLUGINS=" in str(info.value)
