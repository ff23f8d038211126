"""The kqueue poller, where kqueue exists; it declines on Linux."""

from __future__ import annotations

import os
import select
import sys

import pytest


@pytest.mark.skipif(not hasattr(select, "kqueue"), reason="kqueue is not available here")
def test_reports_data_and_eof():
    from flowkernel_procpoll_darwin.poller import KqueuePoller

    poller = KqueuePoller()
    r, w = os.pipe()
    poller.register(r, "task")
    assert poller.poll(0) == []
    os.write(w, b"x\n")
    assert poller.poll(1) == ["task"]
    os.read(r, 10)
    os.close(w)
    assert poller.poll(1) == ["task"]
    poller.unregister(r)
    poller.close()
    os.close(r)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks the Linux decline")
def test_declines_on_linux():
    from flowkernel_procpoll_darwin.hooks import flowkernel_make_poller

    assert flowkernel_make_poller() is None
