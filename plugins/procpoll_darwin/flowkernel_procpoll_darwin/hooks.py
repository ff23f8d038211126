"""Entry point: offer :class:`KqueuePoller` where kqueue exists, except on Linux."""

from __future__ import annotations

import select
import sys
from typing import Any

from flowkernel import hookimpl


@hookimpl
def flowkernel_make_poller() -> Any:
    if sys.platform.startswith("linux") or not hasattr(select, "kqueue"):
        return None
    from flowkernel_procpoll_darwin.poller import KqueuePoller

    return KqueuePoller()
