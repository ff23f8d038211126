"""``@project``: the branch a run belongs to, what its tasks see in ``current``, its system tags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowkernel import Flow, FlowSpec, namespace, project, step
from flowkernel.client import metadata
from flowkernel.errors import DecoratorError
from flowkernel.flow.project import resolve_project

FLOW = Path(__file__).parent / "flows" / "mfapi" / "project_flow.py"
PLAIN = Path(__file__).parents[1] / "examples" / "hello.py"


def _run(tmp_path, *args, flow=FLOW, **env):
    full_env = {"FLOWKERNEL_USER": "ann", **env}
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    base["FLOWKERNEL_DATASTORE_ROOT"] = str(tmp_path / "ds")
    return subprocess.run(
        [sys.executable, str(flow), "run", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**base, **full_env},
    )


@pytest.fixture
def client_root(tmp_path):
    metadata(str(tmp_path / "ds"))
    namespace(None)
    yield
    from flowkernel import client

    client._root = None
    client._namespace = client._UNSET


@pytest.mark.parametrize(
    ("args", "env", "branch", "production"),
    [
        ((), {}, "user.ann", False),
        (("--branch", "feature"), {}, "test.feature", False),
        (("--production",), {}, "prod", True),
        (("--production", "--branch", "blue"), {}, "prod.blue", True),
        ((), {"FLOWKERNEL_BRANCH": "fromenv"}, "test.fromenv", False),
        ((), {"FLOWKERNEL_PRODUCTION": "1"}, "prod", True),
    ],
)
def test_branches_current_and_system_tags(tmp_path, client_root, args, env, branch, production):
    result = _run(tmp_path, *args, **env)
    assert result.returncode == 0, result.stderr
    run = Flow("ProjectFlow").latest_run
    assert run["start"].task.data.seen == {
        "project_name": "shop",  # from the config, through config_expr(...).project.name
        "branch_name": branch,
        "is_user_branch": branch.startswith("user."),
        "is_production": production,
        "project_flow_name": f"shop.{branch}.ProjectFlow",
    }
    assert {"project:shop", f"project_branch:{branch}"} <= run.system_tags
    assert [r.id for r in Flow("ProjectFlow").runs(f"project_branch:{branch}")] == [run.id]
    namespace(f"project_branch:{branch}")  # a system tag works as a namespace
    assert Flow("ProjectFlow").latest_run.id == run.id


def test_a_flow_without_project_has_no_branch_options(tmp_path):
    result = _run(tmp_path, "--branch", "x", flow=PLAIN)
    assert result.returncode == 2 and "--branch" in result.stderr


def test_a_malformed_branch_is_a_usage_error(tmp_path):
    result = _run(tmp_path, "--branch", "has space")
    assert result.returncode == 2 and "branch" in result.stderr
    assert not (tmp_path / "ds" / "ProjectFlow").exists()  # nothing was recorded


def test_project_declarations_are_checked():
    with pytest.raises(DecoratorError, match="lower-case"):
        project(name="Not-Valid")
    with pytest.raises(DecoratorError, match="Unknown decorator attribute"):
        project(name="ok", colour="red")
    with pytest.raises(DecoratorError, match="needs a name"):

        @project
        class _Bare(FlowSpec):
            @step
            def start(self):
                pass


def test_resolve_project_gives_deployers_the_names():
    @project(name="fleet")
    class ShipFlow(FlowSpec):
        @step
        def start(self):
            pass

    info = resolve_project(ShipFlow, "bob", branch="v2", production=True)
    assert info.flow_name == "fleet.prod.v2.ShipFlow"
    assert info.system_tags == ("project:fleet", "project_branch:prod.v2")
    assert resolve_project(FlowSpec, "bob") is None


@pytest.mark.parametrize(
    ("before", "branch"),
    [(("--branch", "early"), "test.early"), (("--production",), "prod")],
)
def test_branch_options_also_come_before_the_command(tmp_path, client_root, before, branch):
    """``python flow.py --branch X run``: Metaflow's top-level form."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    env.update(FLOWKERNEL_USER="ann", FLOWKERNEL_DATASTORE_ROOT=str(tmp_path / "ds"))
    result = subprocess.run(
        [sys.executable, str(FLOW), *before, "run"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert Flow("ProjectFlow").latest_run["start"].task.data.seen["branch_name"] == branch
    plain = subprocess.run(
        [sys.executable, str(PLAIN), *before, "run"], capture_output=True, text=True, env=env
    )
    assert plain.returncode == 2 and "@project" in plain.stderr
