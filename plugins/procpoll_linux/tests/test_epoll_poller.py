"""The epoll poller reports readable pipes and EOF, and the kernel picks it on Linux."""

from __future__ import annotations

import os
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="epoll is Linux-only")


def test_reports_data_and_eof():
    from flowkernel_procpoll_linux.poller import EpollPoller

    poller = EpollPoller()
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    poller.register(r1, "one")
    poller.register(r2, "two")
    assert poller.poll(0) == []
    os.write(w2, b"line\n")
    assert poller.poll(1) == ["two"]
    assert os.read(r2, 100) == b"line\n"
    os.close(w1)  # EOF counts as readable
    assert poller.poll(1) == ["one"]
    assert os.read(r1, 100) == b""
    poller.unregister(r1)
    assert poller.poll(0) == []
    poller.close()
    for fd in (r1, r2, w2):
        os.close(fd)


def test_kernel_chooses_epoll():
    from flowkernel.kernel import Kernel

    kernel = Kernel.discover(only=["procpoll_linux", "procpoll_darwin"])
    assert kernel.make_poller().name == "epoll"
    assert Kernel.discover(only=[]).make_poller().name == "selectors"
