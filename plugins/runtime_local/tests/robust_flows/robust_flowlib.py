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


def run_alongside_others(group: str, total: int, linger: float = 0.3, timeout: float = 30.0) -> int:
    """Stay in ``group`` (a set of running tasks) until another task is in it too, then
    ``linger`` seconds more (long enough to see a third, if the scheduler wrongly let one
    start); or leave once none of the other ``total - 1`` tasks can still come (all have
    left). Returns the most tasks seen in the group at once: a scheduler that runs two at a
    time always shows exactly two, however loaded the machine (no task leaves alone while a
    second one may still start); one that runs one at a time shows one (after ``timeout``).
    """
    running = os.path.join(markers(), f"{group}.running")
    left = os.path.join(markers(), f"{group}.left")
    for folder in (running, left):
        os.makedirs(folder, exist_ok=True)
    me = str(os.getpid())
    open(os.path.join(running, me), "w").close()
    most, company_since, deadline = 0, None, time.monotonic() + timeout
    while True:
        together, now = len(os.listdir(running)), time.monotonic()
        most = max(most, together)
        if together >= 2 and company_since is None:
            company_since = now
        if company_since is not None and now - company_since >= linger:
            break
        if company_since is None and together + len(os.listdir(left)) >= total:
            break
        if now > deadline:
            break
        time.sleep(0.01)
    open(os.path.join(left, me), "w").close()  # before leaving `running`: never undercounted
    os.unlink(os.path.join(running, me))
    return most
