"""merge_artifacts: every rule of Metaflow's algorithm, read back through the client."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def merged(run_flow):
    return run_flow("merge_flow.py").assert_ok()


def test_conflicts_raise_and_assign_nothing(merged):
    join = merged.data("join_all")
    # 'num' is 1 in one branch and 1.0 in the other: equal values, different pickled bytes
    assert join.conflicts == ["conflict", "excluded", "num", "pre"]
    assert join.after_conflict == []  # all or nothing: not even the non-conflicting names
    assert join.after_missing == []


def test_include_and_exclude_together_is_an_error(merged):
    assert merged.data("join_all").both_error == "MergeArtifactsError"


def test_include_of_a_name_no_input_has(merged):
    assert merged.data("join_all").missing == ["not_anywhere"]


def test_calling_merge_artifacts_outside_a_join_is_an_error(merged):
    kind, message = merged.data("a").not_a_join
    assert kind == "MergeArtifactsError"
    assert "join" in message


def test_successful_merge_with_exclude_and_preset_values(merged):
    task = merged.task("join_all")
    data = task.data
    assert data.same == [1, 2] and data.merged_same == [1, 2]  # equal in both: no conflict
    assert (data.only_a, data.only_b) == ("A", "B")  # present in one input only: merged
    assert data.common == "same in both"
    assert (data.pre, data.conflict, data.num) == ("set in join", "resolved", 2)  # pre-set wins
    assert data.excluded_present is False
    assert "excluded" not in data
    # a user's underscore artifact is merged too (hidden from iteration, readable by name)
    assert task["_private"].data == "underscore"
    assert "_private" not in set(data)


def test_merged_artifacts_are_passed_by_reference(merged):
    join, a = merged.task("join_all"), merged.task("a")
    assert join["only_a"].sha == a["only_a"].sha


def test_include_merges_only_the_listed_names(merged):
    data = merged.data("join_include")
    # q differs between the inputs, but it is not included, so it is no conflict
    assert data.has == {"p": True, "q": False, "r": True, "pre": False, "only_a": False}
    assert (data.p, data.r) == ("p", "r")
    assert "q" not in data


def test_artifact_set_in_one_foreach_branch_is_merged(merged):
    data = merged.data("join_foreach")
    assert data.only_in_one == "branch 1"
    assert data.shared == "every branch"
    assert merged.data("end").only_in_one == "branch 1"
    assert sum("only_in_one" in t.data for t in merged.tasks("item")) == 1
