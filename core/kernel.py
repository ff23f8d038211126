"""The kernel: a fresh pluggy PluginManager per :meth:`Kernel.discover`, plus a typed facade.

Nothing here runs at import time. Plugins are found through entry points in the group
``flowkernel.plugins`` and loaded one at a time: a plugin that fails to import or register is
recorded as ``failed`` with its one-line error and the others keep working. The entry-point
name is the plugin name users type (``FLOWKERNEL_DISABLE_PLUGINS=graph_ast``).

Environment:

* ``FLOWKERNEL_DISABLE_PLUGINS=a,b`` blocks plugins by name;
* ``FLOWKERNEL_PLUGINS=a,b`` loads only these (an empty value loads none);
* ``FLOWKERNEL_STRICT_PLUGINS=1`` turns a plugin that fails to load into an error;
* ``FLOWKERNEL_TRACE_HOOKS=1`` logs every hook call at DEBUG level (logger ``flowkernel.hooks``);
* ``FLOWKERNEL_ENTRY_POINT_CACHE=0`` scans for the entry points at every start (see
  :mod:`flowkernel.entrypoints`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from flowkernel import entrypoints, hookspecs
from flowkernel.errors import FlowkernelError, GraphValidationError, MissingPluginError, PluginError
from flowkernel.specs import PluginRecord

if TYPE_CHECKING:
    from importlib import metadata

    import click

    from flowkernel.engine.logs import LogSink
    from flowkernel.engine.poller import Poller
    from flowkernel.graph.model import FlowGraph, GraphProblem
    from flowkernel.specs import (
        DeployerSpec,
        RunInfo,
        RunResult,
        RuntimeSpec,
        StorageBackendSpec,
        TaskInfo,
    )

ENTRY_POINT_GROUP = "flowkernel.plugins"
log = logging.getLogger("flowkernel.kernel")

#: Where to get the standard plugins, for "nothing provides X" errors.
_INSTALL_HINTS = {
    "graph": "flowkernel-graph-ast",
    "runtime": "flowkernel-runtime-local",
}


def _env_list(name: str) -> list[str] | None:
    """``None`` when unset; ``[]`` for an empty value; else the comma-separated names."""
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (a multi-line message is joined with "; ")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {'; '.join(lines)}" if lines else type(exc).__name__


def _builtin_plugins() -> list[tuple[str, Any]]:
    """The kernel's own plugins: fallbacks that can never be blocked."""
    from flowkernel import builtins

    return [("builtins", builtins)]


