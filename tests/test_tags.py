"""User tags change after (and during) a run: add, remove, replace, from Python and from the
command line, safely from several processes at once; system tags never change."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowkernel import Flow, Run, namespace
from flowkernel.client import metadata
from flowkernel.errors import TaggingError
from flowkernel.kernel import Kernel

FLOWS = Path(__file__).parent / "flows"
HELLO = Path(__file__).parents[1] / "examples" / "hello.py"


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / "ds")
    metadata(root)
    namespace(None)
    yield root
    from flowkernel import client

    client._root = None
    client._namespace = client._UNSET


@pytest.fixture
def run(root):
    made = Kernel.discover().run(str(HELLO), datastore_root=root, tags=["nightly"], times=1)
    return Run(made.pathspec)


def test_add_remove_replace(run):
    run.add_tag("刺身 means sashimi")
    run.add_tags(["a", "b", b"bytes are decoded"])
    assert run.user_tags == {"nightly", "刺身 means sashimi", "a", "b", "bytes are decoded"}
    run.remove_tag("a")
    run.remove_tags(["b", "not there"])
    run.replace_tag("nightly", "weekly")
    run.replace_tags(["weekly"], ["x", "y"])
    assert run.user_tags == {"刺身 means sashimi", "bytes are decoded", "x", "y"}
    again = Run(run.pathspec)  # a fresh object reads the same
    assert again.user_tags == run.user_tags
    assert again.tags == run.user_tags | run.system_tags


def test_steps_tasks_and_artifacts_report_the_runs_tags(run):
    run.add_tag("late")
    fresh = Run(run.pathspec)
    task = fresh["start"].task
    for obj in (fresh["start"], task, task["name"]):
        assert obj.tags == fresh.tags and "late" in obj.user_tags


def test_system_tags_are_protected(run):
    system = set(run.system_tags)
    user_tag = next(t for t in system if t.startswith("user:"))
    run.add_tag(user_tag)  # adding a system tag changes nothing
    assert user_tag not in run.user_tags
    with pytest.raises(TaggingError, match="system tags cannot be removed"):
        run.replace_tags([user_tag, "nightly"], ["new"])
    assert run.user_tags == {"nightly"}  # nothing changed
    assert run.system_tags == system


@pytest.mark.parametrize(
    ("bad", "match"),
    [("", "empty"), ("x" * 501, "longer than 500"), (7, "string"), (b"\xff\xfe", "UTF-8")],
)
def test_bad_tags_are_rejected_and_change_nothing(run, bad, match):
    with pytest.raises(TaggingError, match=match):
        run.add_tags(["fine", bad])
    assert run.user_tags == {"nightly"}


def test_empty_replace_and_too_many_tags(run):
    with pytest.raises(TaggingError, match="nothing to change"):
        run.replace_tags([], [])
    with pytest.raises(TaggingError, match="list of tags"):
        run.add_tags("single")
    with pytest.raises(TaggingError, match="at most 50"):
        run.add_tags([f"t{i}" for i in range(50)])
    run.add_tags([])  # nothing to do is fine for add/remove
    assert run.user_tags == {"nightly"}


def test_new_tags_work_as_namespaces_and_filters(run):
    run.add_tag("release")
    namespace("release")
    assert Flow("HelloFlow").latest_run.id == run.id
    namespace(None)
    assert [r.id for r in Flow("HelloFlow").runs("release")] == [run.id]


def _add_many(root: str, pathspec: str, worker: int) -> None:
    metadata(root)
    namespace(None)
    target = Run(pathspec)
    for i in range(8):
        target.add_tag(f"w{worker}-{i}")
    target.remove_tag(f"w{worker}-0")


def test_concurrent_changes_from_several_processes_are_all_kept(run, root):
    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    procs = [ctx.Process(target=_add_many, args=(root, run.pathspec, w)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    expected = {f"w{w}-{i}" for w in range(4) for i in range(1, 8)} | {"nightly"}
    assert Run(run.pathspec).user_tags == expected


def test_a_running_flow_can_tag_its_own_run(root):
    made = Kernel.discover().run(str(FLOWS / "mfapi/self_tagging_flow.py"), datastore_root=root)
    assert "tagged-by-start" in Run(made.pathspec).user_tags
    assert made["end"].task.data.tags_seen == ["tagged-by-start"]


def _cli(root, *args, flow=None):
    cmd = [sys.executable, str(flow), *args] if flow else [sys.executable, "-m", "flowkernel.cli"]
    if not flow:
        cmd += ["--datastore-root", root, *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    env["FLOWKERNEL_DATASTORE_ROOT"] = root
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def test_the_tag_command(run, root):
    rid = run.id
    result = _cli(root, "tag", "add", "--run-id", rid, "one", "two words", flow=HELLO)
    assert result.returncode == 0, result.stderr
    assert "one, two words" in result.stdout
    result = _cli(root, "tag", "replace", "--run-id", f"HelloFlow/{rid}", "--remove", "one",
                  "--add", "three")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _cli(root, "tag", "remove", str(HELLO), "--run-id", rid, "nightly").returncode == 0
    flat = _cli(root, "tag", "list", "--run-id", rid, "--flat", "--hide-system-tags", flow=HELLO)
    assert flat.returncode == 0, flat.stderr
    assert flat.stderr.splitlines()[1:] == ["three", "two words"]
    system = next(t for t in run.system_tags if t.startswith("user:"))
    bad = _cli(root, "tag", "remove", "--run-id", f"HelloFlow/{rid}", system)
    assert bad.returncode == 1 and "system tags cannot be removed" in bad.stderr
    assert Run(run.pathspec).user_tags == {"three", "two words"}
    listed = _cli(root, "tag", "list", str(HELLO), "--all")
    assert listed.returncode == 0 and f"Tags of HelloFlow/{rid}:" in listed.stdout


def test_tag_list_grouped_by_tag(run, root):
    Run(run.pathspec).add_tag("shared")
    other = Kernel.discover().run(str(HELLO), datastore_root=root, tags=["shared"], times=1)
    result = _cli(root, "tag", "list", str(HELLO), "--all", "--group-by-tag", "--hide-system-tags")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"shared: {other.id}, {run.id}" in lines  # runs newest first
    assert f"nightly: {run.id}" in lines
