"""Frozen records passed through the hooks. They can gain fields (with defaults) over time."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import click

    from flowkernel.engine.runtime import Runtime
    from flowkernel.kernel import Kernel


@attrs.frozen
class RuntimeSpec:
    """A runtime a plugin offers (``flowkernel_runtimes``); chosen by ``flow run --runtime=NAME``.

    ``factory(kernel)`` returns a :class:`~flowkernel.engine.runtime.Runtime`: its ``run(ctx)``
    executes a prepared run (a :class:`flowkernel.engine.runs.RunContext`, for ``flow run`` and
    ``flow resume`` alike: a resume context carries the tasks that may be cloned) and returns a
    :class:`RunResult`.
    """

    name: str
    factory: Callable[[Kernel], Runtime]
    description: str = ""
    #: click options the runtime adds to ``flow run`` / ``flow resume`` (e.g. ``--isolation``);
    #: their values reach it in ``ctx.options.extra`` by parameter name. ``Runner`` and
    #: ``Kernel.run`` pass them as keyword arguments / ``runtime_options``.
    options: tuple[click.Option, ...] = ()


@attrs.frozen
class DeployerSpec:
    """A deployer a plugin offers (``flowkernel_deployers``); chosen by name.

    ``cli`` (a click group) is added to ``flow`` under ``name``; its commands are the deployer
    contract (``docs/writing-a-deployer.md``). ``Deployer(...).<name with - -> _>(**kw)`` builds
    the Python side with ``factory(spec, flow_file, deployer, **kw)`` (a
    :class:`flowkernel.deployer.DeployerImpl` subclass, or a function that imports one);
    ``None`` uses ``DeployerImpl`` itself, which speaks the whole command contract.
    """

    name: str
    factory: Callable[..., Any] | None = None
    description: str = ""
    cli: Any = None


@attrs.frozen
class StorageBackendSpec:
    """A storage backend a plugin offers (``flowkernel_storage_backends``).

    ``name`` is the URL scheme it serves (``"s3"`` for ``s3://bucket/prefix`` roots);
    ``factory(root)`` returns a :class:`flowkernel.storage.StorageBackend` for one normalized
    root. The kernel serves plain paths and ``file://`` itself (the ``file`` scheme).
    """

    name: str
    factory: Callable[..., Any]
    description: str = ""


@attrs.frozen
class RunInfo:
    """Identity of one run, as event hooks and log sinks see it."""

    flow_name: str
    run_id: str
    datastore_root: str
    runtime: str = "local"
    origin_run_id: str | None = None
    tags: tuple[str, ...] = ()
    #: ``--max-log-size``: the stored log of each stream of each attempt keeps at most this
    #: many megabytes, then one truncation line (:data:`flowkernel.engine.logs.TRUNCATED`)
    max_log_size: int = 10


@attrs.frozen
class TaskInfo:
    """One finished task attempt (``flowkernel_task_finished``)."""

    run: RunInfo
    step: str
    task_id: str
    attempt: int
    success: bool
    returncode: int | None = None
    will_retry: bool = False
    cloned: bool = False


@attrs.frozen
class RunResult:
    """How a run ended (``flowkernel_run_finished``)."""

    run: RunInfo
    success: bool
    message: str = ""
    failed_steps: tuple[str, ...] = ()


@attrs.frozen
class LogLine:
    """One line of a task's output as the controller read it; ``text`` has no trailing newline."""

    run: RunInfo
    step: str
    task_id: str
    attempt: int
    stream: str  #: "stdout" or "stderr"
    text: str
    timestamp: float
    pid: int | None = None
    #: False for a last line the task did not end with a newline (its output ended there)
    newline: bool = True


@attrs.frozen
class PluginRecord:
    """What the kernel knows about one plugin (``flow plugins`` prints these)."""

    name: str
    status: str  #: "loaded", "blocked", "failed" or "builtin"
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    hooks: tuple[str, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)
