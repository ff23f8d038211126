"""The same flow gives the same results however it is started: `python flow.py run`,
`flow run flow.py`, and with `--isolation spawn` (a fresh interpreter per task)."""

from __future__ import annotations

import pytest


def snapshot(result) -> dict:
    """Every public artifact of every task, keyed by step and foreach index."""
    out = {}
    for step in result.run:
        for task in step:
            key = (step.id, task.index)
            assert key not in out
            out[key] = {name: getattr(task.data, name) for name in task.data}
    return out


@pytest.fixture(scope="module")
def reference(run_flow):
    return snapshot(run_flow("branch_in_foreach_flow.py", how="flow").assert_ok())


@pytest.mark.parametrize(
    ("how", "args"),
    [("script", ()), ("module", ("--isolation", "spawn"))],
)
def test_same_results_however_the_flow_is_started(run_flow, reference, how, args):
    result = run_flow("branch_in_foreach_flow.py", *args, how=how).assert_ok()
    assert result.run.successful
    assert snapshot(result) == reference
    assert reference[("outer_join", None)]["pairs"] == [(6, 50), (3, 20), (9, 80)]
    assert len([k for k in reference if k[0] == "p"]) == 3


def test_spawned_tasks_read_artifacts_and_parameters(run_flow):
    result = run_flow("artifacts_flow.py", "--alpha", "9", "--isolation", "spawn").assert_ok()
    assert result.data("end").end_sees == (42, 9, "b", "ArtifactsFlow")
    assert result.data("a2").items_in_a2 == [1, 2]
    assert result.data("a2").point.y == 2
