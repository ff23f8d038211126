"""Kernel discovery: entry-point loading, the FLOWKERNEL_* controls, registries and errors."""

from __future__ import annotations

import logging

import pytest

from flowkernel import hookimpl
from flowkernel.errors import MissingPluginError, PluginError
from flowkernel.specs import DeployerSpec, RuntimeSpec
from flowkernel.testing import FakeEntryPoint, make_plugin


def _cli_plugin():
    return make_plugin(flowkernel_cli=lambda cli: None)


def _by_name(kernel):
    return {r.name: r for r in kernel.records}


def _runtimes(*names):
    specs = [RuntimeSpec(name=n, factory=object) for n in names]
    return make_plugin(flowkernel_runtimes=lambda: specs)


# -- entry-point loading -----------------------------------------------------------------------


def test_entry_points_load_with_distribution_and_version(fake_entry_points, kernel_factory):
    fake_entry_points(
        FakeEntryPoint("alpha", _cli_plugin(), dist="flowkernel-alpha", version="2.1")
    )
    rec = _by_name(kernel_factory(load_entrypoints=True))["alpha"]
    assert rec.status == "loaded"
    assert (rec.distribution, rec.version, rec.module) == (
        "flowkernel-alpha",
        "2.1",
        "fake_alpha.hooks",
    )
    assert rec.hooks == ("flowkernel_cli",)
    assert rec.error is None


def test_entry_points_are_off_by_default_in_kernel_factory(fake_entry_points, kernel_factory):
    fake_entry_points(FakeEntryPoint("alpha", _cli_plugin()))
    assert [r.name for r in kernel_factory().records] == ["builtins"]


def test_broken_entry_point_is_recorded_and_others_still_load(
    fake_entry_points, kernel_factory, caplog
):
    fake_entry_points(
        FakeEntryPoint("broken", ModuleNotFoundError("No module named 'nope'\nmore detail")),
        FakeEntryPoint("good", _cli_plugin()),
    )
    with caplog.at_level(logging.WARNING, logger="flowkernel.kernel"):
        kernel = kernel_factory(load_entrypoints=True)
    records = _by_name(kernel)
    assert records["broken"].status == "failed"
    assert records["broken"].error == "ModuleNotFoundError: No module named 'nope'; more detail"
    assert records["good"].status == "loaded"
    assert kernel.pm.has_plugin("good") and not kernel.pm.has_plugin("broken")
    assert "could not load plugin broken from flowkernel-fake 1.0" in caplog.text


def test_plugin_failing_at_registration_is_unregistered(fake_entry_points, kernel_factory):
    class BadSignature:
        @hookimpl
        def flowkernel_runtimes(self, unknown_arg):  # not in the spec: pluggy refuses it
            return []

    fake_entry_points(FakeEntryPoint("bad", BadSignature()), FakeEntryPoint("good", _cli_plugin()))
    kernel = kernel_factory(load_entrypoints=True)
    records = _by_name(kernel)
    assert records["bad"].status == "failed"
    assert "unknown_arg" in records["bad"].error
    assert not kernel.pm.has_plugin("bad")
    assert records["good"].status == "loaded"


def test_duplicate_entry_point_names_are_reported_and_neither_wins(
    fake_entry_points, kernel_factory
):
    fake_entry_points(
        FakeEntryPoint("twin", _cli_plugin(), dist="flowkernel-twin-a"),
        FakeEntryPoint("twin", _cli_plugin(), dist="flowkernel-twin-b"),
        FakeEntryPoint("other", _cli_plugin()),
    )
    kernel = kernel_factory(load_entrypoints=True)
    twins = [r for r in kernel.records if r.name == "twin"]
    assert {r.distribution for r in twins} == {"flowkernel-twin-a", "flowkernel-twin-b"}
    for rec in twins:
        assert rec.status == "failed"
        assert "several distributions (flowkernel-twin-a, flowkernel-twin-b)" in rec.error
    assert not kernel.pm.has_plugin("twin")
    assert _by_name(kernel)["other"].status == "loaded"


def test_duplicate_names_are_fatal_in_strict_mode(fake_entry_points, kernel_factory):
    fake_entry_points(
        FakeEntryPoint("twin", _cli_plugin(), dist="a"),
        FakeEntryPoint("twin", _cli_plugin(), dist="b"),
    )
    with pytest.raises(PluginError, match="twin"):
        kernel_factory(load_entrypoints=True, strict=True)


