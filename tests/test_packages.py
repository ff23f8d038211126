"""Code packages: deterministic, content-addressed, filtered, size-limited; a task runs from one
in an empty directory with the original code gone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from flowkernel.engine.packages import build_package, collect_files

FLOW = """
from flowkernel import FlowSpec, step
from helper import double
from lib.words import WORD


class PackagedFlow(FlowSpec):
    @step
    def start(self):
        self.x = double(21)
        self.word = WORD
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def make_project(base: Path) -> Path:
    (base / "lib").mkdir(parents=True)
    (base / "flow.py").write_text(FLOW)
    (base / "helper.py").write_text("def double(x):\n    return 2 * x\n")
    (base / "lib" / "__init__.py").write_text("")
    (base / "lib" / "words.py").write_text("WORD = 'packaged'\n")
    (base / "settings.yaml").write_text("a: 1\n")
    (base / "notes.md").write_text("not code\n")
    for junk in (".git/config", "__pycache__/helper.cpython-311.pyc", ".flowkernel/F/latest_run",
                 "venv/lib/site.py", "env2/mod.py"):  # fmt: skip
        (base / junk).parent.mkdir(parents=True, exist_ok=True)
        (base / junk).write_text("x")
    (base / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (base / "env2" / "pyvenv.cfg").write_text("home = /usr\n")
    return base / "flow.py"


def flow_cli(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowkernel.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_default_contents_skip_vcs_venvs_caches_and_datastores(tmp_path):
    make_project(tmp_path)
    assert collect_files(str(tmp_path)) == [
        "flow.py", "helper.py", "lib/__init__.py", "lib/words.py", "settings.yaml"
    ]  # fmt: skip
    assert "notes.md" in collect_files(str(tmp_path), include=["*.md"])
    assert collect_files(str(tmp_path), exclude=["lib", "*.yaml"]) == ["flow.py", "helper.py"]


def test_same_code_same_key_and_changed_code_new_key(tmp_path):
    flow_file = make_project(tmp_path / "p")
    first = build_package(str(flow_file), "PackagedFlow")
    time.sleep(0.01)
    os.utime(tmp_path / "p" / "helper.py")  # a new mtime is not a new package
    assert build_package(str(flow_file), "PackagedFlow").sha == first.sha
    shutil.copytree(tmp_path / "p", tmp_path / "copy")  # elsewhere on disk: same key
    assert build_package(str(tmp_path / "copy" / "flow.py"), "PackagedFlow").sha == first.sha
    (tmp_path / "p" / "helper.py").write_text("def double(x):\n    return x + x\n")
    assert build_package(str(flow_file), "PackagedFlow").sha != first.sha


def test_a_package_over_the_limit_names_the_largest_files(tmp_path):
    flow_file = make_project(tmp_path)
    (tmp_path / "big.json").write_bytes(b"0" * 3_000_000)
    result = flow_cli(tmp_path, "package", str(flow_file), "--max-size-mb", "1")
    assert result.returncode == 2, result.stderr
    assert "over the 1 MB limit" in result.stderr and "big.json (3.0 MB)" in result.stderr
    assert "--exclude" in result.stderr and "Traceback" not in result.stderr
    ok = flow_cli(tmp_path, "package", str(flow_file), "--max-size-mb", "1", "--exclude", "big.*")
    assert ok.returncode == 0, ok.stderr


def run_from_package(root: str, tmp_path: Path, env: dict | None = None) -> str:
    """Package a project, run it once, delete the code, then run a task of that run from the
    package in an empty directory; returns the run id."""
    flow_file = make_project(tmp_path / "project")
    packaged = flow_cli(tmp_path, "--datastore-root", root, "package", str(flow_file), env=env)
    assert packaged.returncode == 0, packaged.stderr
    key = packaged.stdout.strip()
    assert key.startswith("PackagedFlow/") and len(key.split("/")[1]) == 64
    run = flow_cli(tmp_path, "--datastore-root", root, "run", str(flow_file), "--run-id-file",
                   str(tmp_path / "id"), env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    run_id = (tmp_path / "id").read_text()
    shutil.rmtree(tmp_path / "project")  # the code is gone: only the package has it
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    step_env = {**(env or {}), "FLOWKERNEL_PACKAGE_CACHE": str(tmp_path / "cache")}
    for task_id in ("90", "91"):  # the second one uses the cached extraction
        step = flow_cli(empty, "--datastore-root", root, "step", "-", "start", "--package", key,
                        "--run-id", run_id, "--task-id", task_id, "--input-paths",
                        "_parameters/0/0", env=step_env)  # fmt: skip
        assert step.returncode == 0, step.stdout + step.stderr
    assert os.listdir(tmp_path / "cache") == [key.split("/")[1]]
    assert os.listdir(empty) == []  # nothing written where the task ran
    return run_id


def test_a_task_runs_from_a_package_in_an_empty_directory(tmp_path):
    from flowkernel import client

    root = str(tmp_path / "ds")
    run_id = run_from_package(root, tmp_path)
    old = client._root
    try:
        client.metadata(root)
        task = client.Task(f"PackagedFlow/{run_id}/start/90", _namespace_check=False)
        assert task.data.x == 42 and task.data.word == "packaged"
        _check_code(task.code, root, tmp_path)
        local = client.Run(f"PackagedFlow/{run_id}", _namespace_check=False)
        assert local["end"].task.code is None  # imported in place by `flow run`: no package
        assert local.code.key == task.code.key  # the start step's newest task ran from it
    finally:
        client._root = old


def _check_code(code, root: str, tmp_path: Path) -> None:
    """Task.code as Metaflow's MetaflowCode: the package, read back from the datastore."""
    key = code.key
    assert code.path == f"{root}/{key.split('/')[0]}/code/{key.split('/')[1]}.tar.gz"
    assert os.path.exists(code.path)
    assert code.info == {"flow_name": "PackagedFlow", "flow_file": "flow.py", "key": key}
    assert code.script_name == "flow.py" and code.flowspec == FLOW
    assert "lib/words.py" in code.tarball.getnames()
    extracted = code.extract()
    assert (Path(extracted.name) / "helper.py").read_text().startswith("def double")
    extracted.cleanup()


def test_an_unknown_or_malformed_key_is_a_usage_error(tmp_path):
    for key in ("nope", "PackagedFlow/" + "0" * 64):
        result = flow_cli(tmp_path, "--datastore-root", str(tmp_path), "step", "-", "start",
                          "--package", key, "--run-id", "1", "--task-id", "2",
                          "--input-paths", "_parameters/0/0")  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "package" in result.stderr and "Traceback" not in result.stderr


def test_archive_entries_have_fixed_metadata(tmp_path):
    import io

    pkg = build_package(str(make_project(tmp_path)), "PackagedFlow")
    with tarfile.open(fileobj=io.BytesIO(pkg.tar)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members][1:] == sorted(m.name for m in members[1:])
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
