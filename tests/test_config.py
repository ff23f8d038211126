"""Config / config_expr: values resolved before the graph, used in decorators, defaults, steps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FLOWS = Path(__file__).parent / "flows" / "config"


def flow(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(tmp_path / "ds"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.fixture
def config_flow(tmp_path):
    for name in ("config_flow.py", "settings.json", "unpack_flow.py"):
        shutil.copy(FLOWS / name, tmp_path / name)
    return str(tmp_path / "config_flow.py")


def latest(tmp_path: Path, name: str = "ConfigFlow"):
    from flowkernel.client import Flow, metadata, namespace

    metadata(str(tmp_path / "ds"))
    namespace(None)
    return Flow(name).latest_run


def test_values_come_from_the_default_file(tmp_path, config_flow):
    result = flow(tmp_path, "run", config_flow)
    assert result.returncode == 0, result.stderr
    run = latest(tmp_path)
    end = run["end"].task.data
    assert end.outs == [10, 20] and end.attempts == 2 and end.seen_count == 3
    assert end.immutable is True
    assert end.settings == {"count": 3, "items": [1, 2], "retries": 1}  # a plain dict artifact
    assert type(end.settings) is dict


@pytest.mark.parametrize("where", ["root", "run"])
def test_config_value_overrides_the_file(tmp_path, config_flow, where):
    value = json.dumps({"count": 5, "items": [7, 8, 9], "retries": 2})
    opts = ["--config-value", "settings", value]
    args = [*opts, "run", config_flow] if where == "root" else ["run", config_flow, *opts]
    result = flow(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    end = latest(tmp_path)["end"].task.data
    assert end.outs == [70, 80, 90] and end.attempts == 3 and end.seen_count == 5


def test_config_from_environment_and_file_option(tmp_path, config_flow):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"count": 1, "items": [4], "retries": 0}))
    assert flow(tmp_path, "--config", "settings", str(other), "run", config_flow).returncode == 0
    assert latest(tmp_path)["end"].task.data.outs == [40]
    env = {"FLOWKERNEL_FLOW_CONFIG_VALUE": json.dumps({"settings": {"count": 2, "items": [6],
                                                                    "retries": 0}})}  # fmt: skip
    assert flow(tmp_path, "run", config_flow, env=env).returncode == 0
    assert latest(tmp_path)["end"].task.data.outs == [60]
    env = {"FLOWKERNEL_FLOW_CONFIG": json.dumps({"settings": str(other)})}
    assert flow(tmp_path, "run", config_flow, env=env).returncode == 0
    assert latest(tmp_path)["end"].task.data.outs == [40]


@pytest.mark.parametrize(
    "args",
    [
        ["--config-value", "settings", "{not json"],
        ["--config", "settings", "missing.json"],
    ],
)
def test_broken_config_is_a_usage_error_naming_it(tmp_path, config_flow, args):
    result = flow(tmp_path, *args, "run", config_flow)
    assert result.returncode == 2
    assert "settings" in result.stderr
    assert not (tmp_path / "ds" / "ConfigFlow").exists()  # nothing ran, no run recorded


def test_broken_default_file_is_a_usage_error(tmp_path, config_flow):
    (tmp_path / "settings.json").write_text("{oops")
    result = flow(tmp_path, "run", config_flow)
    assert result.returncode == 2 and "settings" in result.stderr and "JSON" in result.stderr


def test_unpacking_a_config_into_decorator_kwargs(tmp_path, config_flow):
    result = flow(tmp_path, "run", str(tmp_path / "unpack_flow.py"))
    assert result.returncode == 0, result.stderr
    assert latest(tmp_path, "UnpackFlow")["start"].task.data.greeting == "hi"


def test_resume_reuses_the_origin_configs_and_rejects_new_ones(tmp_path, config_flow):
    value = json.dumps({"count": 4, "items": [3], "retries": 0})
    assert flow(tmp_path, "--config-value", "settings", value, "run", config_flow).returncode == 0
    rejected = flow(tmp_path, "--config-value", "settings", value, "resume", config_flow)
    assert rejected.returncode == 2 and "config" in rejected.stderr
    resumed = flow(tmp_path, "resume", config_flow, "join")
    assert resumed.returncode == 0, resumed.stderr
    run = latest(tmp_path)
    assert run.origin_pathspec is not None
    assert run["end"].task.data.outs == [30] and run["end"].task.data.seen_count == 4


def test_spawn_isolation_sees_the_same_configs(tmp_path, config_flow):
    value = json.dumps({"count": 1, "items": [5], "retries": 0})
    result = flow(tmp_path, "--config-value", "settings", value, "run", config_flow,
                  "--isolation", "spawn")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert latest(tmp_path)["end"].task.data.outs == [50]


def test_config_value_object():
    from flowkernel.flow.config import ConfigValue

    value = ConfigValue({"a": {"b": [1, {"c": 2}]}})
    assert value.a.b[1].c == 2 and value["a"]["b"][0] == 1
    with pytest.raises(TypeError):
        value.a = 1
    with pytest.raises(TypeError):
        value["a"] = 1
    assert value.to_dict() == {"a": {"b": [1, {"c": 2}]}}
