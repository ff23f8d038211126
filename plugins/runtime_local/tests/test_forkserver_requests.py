"""The fork server's launch requests: a task's input records reach the server once for all
the tasks that share them, the server decodes them and preloads the foreach chunk before the
fork, and whatever the server does not have (large records, a request it could not prepare)
the task still gets right: it decodes the request itself or reads its inputs from the
datastore."""

from __future__ import annotations

import itertools
import types

import attrs
import pytest

from flowkernel.datastore import FlowStore
from flowkernel.engine.executor import TaskSpec
from flowkernel.engine.records import TaskRecord
from flowkernel.flow import flowspec
from flowkernel.flow.flowspec import ForeachChunks
from flowkernel_runtime_local import controller
from flowkernel_runtime_local.controller import _Controller
from flowkernel_runtime_local.forkserver import MAX_REQUEST


def _controller(store):
    """The parts of a controller (and of the fork server forked from it) that requests use."""
    ctx = types.SimpleNamespace(flow_cls=flowspec.FlowSpec, graph=None, store=store)
    ctl = types.SimpleNamespace(
        ctx=ctx,
        committer=None,
        _last_inputs=None,
        _input_ids=itertools.count(1),
        _decoded={},
        _preloaded=(0, range(0)),
    )
    ctl.encode = lambda spec, inputs: _Controller._encode_request(ctl, spec, inputs)
    return ctl


@pytest.fixture
def store(tmp_path):
    return FlowStore(str(tmp_path), "F")


@pytest.fixture
def ran(monkeypatch):
    calls = []
    monkeypatch.setattr(controller, "run_task", lambda *args: calls.append(args[3:5]) or 0)
    return calls


def _parent(store, items=200, artifacts=None):
    shas = tuple(store.save("items", list(range(i, i + 64)))[0] for i in range(0, items, 64))
    chunks = ForeachChunks("items", store.save("items", list(range(items)))[0], 64, shas)
    return TaskRecord(
        flow="F", run_id="1", step="start", task_id="1", attempt=0, success=True, task_ok=True,
        artifacts=artifacts or {}, foreach_chunks=chunks,
    )  # fmt: skip


def _spec(i):
    return TaskSpec("F", "1", "body", str(i + 2), 0, ("start/1/0",), "/r", split_index=i)


def test_records_go_once_and_every_task_gets_its_spec_and_records(store, ran, monkeypatch):
    ctl = _controller(store)
    server = _controller(store)  # the fork server: a fork of the controller
    parent = _parent(store)
    loads = []
    monkeypatch.setattr(flowspec, "_CHUNKS", {})
    real_load = store.load
    monkeypatch.setattr(store, "load", lambda sha, *a: loads.append(sha) or real_load(sha, *a))
    requests = [ctl.encode(_spec(i), (parent,)) for i in range(130)]
    assert len(requests[1]) < len(requests[0]) - 100  # the records went with the first only
    for i, request in enumerate(requests):
        prepared = _Controller._prepare_request(server, memoryview(request))
        _Controller._run_request(server, prepared)
        assert ran[-1] == (_spec(i), (parent,))
    assert loads == list(parent.foreach_chunks.shas[:3])  # tasks 0-129: each chunk loaded once
    assert set(flowspec._CHUNKS) == set(parent.foreach_chunks.shas[:3])
    # the task decodes a request the server could not prepare (or never saw the records of)
    _Controller._run_request(server, requests[5])
    assert ran[-1] == (_spec(5), None)  # its records are read from the datastore
    _Controller._run_request(server, requests[0])
    assert ran[-1] == (_spec(0), (parent,))
    fresh = _controller(store)
    _Controller._run_request(fresh, _Controller._prepare_request(fresh, memoryview(requests[7])))
    assert ran[-1] == (_spec(7), None)


def test_large_records_are_not_sent_the_task_reads_them(store, ran):
    ctl = _controller(store)
    big = {f"a{i}": f"{i:040x}" for i in range(MAX_REQUEST // 60)}
    parent = _parent(store, artifacts=big)
    request = ctl.encode(_spec(3), (parent,))
    assert len(request) < 1000
    server = _controller(store)
    _Controller._run_request(server, _Controller._prepare_request(server, memoryview(request)))
    assert ran[-1] == (_spec(3), None)


def _refs(count):
    return tuple(
        TaskRecord(
            flow="F", run_id="1", step="body", task_id=str(i + 2), attempt=0, success=True,
            task_ok=True,
        ).ref()
        for i in range(count)
    )  # fmt: skip


@pytest.mark.parametrize("count, sent", [(20, True), (1000, False)])
def test_a_join_gets_its_inputs_from_the_server_unless_they_are_many(store, ran, count, sent):
    ctl = _controller(store)
    refs = _refs(count)
    spec = TaskSpec("F", "1", "join", "900", 0, tuple(r.path for r in refs), "/r")
    request = ctl.encode(spec, refs)
    assert len(request) < MAX_REQUEST
    server = _controller(store)
    _Controller._run_request(server, _Controller._prepare_request(server, memoryview(request)))
    assert ran[-1] == (spec, refs if sent else None)  # None: the join reads them from the store


def test_every_field_of_the_spec_reaches_the_task(store, ran):
    spec = TaskSpec(
        flow_name="F", run_id="1", step="body", task_id="7", attempt=2, input_paths=("start/1/0",),
        datastore_root="/r", split_index=5, max_user_code_retries=3, origin_run_id="0",
        user="ann", tags=("a", "b"), namespace="user:ann", num_parallel=4, max_num_splits=99,
        ubf_context="ubf_task", code_package="F/abc",
    )  # fmt: skip
    assert all(getattr(spec, f.name) != f.default for f in attrs.fields(TaskSpec))
    server = _controller(store)
    request = _controller(store).encode(spec, (_parent(store),))
    _Controller._run_request(server, _Controller._prepare_request(server, memoryview(request)))
    _Controller._run_request(server, request)  # decoded by the task itself
    assert ran[-2][0] == spec and ran[-1][0] == spec
