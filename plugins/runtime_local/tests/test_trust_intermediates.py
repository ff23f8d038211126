"""The intermediate children of the helpers' double forks are reaped by the process that forked
them, never by a process forked from it (a fork server, a task, a run nested in a step), which
inherits the list: there a pid may belong to one of its own children by then."""

from __future__ import annotations

import os

from flowkernel_runtime_local import workers


def test_a_forked_process_never_waits_for_its_parents_intermediate_children():
    intermediate = os.fork()
    if intermediate == 0:  # pragma: no cover - the "intermediate child": exits at once
        os._exit(0)
    workers.reap_later(intermediate)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - a process forked while the pid is listed
        waited = []
        real = os.waitpid
        os.waitpid = lambda pid, options: waited.append(pid) or real(pid, options)
        try:
            workers.reap_intermediates()
        finally:
            os.write(write, repr(waited).encode())
            os._exit(0)
    os.close(write)
    assert os.waitpid(child, 0)[1] == 0
    with os.fdopen(read) as pipe:
        assert pipe.read() == "[]"  # (a pid of its own children could wait or be stolen)
    workers.reap_intermediates()  # the parent, which forked it, does reap it
    assert workers._intermediates == []
    try:
        os.waitpid(intermediate, os.WNOHANG)
        raise AssertionError("the intermediate child was not reaped")
    except ChildProcessError:
        pass
