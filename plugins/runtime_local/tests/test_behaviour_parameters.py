"""Parameters: command line, environment, defaults, types, IncludeFile, usage errors."""

from __future__ import annotations

import os

import pytest

BINARY = bytes(range(256)) + b"\x00\xff"
TEXT = "héllo wörld\nsecond line ✓\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("param_files")
    (base / "text.txt").write_text(TEXT, encoding="utf-8")
    (base / "data.bin").write_bytes(BINARY)
    return base


@pytest.fixture(scope="module")
def given(run_flow, files):
    """A run with values from the command line and the environment."""
    counter = files / "counter-given"
    result = run_flow(
        "params_flow.py",
        "--alpha", "7",
        "--flag", "false",
        "--listed", "x:y:z",
        "--json-given", '{"k": [1, {"n": null}]}',
        "--ratio", "2",
        "--text-file", str(files / "text.txt"),
        "--binary-file", str(files / "data.bin"),
        env={
            "FLOWKERNEL_RUN_ENV_DASHED": "from the environment",
            "FLOWKERNEL_RUN_NEEDED": "from env too",
            "COUNTER_FILE": str(counter),
        },
    )  # fmt: skip
    result.assert_ok()
    return result, counter


@pytest.fixture(scope="module")
def defaults(run_flow, files):
    """A run with nothing but the required parameter."""
    counter = files / "counter-defaults"
    result = run_flow("params_flow.py", "--needed", "x", env={"COUNTER_FILE": str(counter)})
    return result.assert_ok(), counter


def test_values_from_the_command_line_and_environment(given):
    result, _ = given
    seen = result.data("start").seen
    assert seen["alpha"] == 7
    assert seen["flag"] is False  # a bool parameter takes a value
    assert seen["ratio"] == 2.0 and isinstance(seen["ratio"], float)
    assert seen["listed"] == ["x", "y", "z"]
    assert seen["json_given"] == {"k": [1, {"n": None}]}
    assert seen["from_env"] == "from the environment"  # FLOWKERNEL_RUN_<NAME>, dashes -> _
    assert seen["needed"] == "from env too"


def test_defaults(defaults):
    result, _ = defaults
    seen = result.data("start").seen
    assert seen["alpha"] == 1 and seen["flag"] is True and seen["ratio"] == 0.5
    assert seen["from_env"] == "default"
    assert seen["listed_default"] == ["a", "b", "c"]  # the separator splits a default too
    assert seen["listed"] == ["x"]
    assert seen["json_default"] == {"a": [1, 2, 3]}  # a JSON string default is parsed
    assert seen["json_given"] == {}
    assert seen["no_default"] is None
    assert seen["text_file"] is None and seen["absent_file"] is None


def test_parameters_are_visible_in_every_step(defaults):
    result, _ = defaults
    seen = result.data("start").seen
    assert result.data("join").join_seen == seen
    for step in ("each", "end"):
        for task in result.tasks(step):
            assert {name: getattr(task.data, name) for name in seen} == seen
    assert result.run.parameters == seen


def test_parameter_names(defaults):
    result, _ = defaults
    assert result.data("start").param_names == [
        "alpha", "from_env", "flag", "ratio", "listed_default", "listed", "json_default",
        "json_given", "no_default", "computed", "text_file", "binary_file", "absent_file",
        "needed",
    ]  # fmt: skip


@pytest.mark.parametrize("which", ["given", "defaults"])
def test_callable_default_is_evaluated_once_per_run(request, which):
    result, counter = request.getfixturevalue(which)
    assert counter.read_text().splitlines() == ["ParamsFlow:computed"]
    assert result.data("join").computed_in_branches == ["computed for computed"]
    assert len(result.tasks("each")) == 3


def test_include_file_text_and_binary(given):
    result, _ = given
    data = result.data("end")
    assert data.text_file == TEXT
    assert data.binary_file == BINARY
    assert data.absent_file is None
    assert result.data("join").join_seen["binary_file"] == BINARY


def test_missing_required_parameter_is_a_usage_error_and_records_no_run(run_flow_fresh, tmp_path):
    result = run_flow_fresh("params_flow.py")
    assert result.returncode == 2, result.output
    assert "needed" in result.stderr
    assert result.run_id is None
    assert not (tmp_path / "datastore" / "ParamsFlow").exists() or not [
        p for p in (tmp_path / "datastore" / "ParamsFlow").iterdir() if p.is_dir()
    ]


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (("--alpha", "seven"), "alpha"),
        (("--flag", "maybe"), "flag"),
        (("--json-given", "{not json"), "json-given"),
        (("--text-file", "/nonexistent/file.txt"), "text-file"),
    ],
)
def test_wrong_value_is_a_usage_error_naming_the_parameter(run_flow_fresh, tmp_path, args, name):
    result = run_flow_fresh("params_flow.py", "--needed", "x", *args)
    assert result.returncode == 2, result.output
    assert name in result.stderr
    assert result.run_id is None
    flow_dir = tmp_path / "datastore" / "ParamsFlow"
    assert not flow_dir.exists() or not [p for p in flow_dir.iterdir() if p.is_dir()]


def test_counter_file_env_is_not_leaking(given):
    assert "COUNTER_FILE" not in os.environ
