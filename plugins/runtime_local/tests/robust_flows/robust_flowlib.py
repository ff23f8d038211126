"""Shared by the robustness test flows (imported from the flow files' own directory).

``ROBUST_MARKERS`` is a directory the test owns: each executed attempt leaves an empty file
``<step>.<run>.<task>.<attempt>.<pid>`` there, and steps wait for files the test creates.
"""

from __future__ import annotations

import os
import time

from flowkernel import current


def markers() -> str:
    return os.environ["ROBUST_MARKERS"]


def mark(step: str) -> None:
    """Count one execution of ``step`` (one file per attempt)."""
    name = f"{step}.{current.run_id}.{current.task_id}.{current.retry_count}.{os.getpid()}"
    with open(os.path.join(markers(), name), "w"):
        pass


def touch(name: str, text: str = "") -> None:
    path = os.path.join(markers(), name)
    with open(path + ".tmp", "w") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


def wait_for_marker(name: str, timeout: float = 30.0) -> None:
    """Block until the marker ``name`` exists (the test or another task creates it)."""
    path = os.path.join(markers(), name)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"marker {name} never appeared")
        time.sleep(0.01)


def fixed() -> bool:
    """The "bug" is fixed: the test sets ROBUST_FIXED=1 before resuming."""
    return os.environ.get("ROBUST_FIXED") == "1"
