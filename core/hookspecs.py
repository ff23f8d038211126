"""The flowkernel hook specifications: the whole contract between the kernel and its plugins.

Hooks are grouped in the order they fire: configure -> graph -> schedule -> poll -> log ->
deploy -> CLI -> lifecycle. Every hook name starts with ``flowkernel_``; implementations use
``@flowkernel.hookimpl``. Values passed in are frozen attrs records from :mod:`flowkernel.specs`.

Shapes:

* *registration* hooks return a list of descriptor records; the kernel merges them into a
  registry keyed by name and reports duplicate names as an error;
* *firstresult* hooks ("who handles this?") return ``None`` to decline;
* *event* hooks are notifications whose return value is ignored. They run in the controller
  process only, never inside a task, so an observer works with every runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from flowkernel.graph.model import FlowGraph
    from flowkernel.kernel import Kernel
    from flowkernel.specs import (
        DeployerSpec,
        RunInfo,
        RunResult,
        RuntimeSpec,
        StorageBackendSpec,
        TaskInfo,
    )

PROJECT = "flowkernel"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------------------------
# configure
# ---------------------------------------------------------------------------------------------


@hookspec(historic=True)
def flowkernel_add_hookspecs(pluginmanager: pluggy.PluginManager) -> None:
    """Publish additional hook specifications (sub-hooks of a plugin).

    Called once for every registered plugin, including plugins registered later (historic).
    Implementations call ``pluginmanager.add_hookspecs(module_or_class)``.

    :param pluginmanager: the kernel's pluggy plugin manager.
    :returns: nothing.

    This hook is historic. Wrappers are not allowed.

    .. versionadded:: 0.1
    """


@hookspec(historic=True)
def flowkernel_configure(kernel: Kernel) -> None:
    """Let a plugin prepare itself once the kernel has loaded every plugin.

    Called once per kernel, after discovery; plugins registered later get it on registration
    (historic). Keep it cheap: it runs on every ``flow`` invocation.

    :param kernel: the kernel facade (plugin records, registries).
    :returns: nothing.

    This hook is historic. Wrappers are not allowed.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# graph
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def flowkernel_build_graph(flow_cls: type) -> FlowGraph | None:
    """Build the graph of a flow class.

    Called whenever the kernel needs a flow's graph (``flow show``, ``check``, ``run``, the
    task executor), at most once per flow class per kernel (the kernel caches the result).
    The graph need not be valid: record parse problems on the nodes and in
    ``FlowGraph.problems``; the kernel validates it with :func:`flowkernel.graph.lint.check_flow`.

    :param flow_cls: the :class:`~flowkernel.FlowSpec` subclass.
    :returns: a :class:`~flowkernel.graph.model.FlowGraph`, or ``None`` to decline (this builder
        does not recognise the flow).

    Stops at first non-None result.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# schedule
# ---------------------------------------------------------------------------------------------


@hookspec
def flowkernel_runtimes() -> list[RuntimeSpec]:
    """Register runtimes: the engines that execute a run (``flow run --runtime=NAME``).

    Called once per kernel, the first time the runtime registry is needed.

    :returns: a list of :class:`~flowkernel.specs.RuntimeSpec`. Names must be unique across
        plugins; a duplicate is reported as an error naming both plugins.

    .. versionadded:: 0.1
    """


@hookspec
def flowkernel_storage_backends() -> list[StorageBackendSpec]:
    """Register storage backends: where a datastore root's bytes live, by URL scheme.

    Called once per kernel, the first time a datastore root with a URL scheme other than
    ``file`` is opened (``--datastore-root s3://bucket/prefix``). Plain paths never call it.

    :returns: a list of :class:`~flowkernel.specs.StorageBackendSpec`; ``name`` is the URL
        scheme (``"s3"``) and ``factory(root)`` returns an object implementing
        :class:`flowkernel.storage.StorageBackend`. Schemes must be unique across plugins; a
        duplicate is reported as an error naming both plugins.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# poll
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def flowkernel_make_poller() -> Any | None:
    """Make the poller a controller uses to watch task pipes (and, if it can, task exits).

    Called once per run by a runtime that reads task output in its own process. The kernel
    ships a portable fallback (``selectors``) registered with ``trylast=True``.

    :returns: an object implementing :class:`~flowkernel.engine.poller.Poller`, or ``None`` to
        decline (for example on a platform the plugin does not support).

    Stops at first non-None result.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# log
# ---------------------------------------------------------------------------------------------


@hookspec
def flowkernel_log_sinks(run: RunInfo) -> list[Any]:
    """Register log sinks for one run.

    Called once per run in the controller, before the first task starts. Every line of every
    task (stdout and stderr, every attempt) is passed to each sink as it is read, as a
    :class:`~flowkernel.specs.LogLine`. A sink is an object with ``emit(line)`` and ``close()``
    (see :class:`flowkernel.engine.logs.LogSink`). A sink that raises is disabled for the rest of
    the run and reported once; other sinks keep receiving lines.

    :param run: the run the sinks will receive lines of.
    :returns: a list of sinks (may be empty).

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# deploy
# ---------------------------------------------------------------------------------------------


@hookspec
def flowkernel_deployers() -> list[DeployerSpec]:
    """Register deployers (Argo Workflows, ...): each one's ``cli`` appears as a ``flow`` command.

    Called once per kernel, the first time the deployer registry is needed (``flow`` listing
    or resolving commands, ``Deployer`` looking up its methods).

    :returns: a list of :class:`~flowkernel.specs.DeployerSpec`. Names must be unique. The
        ``cli`` group's commands are the contract :class:`flowkernel.deployer.Deployer` drives
        (``docs/writing-a-deployer.md``).

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


@hookspec
def flowkernel_cli(cli: click.Group) -> None:
    """Add commands or groups to the ``flow`` command line.

    Called at most once per ``flow`` process, the first time the root group lists its commands
    (``flow --help``) or is asked for a command that is not built in; never for the built-in
    commands such as ``flow run``. Keep imports inside the command functions so ``flow --help``
    stays fast.

    :param cli: the root ``flow`` click group; call ``cli.add_command(...)``.
    :returns: nothing.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------------------------
# lifecycle (controller process only)
# ---------------------------------------------------------------------------------------------


@hookspec
def flowkernel_run_started(run: RunInfo) -> None:
    """A run has been allocated its id and is about to start its first task.

    Called once per run (also for ``resume``), in the controller process.

    :param run: the run.
    :returns: ignored.

    .. versionadded:: 0.1
    """


@hookspec
def flowkernel_task_finished(task: TaskInfo) -> None:
    """A task attempt has ended (succeeded, failed, or was cloned by resume).

    Called once per attempt, in the controller process, after the attempt's record is written.

    :param task: the attempt and how it ended; ``will_retry`` says whether another attempt follows.
    :returns: ignored.

    .. versionadded:: 0.1
    """


@hookspec
def flowkernel_run_finished(run: RunInfo, result: RunResult) -> None:
    """A run has ended, successfully or not. Called once per run, in the controller process.

    :param run: the run.
    :param result: how it ended.
    :returns: ignored.

    .. versionadded:: 0.1
    """
