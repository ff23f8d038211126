"""Each bad flow yields exactly the problems its ``# expect: rule`` comments announce.

A comment ``# expect: rule-a, rule-b`` on a line says that line is where those problems are
reported; the test checks the rule ids, the line numbers and the file named in the problem.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowkernel.graph.lint import RULES

BAD_FLOWS = Path(__file__).resolve().parent / "bad_flows"
_EXPECT = re.compile(r"# expect: ([a-z0-9, -]+)")
FILES = sorted(p.name for p in BAD_FLOWS.glob("*.py"))


def expected_problems(path: Path) -> list[tuple[str, int]]:
    found = []
    for lineno, text in enumerate(path.read_text().splitlines(), start=1):
        match = _EXPECT.search(text)
        if match:
            found += [(rule.strip(), lineno) for rule in match.group(1).split(",")]
    return sorted(found)


@pytest.mark.parametrize("name", FILES)
def test_bad_flow(name, load):
    path = BAD_FLOWS / name
    expected = expected_problems(path)
    assert expected, f"{name} announces no problem"
    _, _, problems = load(path)
    assert sorted((p.rule, p.line) for p in problems) == expected
    for problem in problems:
        assert problem.file == str(path)
        assert problem.rule in RULES
        assert problem.hint
        text = problem.format()
        assert f"{path}:{problem.line}:" in text
        if problem.step:
            assert f"'{problem.step}'" in problem.message


def test_every_rule_is_exercised():
    covered = {rule for name in FILES for rule, _ in expected_problems(BAD_FLOWS / name)}
    # source-unavailable needs a flow without source: see test_notebook.py
    assert set(RULES) - covered == {"source-unavailable"}


def test_problems_are_in_a_stable_order(load):
    path = BAD_FLOWS / "bad_several_problems.py"
    _, _, first = load(path)
    _, _, second = load(path)
    assert first == second
    assert [p.rule for p in first] == [
        "reserved-step-name",
        "invalid-step-name",
        "unknown-target",
        "missing-next",
    ]


def test_unknown_target_suggests_the_closest_step(load):
    _, _, problems = load(BAD_FLOWS / "bad_unknown_target.py")
    assert problems[0].hint == "did you mean self.process?"


def test_cycle_names_the_loop(load):
    _, _, problems = load(BAD_FLOWS / "bad_cycle.py")
    assert [p.message for p in problems] == [
        "step 'b' closes a loop: a -> b -> a",
        "step 'c' closes a loop: c -> c",
    ]


def test_missing_next_hint_names_the_last_line(load):
    _, _, problems = load(BAD_FLOWS / "bad_missing_next.py")
    assert "(after line 12)" in problems[0].hint


def test_invalid_transitions_are_recorded_on_the_node(load):
    _, graph, _ = load(BAD_FLOWS / "bad_invalid_next.py")
    assert graph["start"].has_tail_next
    assert "only one of" in graph["start"].transition_error
    assert graph["h"].transition_error == "self.next() names no step to go to"
    assert graph["end"].transition_error is None
