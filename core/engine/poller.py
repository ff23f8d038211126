"""The poller contract and the kernel's portable fallback (``selectors``).

A runtime's controller watches every task's stdout/stderr pipe through a poller. Platform
plugins (procpoll_linux: epoll, procpoll_darwin: kqueue) return their own from
``flowkernel_make_poller``; this fallback is registered with ``trylast=True``.

A poller whose own descriptor a ``fork()`` inherits (epoll) also has ``fileno()``: the local
runtime closes it in every process it forks, so that no task holds it.
"""

from __future__ import annotations

import selectors
from typing import Any, Protocol


class Poller(Protocol):
    """Watches file descriptors for readability (EOF counts as readable)."""

    name: str

    def register(self, fd: int, key: Any) -> None:
        """Watch ``fd``; ``key`` is returned by :meth:`poll` when it is readable."""

    def unregister(self, fd: int) -> None:
        """Stop watching ``fd`` (before closing it)."""

    def poll(self, timeout: float | None) -> list[Any]:
        """Wait up to ``timeout`` seconds (None: forever) and return the keys that are ready."""

    def close(self) -> None:
        """Release the poller's own resources."""


class SelectorsPoller:
    """Portable poller over :mod:`selectors` (the best the platform offers)."""

    name = "selectors"

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()

    def register(self, fd: int, key: Any) -> None:
        self._sel.register(fd, selectors.EVENT_READ, key)

    def unregister(self, fd: int) -> None:
        self._sel.unregister(fd)

    def poll(self, timeout: float | None) -> list[Any]:
        return [k.data for k, _ in self._sel.select(timeout)]

    def fileno(self) -> int | None:
        """The selector's own descriptor (epoll, kqueue...), or None (select, poll)."""
        fileno = getattr(self._sel, "fileno", None)
        return None if fileno is None else fileno()

    def close(self) -> None:
        self._sel.close()
