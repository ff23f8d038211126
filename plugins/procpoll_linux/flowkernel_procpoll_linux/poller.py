"""epoll poller: one syscall per wake-up however many task pipes are open."""

from __future__ import annotations

import select
from typing import Any


class EpollPoller:
    """A :class:`~flowkernel.engine.poller.Poller` on ``select.epoll`` (level-triggered)."""

    name = "epoll"
    _MASK = select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR

    def __init__(self) -> None:
        self._ep = select.epoll()
        self._keys: dict[int, Any] = {}

    def register(self, fd: int, key: Any) -> None:
        self._ep.register(fd, self._MASK)
        self._keys[fd] = key

    def unregister(self, fd: int) -> None:
        self._ep.unregister(fd)
        del self._keys[fd]

    def poll(self, timeout: float | None) -> list[Any]:
        events = self._ep.poll(-1 if timeout is None else timeout)
        return [self._keys[fd] for fd, _ in events if fd in self._keys]

    def fileno(self) -> int:
        """The epoll's descriptor (a forked task must not hold it)."""
        return self._ep.fileno()

    def close(self) -> None:
        self._ep.close()