def test_disable_plugins_blocks_by_name(fake_entry_points, kernel_factory, monkeypatch):
    loaded = []
    fake_entry_points(
        FakeEntryPoint("alpha", _cli_plugin()),
        FakeEntryPoint("beta", _cli_plugin()),
        FakeEntryPoint("gamma", _cli_plugin()),
    )
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGINS", "alpha, gamma")
    kernel = kernel_factory(load_entrypoints=True)
    status = {r.name: r.status for r in kernel.records}
    assert status == {
        "builtins": "builtin",
        "alpha": "blocked",
        "beta": "loaded",
        "gamma": "blocked",
    }
    assert kernel.pm.is_blocked("alpha") and not loaded
    with pytest.raises(PluginError, match="blocked"):
        kernel.register(_cli_plugin(), "alpha")


def test_blocked_plugin_is_never_imported(fake_entry_points, kernel_factory, monkeypatch):
    class ExplodingEntryPoint(FakeEntryPoint):
        def load(self):
            raise AssertionError("a blocked plugin must not be imported")

    fake_entry_points(ExplodingEntryPoint("alpha", None))
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGINS", "alpha")
    assert _by_name(kernel_factory(load_entrypoints=True))["alpha"].status == "blocked"


def test_block_argument_adds_to_the_environment(fake_entry_points, kernel_factory, monkeypatch):
    fake_entry_points(FakeEntryPoint("alpha", _cli_plugin()), FakeEntryPoint("beta", _cli_plugin()))
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGINS", "alpha")
    kernel = kernel_factory(load_entrypoints=True, block=["beta"])
    assert {r.name: r.status for r in kernel.records if r.name != "builtins"} == {
        "alpha": "blocked",
        "beta": "blocked",
    }


def test_blocking_a_duplicate_name_resolves_the_conflict(fake_entry_points, kernel_factory):
    fake_entry_points(
        FakeEntryPoint("twin", _cli_plugin(), dist="a"),
        FakeEntryPoint("twin", _cli_plugin(), dist="b"),
    )
    kernel = kernel_factory(load_entrypoints=True, block=["twin"], strict=True)
    assert {r.status for r in kernel.records if r.name == "twin"} == {"blocked"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("beta", {"alpha": "blocked", "beta": "loaded"}),
        ("alpha,beta", {"alpha": "loaded", "beta": "loaded"}),
        ("", {"alpha": "blocked", "beta": "blocked"}),
        (" , ", {"alpha": "blocked", "beta": "blocked"}),
    ],
)
def test_plugins_allow_list(fake_entry_points, kernel_factory, monkeypatch, value, expected):
    fake_entry_points(FakeEntryPoint("alpha", _cli_plugin()), FakeEntryPoint("beta", _cli_plugin()))
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", value)
    kernel = kernel_factory(load_entrypoints=True)
    assert {r.name: r.status for r in kernel.records if r.name != "builtins"} == expected


def test_only_argument_overrides_the_allow_list(fake_entry_points, kernel_factory, monkeypatch):
    fake_entry_points(FakeEntryPoint("alpha", _cli_plugin()), FakeEntryPoint("beta", _cli_plugin()))
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "alpha")
    kernel = kernel_factory(load_entrypoints=True, only=["beta"])
    assert kernel.plugin_names() == ["builtins", "beta"]


def test_strict_mode_raises_naming_the_plugin(fake_entry_points, kernel_factory, monkeypatch):
    fake_entry_points(FakeEntryPoint("broken", ImportError("cannot import name 'x'"), dist="fk-b"))
    monkeypatch.setenv("FLOWKERNEL_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"could not load plugin broken from fk-b 1.0") as info:
        kernel_factory(load_entrypoints=True)
    assert isinstance(info.value.__cause__, ImportError)


@pytest.mark.parametrize("value", ["", "0"])
def test_strict_mode_off_values(fake_entry_points, kernel_factory, monkeypatch, value):
    fake_entry_points(FakeEntryPoint("broken", ImportError("boom")))
    monkeypatch.setenv("FLOWKERNEL_STRICT_PLUGINS", value)
    assert _by_name(kernel_factory(load_entrypoints=True))["broken"].status == "failed"


def test_builtins_cannot_be_blocked(fake_entry_points, kernel_factory, monkeypatch):
    fake_entry_points(FakeEntryPoint("alpha", _cli_plugin()))
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGINS", "builtins")
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "")
    kernel = kernel_factory(load_entrypoints=True, block=["builtins"])
    assert _by_name(kernel)["builtins"].status == "builtin"
    assert kernel.pm.has_plugin("builtins")
    assert kernel.make_poller().name == "selectors"


