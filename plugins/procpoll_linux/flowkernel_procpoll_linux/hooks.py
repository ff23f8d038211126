"""Entry point: offer :class:`EpollPoller` on Linux, decline elsewhere."""

from __future__ import annotations

import sys
from typing import Any

from flowkernel import hookimpl


@hookimpl
def flowkernel_make_poller() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    from flowkernel_procpoll_linux.poller import EpollPoller

    return EpollPoller()
