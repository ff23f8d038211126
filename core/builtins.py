"""The kernel's built-in plugin: fallbacks that are always present and cannot be blocked."""

from __future__ import annotations

from typing import Any

from flowkernel.hookspecs import hookimpl


@hookimpl(trylast=True)
def flowkernel_make_poller() -> Any:
    """The portable ``selectors`` poller, used when no platform plugin offers one."""
    from flowkernel.engine.poller import SelectorsPoller

    return SelectorsPoller()


@hookimpl
def flowkernel_log_sinks(run: Any) -> list[Any]:
    """The console echo and the per-attempt logs in the datastore."""
    from flowkernel.engine.logs import ConsoleSink, TaskLogFiles, TaskLogUploads
    from flowkernel.storage import is_local_root

    store_logs = TaskLogFiles if is_local_root(run.datastore_root) else TaskLogUploads
    return [ConsoleSink(), store_logs(run)]


@hookimpl
def flowkernel_task_finished(task: Any) -> None:
    """A remote store gets the attempt's complete logs as soon as it ends."""
    from flowkernel.engine.logs import attempt_finished

    attempt_finished(task.run, task.step, task.task_id, task.attempt)


@hookimpl
def flowkernel_storage_backends() -> list[Any]:
    """The local filesystem (plain paths and ``file://`` roots)."""
    from flowkernel.specs import StorageBackendSpec
    from flowkernel.storage.local import LocalBackend

    return [StorageBackendSpec("file", LocalBackend, "files under a local directory")]
