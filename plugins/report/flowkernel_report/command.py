"""``flow report``: find the run, read it, write the page."""

from __future__ import annotations

import os


def write_report(root: str | None, run_spec: str, output: str | None) -> str:
    """Write the report of ``run_spec`` (``RUN``, ``FLOW/RUN``, ``FLOW/latest``, ``FLOW``) under
    ``root`` (default: ``./.flowkernel``) to ``output``; returns the path written."""
    from flowkernel.cli.logs_view import resolve_pathspec
    from flowkernel.datastore import FlowStore, default_root, write_atomic
    from flowkernel.errors import UsageError
    from flowkernel_report.html import render
    from flowkernel_report.model import load_run

    root = root or default_root()
    flow, parts = resolve_pathspec(root, run_spec, None)
    if len(parts) != 1:
        raise UsageError(f"expected RUN, FLOW/RUN, FLOW/latest or FLOW, got {run_spec!r}")
    run = load_run(FlowStore(root, flow), parts[0])
    path = os.path.abspath(output or f"{flow}-{run.run_id}.html")
    write_atomic(path, render(run).encode("utf-8"))
    return path
