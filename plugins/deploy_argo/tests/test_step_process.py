"""The process a deployed task runs its step in: a forked child of the task process, or a fresh
process where there is no fork. Every line either prints reaches the log sinks, in order per
stream, and its exit code comes back."""

from __future__ import annotations

import os
import sys

import pytest

from flowkernel_deploy_argo import step_process


class Sink:
    def __init__(self):
        self.lines = []
        self.closed = False

    def emit(self, line):
        self.lines.append((line.stream, line.text, line.step, line.attempt))

    def close(self):
        self.closed = True


def _body():
    print("one")
    print("two", file=sys.stderr)
    print("three")
    return 3


def _start(how):
    if how == "fork":
        return step_process.fork(_body)
    code = "import sys; print('one'); print('two', file=sys.stderr); print('three'); sys.exit(3)"
    return step_process.spawn([sys.executable, "-c", code])


@pytest.mark.parametrize("how", ["fork", "spawn"])
def test_the_step_s_lines_reach_the_sinks_and_its_exit_code_comes_back(how):
    sink = Sink()
    code = step_process.run_step(_start(how), [sink], None, "work", "t1", 2)
    assert code == 3 and sink.closed
    assert [line for line in sink.lines if line[0] == "stdout"] == [
        ("stdout", "one", "work", 2),
        ("stdout", "three", "work", 2),
    ]
    assert ("stderr", "two", "work", 2) in sink.lines


def test_a_forked_step_that_raises_or_is_killed_fails():
    sink = Sink()

    def boom():
        raise RuntimeError("the step blew up")

    assert step_process.run_step(step_process.fork(boom), [sink], None, "s", "t", 0) == 1
    assert any("RuntimeError: the step blew up" in text for _, text, _, _ in sink.lines)

    def killed():
        os.kill(os.getpid(), 9)
        return 0

    assert step_process.run_step(step_process.fork(killed), [sink], None, "s", "t", 0) == -9
