"""``current`` built on first use (the executor's ``_set_lazy``): what a task sees is what
``_set`` would have given it, and nothing is built for a task that never reads it."""

from __future__ import annotations

import pytest

from flowkernel.flow.current import Current


def test_a_lazy_context_reads_as_the_eager_one():
    calls = []

    def source():
        calls.append(1)
        return {"flow_name": "F", "run_id": "1", "step_name": "s", "task_id": "7", "tags": ["t"]}

    lazy, eager = Current(), Current()
    lazy._set_lazy(source)
    eager._set(**source())
    calls.clear()
    assert calls == []  # nothing built yet
    for name in ("flow_name", "run_id", "step_name", "task_id", "tags", "namespace"):
        assert getattr(lazy, name) == getattr(eager, name)
    assert lazy.pathspec == eager.pathspec == "F/1/s/7"
    assert lazy.is_running_flow and lazy.get("tags") == ["t"] and "run_id" in lazy
    assert repr(lazy) == repr(eager)
    assert calls == [1]  # built once
    with pytest.raises(AttributeError, match="current has no attribute 'nope'"):
        lazy.nope  # noqa: B018
    with pytest.raises(AttributeError, match="current has no attribute '_nope'"):
        lazy._nope  # noqa: B018


def test_clearing_a_lazy_context_that_was_never_read():
    cur = Current()
    cur._set_lazy(lambda: {"flow_name": "F"})
    cur._clear()
    assert not cur.is_running_flow and cur.flow_name is None and cur.pathspec is None
