"""Metaflow's exception names are importable from flowkernel and flowkernel.exception, and catch
what flowkernel raises."""

from __future__ import annotations

import pytest

import flowkernel
import flowkernel.exception as exc_mod
from flowkernel import errors


@pytest.mark.parametrize("name", exc_mod.METAFLOW_NAMES)
def test_every_name_is_an_exception_importable_from_both_places(name):
    from_pkg = getattr(flowkernel, name)
    assert from_pkg is getattr(exc_mod, name)
    if name != "MetaflowExceptionWrapper":
        assert issubclass(from_pkg, Exception)
        assert issubclass(from_pkg, flowkernel.MetaflowException)


def test_the_old_names_stay_and_are_the_same_classes():
    assert flowkernel.MetaflowException is errors.FlowkernelError
    assert flowkernel.MetaflowNotFound is errors.NotFoundError
    assert flowkernel.MetaflowNamespaceMismatch is errors.NamespaceMismatchError
    assert flowkernel.UnhandledInMergeArtifactsException is errors.UnhandledInMergeArtifactsError
    assert flowkernel.MissingInMergeArtifactsException is errors.MissingInMergeArtifactsError


def test_client_errors_are_caught_by_metaflow_names(tmp_path):
    from flowkernel import Flow, Run, metadata
    from flowkernel.exception import MetaflowInvalidPathspec, MetaflowNotFound

    metadata(str(tmp_path))
    try:
        with pytest.raises(MetaflowNotFound):
            Flow("NoSuchFlow")
        with pytest.raises(MetaflowInvalidPathspec):
            Run("only-one-part")
    finally:
        from flowkernel import client

        client._root = None


def test_a_merge_conflict_is_an_unhandled_in_merge_artifacts_exception(tmp_path):
    """The join catches the conflict by Metaflow's name and records what it saw."""
    flow = tmp_path / "conflict.py"
    flow.write_text(
        "from flowkernel import FlowSpec, step\n"
        "from flowkernel.exception import UnhandledInMergeArtifactsException\n"
        "class ConflictFlow(FlowSpec):\n"
        "    @step\n"
        "    def start(self):\n"
        "        self.next(self.a, self.b)\n"
        "    @step\n"
        "    def a(self):\n"
        "        self.x = 1\n"
        "        self.next(self.join)\n"
        "    @step\n"
        "    def b(self):\n"
        "        self.x = 2\n"
        "        self.next(self.join)\n"
        "    @step\n"
        "    def join(self, inputs):\n"
        "        try:\n"
        "            self.merge_artifacts(inputs)\n"
        "        except UnhandledInMergeArtifactsException as exc:\n"
        "            self.conflicts = exc.artifact_names\n"
        "        self.next(self.end)\n"
        "    @step\n"
        "    def end(self):\n"
        "        pass\n"
    )
    from flowkernel.kernel import Kernel

    run = Kernel.discover().run(str(flow), datastore_root=str(tmp_path / "ds"))
    assert run.successful
    assert run["join"].task.data.conflicts == ["x"]
