"""`--with`: attach a decorator to every step from the command line (the step's own wins)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowkernel.errors import DecoratorError
from flowkernel.flow.decorators import parse_decospec

FLAKY = Path(__file__).parent / "flows" / "decospecs" / "flaky_flow.py"


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(tmp_path / "ds"),
           "run", str(FLAKY), "--quiet", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def latest(tmp_path: Path):
    from flowkernel.client import Flow, metadata, namespace

    metadata(str(tmp_path / "ds"))
    namespace(None)
    return Flow("FlakyFlow").latest_run


def test_without_with_the_flaky_step_fails(tmp_path):
    assert run(tmp_path).returncode == 1


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_with_adds_decorators_to_every_step(tmp_path, isolation):
    env_spec = 'environment:vars={"A": "x", "B": 2}'
    result = run(tmp_path, "--with", "retry:times=2", "--with", env_spec, "--isolation", isolation)
    assert result.returncode == 0, result.stdout + result.stderr
    run_ = latest(tmp_path)
    assert run_["start"].task.data.attempts == 2  # retried twice, as --with asked
    assert run_["start"].task.data.env_a == "x"
    assert run_.data.end_attempt == 0  # end's own @retry(times=0) was kept


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "'bogus' cannot be attached"),
        ("retry:tims=2", "Unknown decorator attribute 'tims'"),
        ("retry:times", "expected NAME:attr=value"),
    ],
)
def test_bad_specs_are_usage_errors(tmp_path, spec, message):
    result = run(tmp_path, "--with", spec)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "ds").exists()


def test_spec_values_are_json_and_commas_nest():
    assert parse_decospec("retry") == ("retry", {})
    assert parse_decospec("retry:times=2,minutes_between_retries=0") == (
        "retry",
        {"times": 2, "minutes_between_retries": 0},
    )
    name, attrs = parse_decospec('environment:vars={"A": "1", "B": [1, 2]}')
    assert (name, attrs) == ("environment", {"vars": {"A": "1", "B": [1, 2]}})
    assert parse_decospec("resources:memory=big") == ("resources", {"memory": "big"})
    with pytest.raises(DecoratorError):
        parse_decospec("parallel")


def test_runner_decospecs_become_with_options(tmp_path):
    from flowkernel import Runner

    done = Runner(
        str(FLAKY), show_output=False, cwd=str(tmp_path), decospecs=["retry:times=2"]
    ).run()
    assert done.status == "successful"
    assert done.run["start"].task.data.attempts == 2
