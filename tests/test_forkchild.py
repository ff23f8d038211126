"""flowkernel.engine.forkchild: what a forked task child does between fork() and its exit,
checked on real forked processes."""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil
import pytest

from flowkernel.engine import forkchild

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def _fork(body, **options):
    """Fork a child that runs ``forkchild.run(body, ...)``; (pid, stdout bytes, stderr bytes,
    exit code)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            close = (out_r, err_r, *options.pop("close", ()))
            forkchild.run(body, out_w, err_w, close=close, **options)
        finally:
            os._exit(99)  # never back into pytest
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
        stdout, stderr = out.read(), err.read()
    _, status = os.waitpid(pid, 0)
    return pid, stdout, stderr, os.waitstatus_to_exitcode(status)


def test_the_body_s_exit_code_and_output_reach_the_parent():
    def body():
        print("to stdout")
        print("to stderr", file=sys.stderr)
        return 3

    _, out, err, code = _fork(body)
    assert (out, err, code) == (b"to stdout\n", b"to stderr\n", 3)


def test_an_exception_is_printed_with_its_traceback_and_exits_1():
    def body():
        print("before")
        raise ValueError("broken step")

    _, out, err, code = _fork(body)
    assert code == 1 and out == b"before\n"
    assert b"Traceback" in err and b"ValueError: broken step" in err


@pytest.mark.parametrize(
    ("exc", "code", "err"),
    [(SystemExit(4), 4, b""), (SystemExit(None), 0, b""), (SystemExit("gave up"), 1, b"gave up\n")],
)
def test_system_exit_gives_its_code(exc, code, err):
    def body():
        raise exc

    assert _fork(body)[2:] == (err, code)


def test_the_child_leads_its_own_group_reads_dev_null_and_holds_no_closed_fd():
    spare_r, spare_w = os.pipe()

    def body():
        print(os.getpgrp() == os.getpid(), os.read(0, 16) == b"", flush=True)
        try:
            os.fstat(spare_w)
        except OSError:
            print("closed")
        return 0

    _, out, _, code = _fork(body, close=(spare_w,))
    os.close(spare_w)
    with os.fdopen(spare_r, "rb") as spare:
        assert spare.read() == b""  # EOF: the child did not hold the write end
    assert code == 0 and out == b"True True\nclosed\n"


def test_streams_made_before_the_fork_are_the_child_s():
    streams = forkchild.line_streams()

    def body():
        assert sys.stdout is streams[0] and sys.stderr is streams[1]
        sys.stdout.write("partial line, flushed at the exit")
        return 0

    _, out, _, code = _fork(body, streams=streams)
    assert code == 0 and out == b"partial line, flushed at the exit"


def test_undecodable_text_is_escaped_not_lost():
    _, out, _, code = _fork(lambda: print("bad \udcff byte"))
    assert code == 0 and out == b"bad \\udcff byte\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_dies_with_the_parent_it_names():
    forkchild.load_libc()
    ready_r, ready_w = os.pipe()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - the parent that dies
        os.close(ready_r)
        me = os.getpid()
        if os.fork() == 0:
            forkchild.run(lambda: time.sleep(60), ready_w, ready_w, parent=me, group=None)
        os.write(ready_w, b"%d\n" % me)
        time.sleep(60)
        os._exit(0)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        assert int(ready.readline()) == middle
        child = psutil.Process(middle).children()[0]
        os.kill(middle, signal.SIGKILL)
        os.waitpid(middle, 0)
        try:
            child.wait(10)  # psutil.TimeoutExpired if it outlives its parent
        except psutil.NoSuchProcess:
            pass


def test_sigint_raises_keyboard_interrupt_and_sigterm_terminates_whatever_the_parent_had():
    old = (
        signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.signal(signal.SIGTERM, signal.SIG_IGN),
    )

    def body():
        print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
        print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return 0

    try:
        _, out, _, code = _fork(body)
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])
    assert out == b"True\nTrue\ninterrupted\n" and code == -signal.SIGTERM
