"""The client API over real runs: lookup, ordering, namespaces, attempts and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowkernel import DataArtifact, Flow, Metaflow, Run, Step, Task, namespace
from flowkernel.client import default_namespace, get_namespace, metadata
from flowkernel.errors import InvalidPathspecError, NamespaceMismatchError, NotFoundError
from flowkernel.kernel import Kernel

FLOWS = Path(__file__).parent / "flows" / "runner"
HELLO = Path(__file__).parents[1] / "examples" / "hello.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs of HelloFlow (alice twice, bob once; one of alice's tagged) and a failed run."""
    import os

    root = str(tmp_path_factory.mktemp("client") / "ds")
    kernel = Kernel.discover()
    made = {}
    saved = os.environ.get("FLOWKERNEL_USER")
    try:
        for key, user, tags, times in (
            ("alice1", "alice", ("nightly",), 1),
            ("bob", "bob", (), 2),
            ("alice2", "alice", (), 3),
        ):
            os.environ["FLOWKERNEL_USER"] = user
            made[key] = kernel.run(str(HELLO), datastore_root=root, tags=tags, times=times).id
        os.environ["FLOWKERNEL_USER"] = "alice"
        made["failed"] = kernel.run(str(FLOWS / "failing_flow.py"), datastore_root=root).id
    finally:
        if saved is None:
            os.environ.pop("FLOWKERNEL_USER", None)
        else:
            os.environ["FLOWKERNEL_USER"] = saved
    yield root, made


@pytest.fixture
def as_alice(runs, monkeypatch):
    root, made = runs
    metadata(root)
    monkeypatch.setenv("FLOWKERNEL_USER", "alice")
    default_namespace()
    return made


def test_runs_are_newest_first_and_filtered_by_tag(as_alice):
    flow = Flow("HelloFlow")
    assert [r.id for r in flow.runs()] == [as_alice["alice2"], as_alice["alice1"]]
    assert [r.id for r in flow.runs("nightly")] == [as_alice["alice1"]]
    assert flow.latest_run.id == as_alice["alice2"]
    assert flow.latest_successful_run.id == as_alice["alice2"]
    assert "nightly" in flow[as_alice["alice1"]].tags
    assert "user:alice" in flow[as_alice["alice1"]].system_tags


def test_namespaces_hide_other_users_runs(as_alice):
    assert get_namespace() == "user:alice"
    with pytest.raises(NamespaceMismatchError):
        Run(f"HelloFlow/{as_alice['bob']}")
    namespace("user:bob")
    assert [r.id for r in Flow("HelloFlow").runs()] == [as_alice["bob"]]
    namespace(None)
    assert len(list(Flow("HelloFlow").runs())) == 3
    assert {f.id for f in Metaflow()} == {"HelloFlow", "FailingFlow"}


def test_objects_by_pathspec_and_their_children(as_alice):
    run = Run(f"HelloFlow/{as_alice['alice2']}")
    assert [s.id for s in run] == ["end", "shout", "start"]  # newest first, _parameters hidden
    step = Step(f"{run.pathspec}/shout")
    task = step.task
    assert Task(task.pathspec).data.greetings == ["hello, world!"] * 3
    assert DataArtifact(f"{task.pathspec}/greetings").data == task["greetings"].data
    assert task["greetings"].sha == DataArtifact(f"{task.pathspec}/greetings").sha
    assert "greetings" in task.data and "nope" not in task.data
    assert "shout" in run and "nope" not in run
    assert [p.pathspec for p in task.parent_tasks] == [run["start"].task.pathspec]
    assert run.parameters == {"name_to_greet": "world", "times": 3}
    assert run.finished_at is not None and run.created_at <= run.finished_at


def test_a_failed_run_reads_back_as_failed(as_alice):
    run = Flow("FailingFlow").latest_run
    assert run.id == as_alice["failed"]
    assert not run.successful and not run.finished and run.end_task is None
    boom = run["boom"].task
    assert not boom.finished and not boom.successful
    assert boom.exception.type == "builtins.KeyError"
    assert boom.exception.exception == "'Something has gone wrong'"  # str() of the KeyError
    assert run["start"].task.data.before == "kept"
    assert Flow("FailingFlow").latest_successful_run is None


def test_bad_pathspecs_and_missing_objects_are_clear_errors(as_alice):
    with pytest.raises(InvalidPathspecError):
        Run("HelloFlow")
    with pytest.raises(NotFoundError):
        Flow("NoSuchFlow")
    with pytest.raises(NotFoundError):
        Run("HelloFlow/123")
    with pytest.raises(KeyError):
        Flow("HelloFlow")["123"]
    task = Run(f"HelloFlow/{as_alice['alice2']}")["end"].task
    with pytest.raises(KeyError):
        task["nope"]
    with pytest.raises(AttributeError, match="no artifact 'nope'"):
        _ = task.data.nope
