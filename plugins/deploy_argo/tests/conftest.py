"""Fixtures of the Argo deployer's tests: the strict manifest validator, compiling flow files."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the tests' shared argo_test_paths

from argo_test_paths import HERE, IMAGE, ROOT


@pytest.fixture(scope="session")
def validate():
    """``validate(doc)`` -> the validator's problems, warnings left out (Argo's schema + CRDs,
    strict: unknown fields are errors, plus the lint checks)."""
    spec = importlib.util.spec_from_file_location(
        "argo_validate_example", HERE / "argo_schema" / "validate_example.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def check(doc):
        return [p for p in module.validate_manifest(doc) if not p.startswith("warning:")]

    return check


@pytest.fixture
def compile_only(tmp_path):
    """``compile_only(flow_file, *options)`` -> the object ``create --only-json`` prints."""

    def run(flow_file, *options, group=(), root=ROOT):
        cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", root]
        cmd += ["argo-workflows", *group, "create", str(flow_file), "--only-json", *options]
        proc = subprocess.run(
            [*cmd, "--image", IMAGE], capture_output=True, text=True, cwd=tmp_path, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return run
