"""What becomes an artifact and who can change it; classes defined in a flow file."""

from __future__ import annotations

import pytest

READONLY = ["CONST", "LIST_CONST", "alpha", "beta", "lower_const", "name"]


@pytest.fixture(scope="module")
def arts(run_flow):
    return run_flow("artifacts_flow.py").assert_ok()


def test_underscore_artifacts_are_stored_but_hidden(arts):
    task = arts.task("start")
    assert task["_hidden"].data == "underscore"
    assert "_hidden" not in task.data  # hidden, as in Metaflow
    assert "_hidden" not in list(task.data)
    assert all(not a.id.startswith("_") for a in task)
    assert "visible" in list(task.data)
    assert arts.data("a").hidden_seen == "underscore"  # and inherited like any other


def test_constants_and_parameters_are_read_only_everywhere(arts):
    errors = arts.data("start").readonly_errors
    assert sorted(errors) == READONLY
    assert all("not modifiable" in message for message in errors.values())
    assert arts.data("join").join_readonly_errors == READONLY


def test_constants_and_parameters_are_visible_everywhere(arts):
    values = {"CONST": 42, "lower_const": "lower", "alpha": 5, "beta": "b"}
    values.update(name="ArtifactsFlow", LIST_CONST=[1, 2])
    for step in ("start", "a", "a2", "b", "join", "end"):
        data = arts.data(step)
        assert {k: getattr(data, k) for k in values} == values, step
    assert arts.data("join").join_sees == values
    assert arts.data("end").end_sees == (42, 5, "b", "ArtifactsFlow")
    # a constant mutated in place inside a step is not persisted
    assert arts.data("start").LIST_CONST == [1, 2]


def test_parameter_names_lists_parameter_attributes_only(arts):
    assert arts.data("start").param_names == ["alpha", "beta"]


def test_in_place_mutation_of_an_inherited_artifact(arts):
    assert arts.data("start").items == [1]  # the parent's copy is unchanged
    assert arts.data("a").items == [1, 2]
    assert arts.data("a2").items_in_a2 == [1, 2]  # ... and successors see the change
    assert arts.data("b").items_in_b == [1]
    assert arts.data("join").items_by_branch == ([1, 2], [1])


@pytest.mark.parametrize("how", ["script", "module"])
def test_class_defined_in_the_flow_file_reads_back_in_another_process(
    run_flow, read_in_subprocess, shared_root, how
):
    result = run_flow("artifacts_flow.py", how=how).assert_ok()
    code = (
        "from flowkernel import Run\n"
        f"run = Run('ArtifactsFlow/{result.run_id}')\n"
        "point = run['start'].task.data.point\n"
        "print(type(point).__name__, point.x, point.y, repr(point))\n"
        "print(run['a2'].task.data.point.y)\n"
    )
    # the class was pickled under the module the flow ran as, which a reader cannot import
    from flowkernel.datastore import FlowStore

    sha = result.task("start")["point"].sha
    pickled = FlowStore(str(shared_root), "ArtifactsFlow").inline_blob(sha)  # small: inline
    assert (b"__main__" if how == "script" else b"artifacts_flow") in pickled
    out = read_in_subprocess(shared_root, code)
    assert out.splitlines() == ["Point 1 2 Point(1, 2)", "2"]
    # and in this process too
    point = result.data("a2").point
    assert (type(point).__name__, point.x, point.y) == ("Point", 1, 2)
