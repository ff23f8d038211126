"""A log sink from a really installed third-party plugin gets every line, live; a sink that
raises is disabled without breaking the run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

FLOW = rh.flow_file("sink_flow.py")
NAME = "SinkFlow"
PLUGIN_SRC = rh.FLOWS / "capture_sink_plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install --no-deps --target SITE` of the capture-sink plugin (a copy of its source)."""
    work = tmp_path_factory.mktemp("sink_plugin")
    src = shutil.copytree(PLUGIN_SRC, work / "src")
    target = work / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q"]
    cmd += ["--disable-pip-version-check", "--no-index", "--target", str(target), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def _captured(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _by_stream(entries: list[dict]) -> dict[tuple, list[str]]:
    out: dict[tuple, list[str]] = defaultdict(list)
    for e in entries:
        out[(e["step"], e["task"], e["attempt"], e["stream"])].append(e["text"])
    return out


def test_plugin_sink_gets_every_line_of_every_task_live(site: Path, tmp_path: Path) -> None:
    world = rh.Env(tmp_path)
    capture = world.base / "capture.jsonl"
    plugins = world.flow("plugins", PYTHONPATH=str(site))
    assert "robust_capture" in plugins.stdout, plugins.stdout + plugins.stderr
    id_file = world.base / "id"
    proc = world.start(
        "run",
        FLOW,
        "--run-id-file",
        str(id_file),
        PYTHONPATH=str(site),
        ROBUST_CAPTURE_FILE=str(capture),
        ROBUST_WAIT="1",
    )
    try:
        run_id = rh.wait_for(lambda: id_file.exists() and id_file.read_text())
        first = rh.wait_for(
            lambda: [e for e in _captured(capture) if "waiting for the sink" in e["text"]],
            what="the sink to receive start's first line",
        )
        assert proc.poll() is None  # the task is still blocked: the line arrived live
        world.release(f"release.{run_id}")
        code, out, err = rh.communicate(proc)
    finally:
        rh.kill_tagged(world.tag)
    assert code == 0, out + err
    assert first[0]["step"] == "start" and first[0]["stream"] == "stdout"
    entries = _captured(capture)
    assert {e["run"] for e in entries} == {run_id}
    got = _by_stream(entries)
    # the same lines, in the same order, as every per-attempt log file of the run
    expected: dict[tuple, list[str]] = {}
    for log in world.run_dir(NAME, run_id).glob("*/*/*.log"):
        attempt, stream, _ = log.name.split(".")
        step, task = log.parent.parent.name, log.parent.name
        expected[(step, task, int(attempt), stream)] = log.read_text().splitlines()
    assert got == expected
    assert {k[0] for k in got} == {"start", "work", "join", "end"}
    assert sum(1 for k in got if k[0] == "work" and k[3] == "stderr") == 3


def test_a_raising_sink_is_disabled_and_the_run_goes_on(site: Path, tmp_path: Path) -> None:
    world = rh.Env(tmp_path)
    capture = world.base / "capture.jsonl"
    result = world.flow(
        "run",
        FLOW,
        PYTHONPATH=str(site),
        ROBUST_CAPTURE_FILE=str(capture),
        ROBUST_CAPTURE_FAIL_AFTER="2",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = rh.run_id_of(result.stdout)
    assert result.stdout.count("log sink CaptureSink failed and was disabled") == 1
    assert "the capture sink broke" in result.stdout
    assert len(_captured(capture)) == 2
    # the built-in sinks kept every line: the console and the log files
    assert "the end" in result.stdout
    run = world.client().Run(f"{NAME}/{run_id}")
    assert run["end"].task.stdout == "the end\n"
    assert len(run["work"].task.stdout.splitlines()) == 3


def test_a_sink_that_fails_to_close_does_not_fail_the_run(site: Path, tmp_path: Path) -> None:
    world = rh.Env(tmp_path)
    result = world.flow(
        "run",
        FLOW,
        PYTHONPATH=str(site),
        ROBUST_CAPTURE_FILE=str(world.base / "capture.jsonl"),
        ROBUST_CAPTURE_FAIL_CLOSE="1",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Done!" in result.stdout
    assert "the capture sink cannot close" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