def test_entry_point_cannot_take_a_builtin_name(fake_entry_points, kernel_factory, monkeypatch):
    fake_entry_points(FakeEntryPoint("builtins", _cli_plugin(), dist="evil"))
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGINS", "builtins")
    kernel = kernel_factory(load_entrypoints=True)
    failed = [r for r in kernel.records if r.status == "failed"]
    assert [(r.name, r.distribution) for r in failed] == [("builtins", "evil")]
    assert "reserved" in failed[0].error
    assert kernel.make_poller().name == "selectors"


def test_trace_hooks_logs_every_hook_call(kernel_factory, monkeypatch, caplog):
    monkeypatch.setenv("FLOWKERNEL_TRACE_HOOKS", "1")
    with caplog.at_level(logging.DEBUG, logger="flowkernel.hooks"):
        kernel = kernel_factory()
        kernel.make_poller()
    messages = [r.getMessage() for r in caplog.records if r.name == "flowkernel.hooks"]
    assert any("flowkernel_make_poller" in m for m in messages)
    assert any("finish flowkernel_make_poller" in m for m in messages)


def test_no_trace_by_default(kernel_factory, caplog):
    with caplog.at_level(logging.DEBUG, logger="flowkernel.hooks"):
        kernel_factory().make_poller()
    assert not [r for r in caplog.records if r.name == "flowkernel.hooks"]


def test_kernels_are_independent(kernel_factory):
    first = kernel_factory(plugins=[("mine", _runtimes("a"))])
    second = kernel_factory()
    assert "a" in first.runtimes()
    assert second.runtimes() == {}
    assert first.pm is not second.pm


# -- registries and "nothing provides X" errors --------------------------------------------------


def test_duplicate_runtime_names_name_both_plugins(kernel_factory):
    kernel = kernel_factory(plugins=[("one", _runtimes("x")), ("two", _runtimes("x", "y"))])
    with pytest.raises(PluginError, match="runtime named 'x'") as info:
        kernel.runtimes()
    assert "one" in str(info.value) and "two" in str(info.value)


def test_duplicate_deployer_names_name_both_plugins(kernel_factory):
    spec = DeployerSpec(name="argo", factory=object)
    plugins = [("a", make_plugin(flowkernel_deployers=lambda: [spec]))]
    plugins.append(("b", make_plugin(flowkernel_deployers=lambda: [spec])))
    with pytest.raises(PluginError, match=r"deployer named 'argo': (a and b|b and a)"):
        kernel_factory(plugins=plugins).deployers()


def test_registry_is_sorted_by_name(kernel_factory):
    kernel = kernel_factory(plugins=[("one", _runtimes("zeta", "alpha")), ("two", _runtimes("mu"))])
    assert list(kernel.runtimes()) == ["alpha", "mu", "zeta"]


def test_unknown_runtime_lists_installed_runtimes(kernel_factory):
    kernel = kernel_factory(plugins=[("one", _runtimes("local", "dask"))])
    with pytest.raises(
        MissingPluginError, match=r"no runtime named 'k8s'; installed runtimes: dask, local"
    ):
        kernel.runtime("k8s")


def test_no_runtime_at_all_names_runtime_local(kernel_factory):
    with pytest.raises(MissingPluginError) as info:
        kernel_factory().runtime("local")
    assert "installed runtimes: none" in str(info.value)
    assert "install flowkernel-runtime-local" in str(info.value)


def test_missing_runtime_mentions_plugins_that_did_not_load(
    fake_entry_points, kernel_factory, monkeypatch
):
    fake_entry_points(FakeEntryPoint("runtime_local", ImportError("boom")))
    with pytest.raises(MissingPluginError, match=r"not loaded: runtime_local; see `flow plugins`"):
        kernel_factory(load_entrypoints=True).runtime("local")


def test_unknown_deployer_lists_installed_deployers(kernel_factory):
    spec = DeployerSpec(name="argo", factory=object)
    kernel = kernel_factory(plugins=[make_plugin(flowkernel_deployers=lambda: [spec])])
    with pytest.raises(MissingPluginError, match="installed deployers: argo"):
        kernel.deployer("airflow")


def test_build_graph_without_builder_says_what_to_install(kernel_factory):
    class SomeFlow:
        pass

    with pytest.raises(MissingPluginError, match="install flowkernel-graph-ast"):
        kernel_factory().build_graph(SomeFlow)


def test_registering_a_plugin_resets_the_registries(kernel_factory):
    kernel = kernel_factory()
    assert kernel.runtimes() == {}
    kernel.register(_runtimes("late"), "late")
    assert list(kernel.runtimes()) == ["late"]
    assert _by_name(kernel)["late"].status == "loaded"


def test_make_plugin_rejects_non_hook_names():
    with pytest.raises(ValueError, match="not a flowkernel hook"):
        make_plugin(helper=lambda: None)
