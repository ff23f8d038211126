"""The line a runtime adds to a task's own stderr log when the task process dies of a signal."""

from __future__ import annotations

import signal

import pytest

from flowkernel.engine.logs import abnormal_end_line


@pytest.mark.parametrize(
    ("returncode", "stopped", "line"),
    [
        (-signal.SIGSEGV, False, "The task process died of a segmentation fault (SIGSEGV)."),
        (-signal.SIGKILL, False, "The task process was killed by SIGKILL."),
        (-signal.SIGABRT, False, "The task process was killed by SIGABRT."),
        (-signal.SIGTERM, True, "The task process was stopped by the runtime (SIGTERM)."),
        (-99, False, "The task process was killed by signal 99."),
    ],
)
def test_every_signal_is_named(returncode, stopped, line):
    assert abnormal_end_line(returncode, stopped) == line


@pytest.mark.parametrize("returncode", [None, 0, 1, 202])
def test_a_normal_exit_adds_nothing(returncode):
    assert abnormal_end_line(returncode) is None
