"""Every flow shape runs, and its artifacts read back through the client with Metaflow's values."""

from __future__ import annotations

import itertools

import pytest


def _ok(run_flow, name, *args):
    return run_flow(name, *args).assert_ok()


@pytest.fixture(scope="module")
def linear(run_flow):
    return _ok(run_flow, "linear_flow.py")


@pytest.fixture(scope="module")
def branch(run_flow):
    return _ok(run_flow, "branch_flow.py")


@pytest.fixture(scope="module")
def foreach(run_flow):
    return _ok(run_flow, "foreach_flow.py")


@pytest.fixture(scope="module")
def nested_foreach(run_flow):
    return _ok(run_flow, "nested_foreach_flow.py")


def test_linear_artifacts_flow_down_the_chain(linear):
    run = linear.run
    assert run.successful and run.finished
    assert linear.data("start").x == 1
    assert linear.data("a").x == 2
    assert linear.data("end").x == 2  # inherited unchanged
    assert linear.data("end").seen == ["start", "a", "end"]
    assert run.data.seen == ["start", "a", "end"]
    assert {s.id for s in run} == {"start", "a", "end"}


def test_branch_join_reads_inputs_by_step_name(branch):
    join = branch.data("join")
    assert (join.from_a, join.from_b) == (11, 12)
    assert join.input_vals == [11, 12]
    assert join.indexed == [11, 12]
    assert join.n_inputs == 2
    assert branch.data("end").total == 23


def test_join_inherits_nothing_but_parameters_and_constants(branch):
    join = branch.data("join")
    # reading an unmerged branch artifact in a join is an AttributeError naming it
    assert set(join.errors) == {"only_a", "base", "val"}
    for name, message in join.errors.items():
        assert f"'{name}'" in message
    names = set(branch.data("join"))
    assert "base" not in names and "only_a" not in names and "val" not in names
    # parameters, constants and name pass through the join
    assert join.join_sees == (7, 3, "BranchFlow")
    assert {"CONST", "alpha", "name"} <= names
    end = branch.data("end")
    assert (end.CONST, end.alpha, end.name) == (7, 3, "BranchFlow")


def test_nested_branches(run_flow):
    result = _ok(run_flow, "nested_branches_flow.py")
    leaves = result.data("join").leaves
    names = [a + b + c for a in "ab" for b in "ab" for c in "ab"]
    assert [name for _, name in leaves] == names
    # every leaf inherited the path of the splits above it
    for path, name in leaves:
        assert path == ("start", name[0], name[:2])
    assert result.data("end").leaf_names == names
    assert result.data("join_ab").leaves == [
        (("start", "a", "ab"), "aba"),
        (("start", "a", "ab"), "abb"),
    ]
    steps = {s.id for s in result.run}
    assert len(steps) == 1 + 2 + 4 + 8 + 4 + 2 + 1 + 1


VALUES = [(i * 17) % 35 for i in range(35)]


def test_foreach_join_sees_inputs_in_split_order(foreach):
    assert sorted(VALUES) != VALUES and len(set(VALUES)) == 35
    join = foreach.data("join")
    assert join.inputs_seen == VALUES
    assert join.indices_seen == list(range(35))
    assert join.input_props == VALUES
    assert join.squares == [v * v for v in VALUES]
    # inputs.<step> of a foreach join is the last input
    assert join.last_by_name == 34
    assert foreach.data("end").total == sum(v * v for v in VALUES)


def test_foreach_index_and_input_are_constant_inside_the_foreach(foreach):
    start = foreach.data("start")
    assert (start.start_index, start.start_input) == (None, None)
    firsts = foreach.tasks("inner_first")
    seconds = foreach.tasks("inner_second")
    assert len(firsts) == len(seconds) == 35
    by_index = {}
    for task in firsts:
        data = task.data
        assert data.first_input == VALUES[data.first_index]
        assert data.first_stack == [(data.first_index, 35, VALUES[data.first_index])]
        assert data.assign_errors == ["index", "input"]
        assert task.index == data.first_index
        by_index[data.first_index] = data.first_input
    assert sorted(by_index) == list(range(35))
    for task in seconds:
        data = task.data
        assert (data.second_index, data.second_input) == (data.first_index, data.first_input)
        assert task.index == data.second_index
    # the join has left the foreach
    join = foreach.data("join")
    assert (join.join_index, join.join_input) == (None, None)
    assert foreach.task("join").index is None


def test_nested_foreach_every_combination_with_foreach_stack(nested_foreach):
    # Metaflow's nested_foreach graph: 'abc' x 'de' x 'fghijk' (3 * 2 * 6 = 36 inner tasks;
    # the "42" quoted for it in the reference notes is an arithmetic slip)
    expected = ["".join(p) for p in itertools.product("abc", "de", "fghijk")]
    assert len(expected) == 36
    assert nested_foreach.data("join_x").combos == expected
    assert nested_foreach.data("end").combos == expected
    inner = nested_foreach.tasks("inner")
    assert len(inner) == 36
    for task in inner:
        data = task.data
        (ix, nx, vx), (iy, ny, vy), (iz, nz, vz) = data.stack
        assert (nx, ny, nz) == (3, 2, 6)
        assert (vx, vy, vz) == ("abc"[ix], "de"[iy], "fghijk"[iz])
        assert data.combo == vx + vy + vz
        assert task.index == iz
    assert len(nested_foreach.tasks("join_z")) == 6
    assert len(nested_foreach.tasks("join_y")) == 3


