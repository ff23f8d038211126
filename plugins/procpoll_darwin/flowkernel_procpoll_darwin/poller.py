"""kqueue poller: EVFILT_READ on every task pipe (EOF is reported as readable)."""

from __future__ import annotations

import select
from typing import Any


class KqueuePoller:
    """Implements :class:`flowkernel.engine.poller.Poller` with ``select.kqueue``."""

    name = "kqueue"

    def __init__(self) -> None:
        self._kq = select.kqueue()
        self._keys: dict[int, Any] = {}

    def register(self, fd: int, key: Any) -> None:
        event = select.kevent(fd, select.KQ_FILTER_READ, select.KQ_EV_ADD)
        self._kq.control([event], 0)
        self._keys[fd] = key

    def unregister(self, fd: int) -> None:
        event = select.kevent(fd, select.KQ_FILTER_READ, select.KQ_EV_DELETE)
        self._kq.control([event], 0)
        del self._keys[fd]

    def poll(self, timeout: float | None) -> list[Any]:
        events = self._kq.control(None, max(len(self._keys), 1), timeout)
        return [self._keys[e.ident] for e in events if e.ident in self._keys]

    def close(self) -> None:
        self._kq.close()
