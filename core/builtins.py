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
    """The console echo and the per-attempt log files."""
    from flowkernel.engine.logs import ConsoleSink, TaskLogFiles

    return [ConsoleSink(), TaskLogFiles(run)]