class Kernel:
    """Typed facade over one pluggy PluginManager. Build it with :meth:`discover`."""

    def __init__(self, pm: pluggy.PluginManager, records: list[PluginRecord]):
        self.pm = pm
        self._records = records
        #: record index -> its entry point; distribution name and version are filled in on
        #: first access to :attr:`records` (reading them parses METADATA files: slow at startup)
        self._dist_pending: dict[int, metadata.EntryPoint] = {}
        self._graphs: dict[type, FlowGraph] = {}
        self._runtimes: dict[str, RuntimeSpec] | None = None
        self._deployers: dict[str, DeployerSpec] | None = None
        self._storage: dict[str, StorageBackendSpec] | None = None

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def discover(
        cls,
        *,
        load_entrypoints: bool = True,
        block: Iterable[str] = (),
        only: Iterable[str] | None = None,
        strict: bool | None = None,
        plugins: Sequence[tuple[str, Any]] = (),
    ) -> Kernel:
        """Build a fresh kernel.

        :param load_entrypoints: load plugins from the ``flowkernel.plugins`` entry points.
        :param block: plugin names never to load (added to ``FLOWKERNEL_DISABLE_PLUGINS``).
        :param only: if given, load only these entry-point plugins (overrides
            ``FLOWKERNEL_PLUGINS``); an empty iterable loads none.
        :param strict: raise :class:`PluginError` when a plugin fails to load (default: the
            ``FLOWKERNEL_STRICT_PLUGINS`` environment variable).
        :param plugins: extra ``(name, plugin object)`` pairs to register (tests, embedding).
        """
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        # historic: every plugin registered from here on gets it on registration
        pm.hook.flowkernel_add_hookspecs.call_historic(kwargs={"pluginmanager": pm})
        if os.environ.get("FLOWKERNEL_TRACE_HOOKS") == "1":
            hook_log = logging.getLogger("flowkernel.hooks")
            pm.trace.root.setwriter(lambda msg: hook_log.debug(msg.rstrip()))
            pm.enable_tracing()
        records: list[PluginRecord] = []
        for name, plugin in _builtin_plugins():
            pm.register(plugin, name=name)
            records.append(_record(pm, name, plugin, "builtin"))
        blocked = set(block) | set(_env_list("FLOWKERNEL_DISABLE_PLUGINS") or ())
        allowed = set(only) if only is not None else _env_list("FLOWKERNEL_PLUGINS")
        if strict is None:
            strict = os.environ.get("FLOWKERNEL_STRICT_PLUGINS", "") not in ("", "0")
        kernel = cls(pm, records)
        if load_entrypoints:
            kernel._load_entrypoints(blocked, None if allowed is None else set(allowed), strict)
        for name, plugin in plugins:
            kernel.register(plugin, name)
        pm.check_pending()
        pm.hook.flowkernel_configure.call_historic(kwargs={"kernel": kernel})
        return kernel

    def _load_entrypoints(self, blocked: set[str], allowed: set[str] | None, strict: bool) -> None:
        # (importlib.metadata's scan, or its result remembered from an earlier start)
        eps = sorted(entrypoints.entry_points(ENTRY_POINT_GROUP), key=lambda ep: ep.name)
        by_name: dict[str, list[metadata.EntryPoint]] = {}
        for ep in eps:
            by_name.setdefault(ep.name, []).append(ep)
        reserved = {name for name, _ in _builtin_plugins()}
        for name, group in by_name.items():
            ep = group[0]
            if name in reserved:
                # set_blocked() or register() under this name would hit the kernel's own plugin
                msg = f"PluginError: the name '{name}' is reserved for the kernel"
                self._fail(ep, msg, strict)
                continue
            if name in blocked or (allowed is not None and name not in allowed):
                self.pm.set_blocked(name)
                for each in group:
                    self._add_ep_record(each, "blocked")
                continue
            dists = {_dist_name(each) for each in group} if len(group) > 1 else set()
            if len(dists) > 1:
                owners = ", ".join(sorted(d or "?" for d in dists))
                msg = f"plugin name '{name}' is provided by several distributions ({owners})"
                for each in sorted(group, key=lambda e: _dist_name(e) or ""):
                    self._fail(each, f"PluginError: {msg}; uninstall all but one", strict)
                continue
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=name)
            except Exception as exc:  # a broken plugin must not take the others down
                if self.pm.has_plugin(name):
                    self.pm.unregister(name=name)
                self._fail(ep, _one_line(exc), strict, exc)
                continue
            self._add_ep_record(ep, "loaded", hooks=_record(self.pm, name, plugin, "loaded").hooks)

    def _add_ep_record(
        self, ep: metadata.EntryPoint, status: str, error: str | None = None, hooks: tuple = ()
    ) -> None:
        self._dist_pending[len(self._records)] = ep
        record = PluginRecord(
            name=ep.name, status=status, module=ep.value, hooks=hooks, error=error
        )
        self._records.append(record)

    def _fail(
        self, ep: metadata.EntryPoint, error: str, strict: bool, exc: BaseException | None = None
    ) -> None:
        dist = _dist_name(ep)
        text = f"could not load plugin {ep.name} from {dist} {_dist_version(ep)}: {error}"
        if strict:
            raise PluginError(text) from exc
        log.warning(text)
        self._add_ep_record(ep, "failed", error)

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin object (module, class instance, ...) under ``name``."""
        registered = self.pm.register(plugin, name=name)
        if registered is None:
            raise PluginError(f"plugin '{name}' is blocked or already registered")
        self._records.append(_record(self.pm, registered, plugin, "loaded"))
        self._runtimes = self._deployers = self._storage = None
        self._graphs.clear()
        return registered

    # -- introspection -----------------------------------------------------------------------

    @property
    def records(self) -> list[PluginRecord]:
        """One record per plugin: built-ins, loaded, blocked and failed, in load order."""
        for index, ep in self._dist_pending.items():
            self._records[index] = attrs.evolve(
                self._records[index], distribution=_dist_name(ep), version=_dist_version(ep)
            )
        self._dist_pending.clear()
        return list(self._records)

    def plugin_names(self) -> list[str]:
        return [r.name for r in self._records if r.status in ("loaded", "builtin")]

    # -- graph -------------------------------------------------------------------------------

    def build_graph(self, flow_cls: type) -> FlowGraph:
        """The graph of ``flow_cls`` (cached per class), not yet validated."""
        graph = self._graphs.get(flow_cls)
        if graph is None:
            from flowkernel.flow.decorators import finalize_decorators

            finalize_decorators(flow_cls)
            graph = self.pm.hook.flowkernel_build_graph(flow_cls=flow_cls)
            if graph is None:
                raise MissingPluginError(
                    f"no graph builder recognised flow {flow_cls.__name__}: "
                    f"install {_INSTALL_HINTS['graph']}" + self._disabled_hint()
                )
            self._graphs[flow_cls] = graph
            flow_cls._fk_graph = graph  # what `flow._graph` returns
        return graph

    def check_flow(self, flow_cls: type) -> list[GraphProblem]:
        """Every validation problem of the flow (empty when it is valid)."""
        from flowkernel.graph.lint import check_flow

        return check_flow(flow_cls, self.build_graph(flow_cls))

    def validated_graph(self, flow_cls: type) -> FlowGraph:
        """The graph of ``flow_cls``; raises :class:`GraphValidationError` listing every problem."""
        problems = self.check_flow(flow_cls)
        if problems:
            raise GraphValidationError(problems)
        return self.build_graph(flow_cls)

    # -- schedule ----------------------------------------------------------------------------

    def runtimes(self) -> dict[str, RuntimeSpec]:
        """Every registered runtime by name (sorted)."""
        if self._runtimes is None:
            self._runtimes = self._registry("runtime", "flowkernel_runtimes")
        return self._runtimes

    def runtime(self, name: str) -> RuntimeSpec:
        """The runtime called ``name``; the error lists the installed ones."""
        runtimes = self.runtimes()
        if name not in runtimes:
            installed = ", ".join(runtimes) or "none"
            hint = f" (install {_INSTALL_HINTS['runtime']})" if not runtimes else ""
            raise MissingPluginError(
                f"no runtime named '{name}'; installed runtimes: {installed}{hint}"
                + self._disabled_hint()
            )
        return runtimes[name]

    def storage_backends(self) -> dict[str, StorageBackendSpec]:
        """Every registered storage backend by URL scheme (sorted)."""
        if self._storage is None:
            self._storage = self._registry("storage backend", "flowkernel_storage_backends")
        return self._storage

    # -- poll / log --------------------------------------------------------------------------

    def make_poller(self) -> Poller:
        """A poller for this platform (the kernel's ``selectors`` fallback at worst)."""
        return self._call("flowkernel_make_poller")

    def declined_hooks(self) -> dict[str, list[str]]:
        """Plugin name -> the argument-free "who handles this?" hooks it declines on this
        machine (implements, but answers None): ``procpoll_darwin`` on Linux, say."""
        declined: dict[str, list[str]] = {}
        for impl in self.pm.hook.flowkernel_make_poller.get_hookimpls():
            try:
                answer = impl.function()
            except Exception:
                continue  # a plugin that fails here fails in a run too, with its error
            if answer is None:
                declined.setdefault(impl.plugin_name, []).append("flowkernel_make_poller")
            elif hasattr(answer, "close"):
                answer.close()
        return declined

    def log_sinks(self, run: RunInfo) -> list[LogSink]:
        """Every sink that wants the lines of ``run``."""
        return [s for sinks in self._call("flowkernel_log_sinks", run=run) for s in sinks or ()]

    # -- deploy / CLI ------------------------------------------------------------------------

    def deployers(self) -> dict[str, DeployerSpec]:
        """Every registered deployer by name (sorted)."""
        if self._deployers is None:
            self._deployers = self._registry("deployer", "flowkernel_deployers")
        return self._deployers

    def deployer(self, name: str) -> DeployerSpec:
        deployers = self.deployers()
        if name not in deployers:
            installed = ", ".join(deployers) or "none"
            raise MissingPluginError(
                f"no deployer named '{name}'; installed deployers: {installed}"
            )
        return deployers[name]

    def extend_cli(self, cli: click.Group) -> None:
        """Let every plugin add its commands; a plugin that raises is reported, not fatal.

        Each plugin is called through the hook (a subset caller holding it and every wrapper),
        so tracing and wrappers see the calls.
        """
        impls = self.pm.hook.flowkernel_cli.get_hookimpls()
        wrappers = [i for i in impls if i.wrapper or i.hookwrapper]
        for impl in impls:
            if impl in wrappers:
                continue
            others = [i.plugin for i in impls if i is not impl and i not in wrappers]
            try:
                self.pm.subset_hook_caller("flowkernel_cli", remove_plugins=others)(cli=cli)
            except Exception as exc:
                log.warning("plugin %s could not add its commands: %s", impl.plugin_name, exc)

    # -- lifecycle ---------------------------------------------------------------------------

    def run_started(self, run: RunInfo) -> None:
        self.pm.hook.flowkernel_run_started(run=run)

    def task_finished(self, task: TaskInfo) -> None:
        self.pm.hook.flowkernel_task_finished(task=task)

    def run_finished(self, run: RunInfo, result: RunResult) -> None:
        self.pm.hook.flowkernel_run_finished(run=run, result=result)

    # -- in-process runs ---------------------------------------------------------------------

    def run(self, flow: type | str, **kwargs: Any) -> Any:
        """Run a flow class or file in this process; returns the client Run.

        See :func:`flowkernel.runner.inprocess.run_flow` for the keyword arguments (runtime,
        datastore_root, max_workers, tags, ... and the flow's parameters).
        """
        from flowkernel.runner.inprocess import run_flow

        return run_flow(self, flow, **kwargs)

    # -- helpers -----------------------------------------------------------------------------

    def _call(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a hook through ``pm.hook`` (tracing and wrappers see it).

        :raises PluginError: an implementation raised something other than a flowkernel error;
            the error names the plugin, the hook and what to do.
        """
        try:
            return getattr(self.pm.hook, hook_name)(**kwargs)
        except FlowkernelError:
            raise
        except Exception as exc:
            plugin = self._culprit(hook_name, kwargs) or "?"
            raise PluginError.in_hook(plugin, hook_name, exc) from exc

    def _culprit(self, hook_name: str, kwargs: dict[str, Any]) -> str | None:
        """The plugin whose implementation of ``hook_name`` raises (asked one by one; used
        only once the hook call has failed)."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if impl.wrapper or impl.hookwrapper:
                continue
            try:
                impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception:
                return impl.plugin_name
        return None

    def _registry(self, kind: str, hook_name: str) -> dict[str, Any]:
        """Merge the records of registration hook ``hook_name`` into one name-keyed, sorted
        registry; two plugins registering one name is a :class:`PluginError` naming both."""
        found: dict[str, Any] = {}
        for specs in self._call(hook_name):
            for spec in specs or ():
                if spec.name in found:
                    owners = self._owners(hook_name, spec.name)
                    raise PluginError(
                        f"two plugins register a {kind} named '{spec.name}': "
                        f"{' and '.join(owners)} (hook {hook_name}); uninstall one, or block it "
                        f"with FLOWKERNEL_DISABLE_PLUGINS={owners[-1]}"
                    )
                found[spec.name] = spec
        return {name: found[name] for name in sorted(found)}

    def _owners(self, hook_name: str, name: str) -> list[str]:
        """The plugins whose ``hook_name`` registers ``name`` (to explain a duplicate)."""
        return [
            impl.plugin_name
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls()
            if not (impl.wrapper or impl.hookwrapper)
            and any(spec.name == name for spec in impl.function() or ())
        ]

    def _disabled_hint(self) -> str:
        off = [r.name for r in self._records if r.status in ("blocked", "failed")]
        return f" (not loaded: {', '.join(off)}; see `flow plugins`)" if off else ""


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _dist_version(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else None


def _record(pm: pluggy.PluginManager, name: str, plugin: Any, status: str) -> PluginRecord:
    hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
    module = getattr(plugin, "__name__", None) or type(plugin).__module__
    return PluginRecord(name=name, status=status, module=module, hooks=hooks)
