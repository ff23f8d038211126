"""``create --only-json``: every graph shape compiles to a WorkflowTemplate that Argo's own schema
and CRDs accept (strictly: unknown fields are errors), with every construct mapped."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from argo_test_paths import FLOWS, IMAGE, ROOT, SHAPES

from flowkernel_deploy_argo.local_executor import UnsupportedManifest, check_supported
from flowkernel_deploy_argo.names import object_name, template_name
from flowkernel_deploy_argo.workflow import workflow_object

SHAPE_FILES = sorted(p for p in SHAPES.glob("*.py") if p.stem != "parallel")
OWN_FILES = [
    FLOWS / "decorated_flow.py",
    FLOWS / "switch_shapes_flow.py",
    FLOWS / "echo_flow.py",
    FLOWS / "loop_after_foreach_flow.py",
    FLOWS / "project_flow.py",
]


def _steps(doc):
    return {t["name"]: t for t in doc["spec"]["templates"] if "container" in t}


def _dag(doc, name=None):
    name = name or doc["spec"]["entrypoint"]
    (dag,) = [t for t in doc["spec"]["templates"] if t["name"] == name]
    return {t["name"]: t for t in dag["dag"]["tasks"]}


@pytest.mark.parametrize("flow_file", SHAPE_FILES + OWN_FILES, ids=lambda p: p.stem)
def test_every_shape_validates_strictly(flow_file, compile_only, validate):
    doc = compile_only(flow_file)
    assert doc["kind"] == "WorkflowTemplate"
    assert validate(doc) == []
    # what trigger would create for it validates too
    assert validate(workflow_object(doc, {})) == []
    check_supported(doc["spec"])  # and the local executor can run all of it


def test_only_json_prints_one_json_object_and_nothing_else(tmp_path):
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", ROOT, "argo-workflows"]
    cmd += ["create", str(SHAPES / "linear.py"), "--only-json", "--image", IMAGE]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["metadata"]["name"] == "linearflow"
    assert proc.stdout.startswith("{") and proc.stdout.rstrip().endswith("}")


def test_shapes_map_to_dag_constructs(compile_only):
    foreach = compile_only(SHAPES / "nested_foreach.py")
    top = _dag(foreach)
    assert top["foreach-start"]["withParam"] == "{{tasks.start.outputs.parameters.splits}}"
    assert top["join-letters"]["depends"] == "foreach-start.Succeeded"
    inner = _dag(foreach, "foreach-start")
    assert inner["per-letter"]["arguments"]["parameters"] == [
        {"name": "input-paths", "value": "{{inputs.parameters.input-paths}}"},
        {"name": "split-index", "value": "{{inputs.parameters.split-index}}"},
    ]
    assert "foreach-per-letter" in inner and "join-numbers" in inner

    switch = _dag(compile_only(SHAPES / "switch_nested.py"))
    assert switch["animal"]["when"] == "'{{tasks.start.outputs.parameters.branch}}' == 'animal'"
    assert switch["report"]["depends"] == (
        "(cat.Succeeded || cat.Skipped || cat.Omitted) && "
        "(dog.Succeeded || dog.Skipped || dog.Omitted) && "
        "(plant.Succeeded || plant.Skipped || plant.Omitted)"
    )
    branch = _dag(compile_only(SHAPES / "branch.py"))
    assert branch["add-one"]["depends"] == "start.Succeeded"


def test_a_recursive_switch_is_a_dag_that_calls_itself_while_the_step_chooses_itself(
    compile_only,
):
    doc = compile_only(FLOWS / "loop_after_foreach_flow.py")
    body = _dag(doc, "foreach-start")
    assert body["count"]["template"] == "loop-count"  # the first round starts the loop
    assert body["collect"]["when"] == "'{{tasks.count.outputs.parameters.branch}}' == 'collect'"
    loop = _dag(doc, "loop-count")
    assert loop["count"]["template"] == "count"
    assert loop["count"]["arguments"]["parameters"][1] == {
        "name": "split-index",
        "value": "{{inputs.parameters.split-index}}",
    }
    again = loop["count-again"]
    assert again["template"] == "loop-count"  # Argo's recursion
    assert again["depends"] == "count.Succeeded"
    assert again["when"] == "'{{tasks.count.outputs.parameters.branch}}' == 'count'"
    assert again["arguments"]["parameters"] == [
        {"name": "input-paths", "value": "{{tasks.count.outputs.parameters.task-path}}"},
        {"name": "split-index", "value": ""},  # only the first round follows the foreach
    ]
    (template,) = [t for t in doc["spec"]["templates"] if t["name"] == "loop-count"]
    assert template["outputs"]["parameters"][0] == {
        "name": "task-path",
        "valueFrom": {
            "parameter": "{{tasks.count-again.outputs.parameters.task-path}}"
            "{{tasks.count.outputs.parameters.exit-task-path}}",
            "default": "",
        },
    }
    outputs = [p["name"] for p in _steps(doc)["count"]["outputs"]["parameters"]]
    assert outputs == ["task-path", "branch", "exit-task-path", "exit-branch"]


def test_decorators_parameters_and_configs(compile_only):
    doc = compile_only(
        FLOWS / "decorated_flow.py", "--max-workers", "7", group=["--name", "decorated"]
    )
    spec = doc["spec"]
    assert spec["parallelism"] == 7
    assert {p["name"]: p["value"] for p in spec["arguments"]["parameters"]} == {
        "alpha": "3",
        "ratio": "0.5",
        "label": '"plain"',
        "flag": "false",
        "options": '"\\u007b\\"k\\": [1, 2]\\u007d"',
        "free-text": "null",
    }
    assert spec["arguments"]["parameters"][0]["description"] == "An integer."
    steps = _steps(doc)
    assert steps["start"]["retryStrategy"] == {"limit": 2, "retryPolicy": "Always"}
    assert "{{retries}}" in steps["start"]["container"]["command"]
    work = steps["work"]
    assert work["activeDeadlineSeconds"] == 90
    assert work["container"]["resources"] == {
        "requests": {"cpu": "500m", "memory": "512M"},
        "limits": {"nvidia.com/gpu": 1},
    }
    # $ is escaped for Kubernetes; a value Argo would template is left to the task itself
    assert work["container"]["env"] == [{"name": "GREETING", "value": "hello $$(HOME)"}]
    command = work["container"]["command"]
    # every task runs the package's own flow file from the code package in the datastore
    assert command[command.index("task") + 1] == "-"
    assert command[command.index("--package") + 1].startswith("DecoratedFlow/")
    configs = json.loads(base64.b64decode(command[command.index("--configs") + 1]))
    assert configs == {"settings": {"mode": "fast", "depth": 2}}
    files = steps["start"]["inputs"]["artifacts"]
    assert files[0] == {
        "name": "parameter-0",
        "path": "/mnt/parameters/0",
        "raw": {"data": "{{workflow.parameters.alpha}}"},
    }
    assert len(files) == 6 and "artifacts" not in steps["end"]["inputs"]
    assert doc["metadata"]["annotations"]["flowkernel/datastore_root"] == ROOT


def test_long_names_are_shortened_with_a_stable_hash(compile_only, validate):
    flow = FLOWS / "A_Very_Long_Flow_Name_That_Goes_On_And_On_And_On_Forever.py"
    doc = compile_only(flow)
    name = doc["metadata"]["name"]
    assert len(name) <= 45 and name.startswith("averylongflownamethatgoeson")
    assert compile_only(flow)["metadata"]["name"] == name  # stable
    assert validate(doc) == []
    step_names = [t["name"] for t in doc["spec"]["templates"]]
    assert all(len(n) <= 63 for n in step_names)
    long_step = next(n for n in step_names if n.startswith("a-step-name"))
    assert long_step != template_name("a_step_name_that_is_much_longer_than_sixty_three_chars_y")
    a = object_name("x" * 60 + "one")
    b = object_name("x" * 60 + "two")
    assert a != b and len(a) == len(b) == 45
    assert object_name("My_Flow.v2") == "my-flow.v2"
    assert object_name("p.test.-x_.Flow") == "p.test.x.flow"  # every label starts/ends alnum


@pytest.mark.parametrize(
    ("options", "env", "name", "branch"),
    [
        ((), {}, "fk-demo.user.alice.projectflow", "user.alice"),
        (("--branch", "Feature_1"), {}, "fk-demo.test.feature-1.projectflow", "test.Feature_1"),
        (("--production",), {}, "fk-demo.prod.projectflow", "prod"),
        (("--production", "--branch", "v2"), {}, "fk-demo.prod.v2.projectflow", "prod.v2"),
        ((), {"FLOWKERNEL_BRANCH": "nightly"}, "fk-demo.test.nightly.projectflow", "test.nightly"),
    ],
    ids=["user", "branch", "production", "production-branch", "env-branch"],
)
def test_a_project_flow_is_deployed_as_project_branch_flow(
    options, env, name, branch, compile_only, validate, monkeypatch
):
    monkeypatch.setenv("FLOWKERNEL_USER", "alice")
    monkeypatch.delenv("FLOWKERNEL_BRANCH", raising=False)
    monkeypatch.delenv("FLOWKERNEL_PRODUCTION", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    doc = compile_only(FLOWS / "project_flow.py", *options)
    assert doc["metadata"]["name"] == name
    annotations = doc["metadata"]["annotations"]
    assert annotations["flowkernel/branch_name"] == branch
    assert annotations["flowkernel/project_flow_name"] == f"fk_demo.{branch}.ProjectFlow"
    assert annotations["flowkernel/owner"] == "alice"
    start = _steps(doc)["start"]["container"]["command"]
    assert start[start.index("--project-branch") + 1] == branch  # the run starts in it
    assert start[start.index("--user") + 1] == "alice"  # and is the deployer's
    assert "--project-branch" not in _steps(doc)["end"]["container"]["command"]
    assert validate(doc) == []


def test_long_project_names_are_cut_with_a_stable_hash_and_bad_options_refused(
    compile_only, monkeypatch, tmp_path
):
    monkeypatch.setenv("FLOWKERNEL_USER", "alice")
    flow = FLOWS / "project_flow.py"
    names = [compile_only(flow, "--branch", "b" * 50 + end)["metadata"]["name"] for end in "12"]
    assert names[0] != names[1] and len(names[0]) == len(names[1]) == 45
    assert names[0].startswith("fk-demo.test.bbbbbbbb")
    assert names[0] == object_name(f"fk_demo.test.{'b' * 50}1.ProjectFlow")  # stable
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", ROOT, "argo-workflows"]
    cmd += ["--name", "mine", "create", str(flow), "--only-json", "--image", IMAGE]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert "--name cannot name a @project flow: it is deployed as fk_demo.user.alice." in (
        proc.stderr
    )
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", ROOT, "argo-workflows"]
    cmd += ["create", str(SHAPES / "linear.py"), "--only-json", "--image", IMAGE, "--production"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "--branch / --production: flow LinearFlow has no @project" in proc.stderr


@pytest.mark.parametrize("command", ["create", "run-local"])
def test_parallel_is_refused_before_anything_is_stored(command, tmp_path):
    root = ROOT if command == "create" else str(tmp_path / "ds")
    cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", root, "argo-workflows"]
    cmd += [command, str(SHAPES / "parallel.py"), "--image", IMAGE]
    proc = subprocess.run(
        cmd + (["--only-json"] if command == "create" else []),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(
        "Cannot deploy to Argo Workflows: step 'train' is @parallel (a gang started by "
        "num_parallel in step 'start'): gangs are not supported on Argo Workflows"
    )
    assert not (tmp_path / "ds").exists()  # not even the code package


def test_create_refuses_a_local_root_and_a_missing_image(tmp_path):
    base = [sys.executable, "-m", "flowkernel.cli"]
    local = subprocess.run(
        [*base, "--datastore-root", str(tmp_path), "argo-workflows", "create",
         str(SHAPES / "linear.py"), "--only-json", "--image", IMAGE],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert local.returncode == 2
    assert "cannot see the local datastore root" in local.stderr
    assert "--datastore-root s3://bucket/prefix" in local.stderr
    no_image = subprocess.run(
        [*base, "--datastore-root", ROOT, "argo-workflows", "create", str(SHAPES / "linear.py"),
         "--only-json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={k: v for k, v in __import__("os").environ.items() if k != "FLOWKERNEL_ARGO_IMAGE"},
    )  # fmt: skip
    assert no_image.returncode == 2
    assert "--image or FLOWKERNEL_ARGO_IMAGE" in no_image.stderr


def test_the_local_executor_refuses_what_it_does_not_implement():
    spec = {"entrypoint": "main", "templates": [{"name": "main", "script": {"image": "x"}}]}
    with pytest.raises(UnsupportedManifest, match=r"spec\.templates\[main\]\.script"):
        check_supported(spec)
    spec = {"entrypoint": "main", "onExit": "x", "templates": []}
    with pytest.raises(UnsupportedManifest, match=r"run-local does not implement spec\.onExit"):
        check_supported(spec)