def test_join_inside_a_foreach_sees_enclosing_frames(nested_foreach):
    # Metaflow: in a join nested in a foreach, input is None and the enclosing frames' values
    # are None (the foreach variables are not inherited by a join); index is still right.
    for task in nested_foreach.tasks("join_z"):
        data = task.data
        assert [(n, v) for _, n, v in data.join_stack] == [(3, None), (2, None)]
        assert data.join_index == data.join_stack[-1][0]
        assert data.join_input is None
        ix, iy = (frame[0] for frame in data.join_stack)
        prefix = "abc"[ix] + "de"[iy]
        assert data.combos == [prefix + z for z in "fghijk"]


def test_foreach_in_a_branch(run_flow):
    result = _ok(run_flow, "foreach_in_branch_flow.py")
    assert result.data("gather").squares == [9, 1, 4]
    join = result.data("join")
    assert (join.squares, join.tag_value) == ([9, 1, 4], "other:3,1,2")
    assert result.data("end").total == 14
    assert len(result.tasks("work")) == 3


def test_branch_in_a_foreach(run_flow):
    result = _ok(run_flow, "branch_in_foreach_flow.py")
    outer = result.data("outer_join")
    assert outer.pairs == [(6, 50), (3, 20), (9, 80)]
    assert outer.indices == [0, 1, 2]
    assert sorted(t.data.p_index for t in result.tasks("p")) == [0, 1, 2]
    assert len(result.tasks("inner_join")) == 3
    assert result.data("end").pairs == [(6, 50), (3, 20), (9, 80)]


@pytest.mark.parametrize(("args", "chosen"), [((), "b"), (("--case", "case3"), "c")])
def test_switch_runs_only_the_chosen_branch(run_flow, args, chosen):
    result = _ok(run_flow, "switch_flow.py", *args)
    steps = {s.id for s in result.run}
    assert steps == {"start", chosen, "end"}
    for other in {"a", "b", "c"} - {chosen}:
        assert other not in result.run
    assert result.data("end").handled_by == chosen
    assert result.run.successful


def test_switch_value_matching_no_case_fails_the_run(run_flow):
    result = run_flow("switch_flow.py", "--case", "nope")
    assert result.returncode == 1, result.output
    start = result.task("start")
    assert not start.finished
    assert "RuntimeError" in start.stderr and "'case1'" in start.stderr
    assert {s.id for s in result.run} == {"start"}


def test_switch_in_a_foreach(run_flow):
    result = _ok(run_flow, "switch_in_foreach_flow.py")
    items = [4, 7, 2, 9, 6, 1]
    evens = [i for i, v in enumerate(items) if v % 2 == 0]
    odds = [i for i, v in enumerate(items) if v % 2]
    for step, indices in (("handle_even", evens), ("handle_odd", odds)):
        seen = sorted(t.data.seen for t in result.tasks(step))
        assert seen == [(i, items[i]) for i in indices]
    join = result.data("join")
    assert sorted(join.outs) == sorted(f"{'even' if v % 2 == 0 else 'odd'}:{v}" for v in items)
    # several parents: inputs are grouped per parent step, in split order inside each group
    kinds = [kind for _, kind in join.order]
    assert kinds in (["even"] * 3 + ["odd"] * 3, ["odd"] * 3 + ["even"] * 3)
    for kind, group in itertools.groupby(join.order, key=lambda o: o[1]):
        indices = [i for i, _ in group]
        assert indices == (evens if kind == "even" else odds)


def test_recursive_switch_loops_ten_times(run_flow):
    result = _ok(run_flow, "recursive_switch_flow.py")
    loops = result.tasks("loop")
    assert [t.data.count for t in loops] == list(range(1, 11))
    assert [t.data.go for t in loops] == ["continue"] * 9 + ["exit"]
    assert result.data("exit_loop").final == 10
    assert result.data("end").count == 10


def test_recursive_switch_inside_a_foreach(run_flow):
    result = _ok(run_flow, "recursive_switch_inside_foreach_flow.py")
    join = result.data("join")
    assert join.results == [("a", 3), ("b", 5), ("c", 2)]
    assert join.in_order == [("a", 3), ("b", 5), ("c", 2)]  # split order
    assert len(result.tasks("loop_body")) == 3 + 5 + 2
    per_item: dict[str, list[int]] = {}
    for task in result.tasks("loop_body"):
        per_item.setdefault(task.data.item_id, []).append(task.data.count)
    assert per_item == {"a": [1, 2, 3], "b": [1, 2, 3, 4, 5], "c": [1, 2]}
    after = sorted(t.data.after_loop for t in result.tasks("exit_item_loop"))
    assert after == [(0, "a"), (1, "b"), (2, "c")]


def test_foreach_input_reads_one_chunk_of_the_items(run_flow_fresh):
    """Each child task's self.input loads the chunk holding its item, not the whole list, and
    its record does not store the list again; the values are those of the list."""
    from flowkernel.engine.records import TaskRecord

    result = _ok(run_flow_fresh, "foreach_chunks_flow.py", "--max-workers", "4")
    items = [i if i % 3 else (f"s{i}", i * 0.5, None) for i in range(70)]
    expected = [(i, v, v, True) if i != 3 else (3, "own", "own", True) for i, v in enumerate(items)]
    assert result.data("join").seen == expected
    start = result.task("start")._record
    chunks = start.foreach_chunks
    assert chunks.var == "items" and chunks.source == start.artifacts["items"]
    assert chunks.size == 64 and len(chunks.shas) == 2
    bodies = result.tasks("body")
    untouched = [t._record for t in bodies if t.index != 3]
    assert all("items" not in r.info for r in untouched)  # not loaded, not pickled again
    assert all(r.artifacts["items"] == chunks.source for r in untouched)
    assert "items" in bodies[3]._record.info  # the task that reassigned it stored its own
    assert isinstance(TaskRecord.from_json(start.to_json()).foreach_chunks, type(chunks))
