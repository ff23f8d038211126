"""Paths and constants the Argo deployer's tests share."""

from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "flows"
SHAPES = HERE.parents[2] / "tests" / "flows" / "shapes"
ROOT = "s3://flowkernel-test/argo"
IMAGE = "ghcr.io/example/flowkernel:1"
